"""The inputs of a ``POST /runs/{name}/run`` request, as the run's predictor reads them: texts as they are, files
(images, audio, clips) from base64 into a temporary folder that is removed when the request is done.

    with staged(inputs, predictor.modality, limits.max_pixels) as batch:
        rows = predictor.predict(batch.paths, **options)     # file paths (or texts), as `dnn predict` takes them
        rows = [batch.shown(row) for row in rows]            # the client's file names, never the server's paths

A file is decoded from base64 in memory and checked from its header before anything else reads it:

    image   a PNG, JPEG, GIF, BMP or WebP of at most ``max_pixels`` pixels (--max-pixels)
    video   an animated image of at most MAX_FRAMES frames and ``max_pixels`` pixels in all its frames, or a .npy
            array (T, H, W) of numbers, as large at most (read without pickles)
    audio   WAV, FLAC or OGG (what libsndfile reads) of at most MAX_AUDIO_SECONDS seconds

The request body's size (--max-body-bytes) bounds the bytes; these bound what the bytes decode to. A file that
fails a check is a one-line DataError naming the input (``inputs[0]: ...``). Each file goes into a folder of its
own under a fresh private temporary folder (``tempfile``, mode 0700), named after the client's file name (cleaned
to letters, digits, ``.``, ``_``, ``-``) with the suffix its content calls for; the folder is removed on the way
out, whatever happened. The predictor's messages and rows name the client's file, not the path on the server.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dnn.errors import ConfigError, DataError
from dnn.tasks.base import MODALITIES

__all__ = [
    "ACCEPT",
    "FORMATS",
    "MAX_AUDIO_SECONDS",
    "MAX_FRAMES",
    "MAX_INPUTS",
    "Staged",
    "Upload",
    "from_base64",
    "image_size",
    "staged",
]

FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")  # the image formats read from a client
AUDIO_FORMATS = ("WAV", "FLAC", "OGG")
# modality → what a file input of the page accepts (text: none, it is typed)
ACCEPT = {"image": "image/*", "audio": ".wav,.flac,.ogg", "video": ".gif,.npy"}
MAX_INPUTS = 16  # inputs in one request
MAX_FRAMES = 1000  # frames of one clip
MAX_AUDIO_SECONDS = 60.0  # of one audio file (FLAC and OGG are compressed: the body limit alone allows minutes)
NPY_MAGIC = b"\x93NUMPY"


@dataclass(frozen=True)
class Upload:
    """A file from a client: its bytes in base64 (a ``data:...;base64,`` URL works too) and its name (shown)."""

    file: str
    name: str = ""


def from_base64(data: str, where: str, what: str) -> bytes:
    """The bytes of ``data`` (base64, or a ``data:`` URL); a one-line DataError starting with ``where`` if it is
    not base64 or empty (``what``: the kind of file expected, e.g. "PNG/JPEG")."""
    if data.startswith("data:"):
        data = data.partition(",")[2]
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise DataError(f"{where}: not valid base64 (send the {what} file's bytes, base64-encoded)") from None
    if not raw:
        raise DataError(f"{where}: empty input, expected a base64 {what}")
    return raw


def image_size(raw: bytes, max_pixels: int, where: str) -> tuple[int, int]:
    """``(width, height)`` of the image in ``raw``, read from its header only (no pixel decoded); a DataError if
    it is not an image of :data:`FORMATS` or has more than ``max_pixels`` pixels."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(raw), formats=FORMATS) as img:  # reads the header only
            width, height = img.size
    except Image.DecompressionBombError:
        raise DataError(f"{where}: more than the limit of {max_pixels:,} pixels (--max-pixels)") from None
    except (OSError, ValueError, SyntaxError):
        raise DataError(f"{where}: not an image Pillow can read (expected one of {', '.join(FORMATS)})") from None
    if width * height > max_pixels:
        raise DataError(
            f"{where}: {width}×{height} = {width * height:,} pixels, over the limit of {max_pixels:,} (--max-pixels)"
        )
    return width, height


def _image_suffix(raw: bytes, max_pixels: int, where: str) -> str:
    """``.png``, ``.jpeg``, ...: the image's format, once it passes the limits."""
    from PIL import Image

    image_size(raw, max_pixels, where)
    with Image.open(io.BytesIO(raw), formats=FORMATS) as img:
        return "." + str(img.format).lower()


def _clip_suffix(raw: bytes, max_pixels: int, where: str) -> str:
    """``.npy`` or ``.gif``: how a clip's bytes are read (by their content), once they pass the limits."""
    if raw.startswith(NPY_MAGIC):
        import numpy as np

        try:
            stream = io.BytesIO(raw)
            major, _ = np.lib.format.read_magic(stream)
            header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, _, dtype = header(stream)
        except ValueError as err:
            raise DataError(f"{where}: not a .npy array numpy can read ({err})") from None
        if len(shape) != 3 or dtype.hasobject or dtype.kind not in "biuf":
            raise DataError(f"{where}: a clip must be an array (T, H, W) of numbers, got {dtype} {tuple(shape)}")
        frames, pixels = shape[0], shape[0] * shape[1] * shape[2]
        suffix = ".npy"
    else:
        from PIL import Image

        width, height = image_size(raw, max_pixels, where)
        with Image.open(io.BytesIO(raw), formats=FORMATS) as img:
            # probe: only animated formats (GIF, WebP, PNG) have n_frames; a still image is one frame
            frames = getattr(img, "n_frames", 1)
        pixels, suffix = frames * width * height, ".gif"
    if frames > MAX_FRAMES:
        raise DataError(f"{where}: {frames:,} frames, over the limit of {MAX_FRAMES:,}")
    if pixels > max_pixels:
        raise DataError(
            f"{where}: {pixels:,} pixels in all its frames, over the limit of {max_pixels:,} (--max-pixels)"
        )
    return suffix


def _audio_suffix(raw: bytes, max_pixels: int, where: str) -> str:
    """``.wav``, ``.flac`` or ``.ogg``, by the bytes' content, once they pass the limits."""
    import soundfile

    try:
        info = soundfile.info(io.BytesIO(raw))
    except (RuntimeError, soundfile.LibsndfileError, TypeError, ValueError):
        raise DataError(f"{where}: not audio libsndfile can read (expected WAV, FLAC or OGG)") from None
    if info.format not in AUDIO_FORMATS:
        raise DataError(f"{where}: {info.format} audio; expected WAV, FLAC or OGG")
    seconds = info.frames / info.samplerate if info.samplerate else 0.0
    if seconds > MAX_AUDIO_SECONDS:
        raise DataError(f"{where}: {seconds:.1f} s of audio, over the limit of {MAX_AUDIO_SECONDS:g} s")
    return "." + info.format.lower()


# modality → the checks of a file's bytes, which give the suffix the file is written with; what a message calls it
SUFFIX_OF = {"image": _image_suffix, "video": _clip_suffix, "audio": _audio_suffix}
WHAT = {"image": "image", "video": "clip", "audio": "audio"}


def _clean_name(name: str, index: int) -> str:
    """What a file is shown as: the last part of the client's name, letters, digits, ``.``, ``_``, ``-``, spaces."""
    base = re.sub(r"[^A-Za-z0-9._ -]", "_", name.replace("\\", "/").rsplit("/", 1)[-1]).strip(" .")[:80]
    return base or f"input {index + 1}"


@dataclass
class Staged:
    """The inputs of one request as the predictor reads them (``paths``: texts, or files in the request's
    temporary folder) and, for each, the name a client sees."""

    paths: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    def shown(self, value: Any) -> Any:
        """``value`` (a row, a message, a title) with every staged file's path replaced by the client's name."""
        if isinstance(value, str):
            for path, name in zip(self.paths, self.names):
                if path != name:
                    value = value.replace(path, name)
            return value
        if isinstance(value, dict):
            return {key: self.shown(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.shown(item) for item in value]
        return value


@contextmanager
def staged(inputs: Sequence[str | Upload], modality: str, max_pixels: int) -> Iterator[Staged]:
    """The ``inputs`` of a predictor that reads ``modality`` (see the module docstring): within the block, files
    exist in a private temporary folder; on exit it is removed. A one-line DataError (ConfigError for an input of
    the wrong form) names the input that fails."""
    if not inputs:
        raise DataError("inputs: empty, expected at least one input")
    if len(inputs) > MAX_INPUTS:
        raise DataError(f"inputs: {len(inputs)} inputs, over the limit of {MAX_INPUTS} per request")
    if modality not in SUFFIX_OF:  # texts
        wrong = next((i for i, item in enumerate(inputs) if not isinstance(item, str)), None)
        if wrong is not None:
            raise ConfigError(f"inputs[{wrong}]: this run reads {MODALITIES[modality]}: send each as a string")
        yield Staged(list(inputs), list(inputs))
        return
    wrong = next((i for i, item in enumerate(inputs) if not isinstance(item, Upload)), None)
    if wrong is not None:
        raise ConfigError(f'inputs[{wrong}]: this run reads {MODALITIES[modality]}: send each as '
                          '{"file": <base64>, "name": <file name>}')  # fmt: skip
    files = []
    for i, item in enumerate(inputs):  # every check before anything is written
        where = f"inputs[{i}]"
        raw = from_base64(item.file, where, WHAT[modality])
        files.append((raw, _clean_name(item.name, i), SUFFIX_OF[modality](raw, max_pixels, where)))
    with tempfile.TemporaryDirectory(prefix="dnn-serve-") as folder:
        batch = Staged()
        for i, (raw, name, suffix) in enumerate(files):
            # the suffix the content calls for replaces the client's
            path = Path(folder) / str(i) / f"{Path(name).stem or 'input'}{suffix}"
            path.parent.mkdir()
            with open(path, "xb") as f:
                f.write(raw)
            batch.paths.append(str(path))
            batch.names.append(name)
        yield batch
