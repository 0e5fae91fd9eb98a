"""One function per endpoint, without HTTP: check the input against the limits, call the run's predictor, return
JSON-able values. :func:`run` serves every kind of run through the predictor contract (``predict`` and
``explain``); :func:`predict`, :func:`translate` and :func:`generate` serve the older, richer panels. A bad input
raises :class:`~dnn.errors.ConfigError` / :class:`~dnn.errors.DataError` with a one-line message (the app answers
422 with it). Nothing here holds model logic: the predictors of :mod:`dnn.tasks` do
the work; the app calls these functions in a worker thread under ``torch.inference_mode()``.

A request's time limit stops its work, not only its answer: the app runs each call within a :class:`Deadline`
(:func:`within`), and :func:`watch_deadlines` puts a forward pre-hook on every module of a served model that
raises :class:`Cancelled` in the calling thread once that thread's deadline has passed (or its work was
cancelled). Decoding calls the model once per step, so a translate or generate request past its time stops at
its next step and frees its worker; a thread with no deadline (anything but the server's workers) is never
stopped.
"""

from __future__ import annotations

import base64
import io
import math
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from dnn.checks import int_in
from dnn.errors import ConfigError, DataError, DnnError
from dnn.inspect.draw import draw_figure
from dnn.serve.images import decode_image, feature_maps, first_conv_maps
from dnn.serve.limits import ServeLimits
from dnn.serve.runs import ENDPOINT, ServedRun
from dnn.serve.uploads import Staged, Upload, staged

__all__ = ["Cancelled", "Deadline", "count_tokens", "generate", "predict", "run", "translate", "watch_deadlines",
           "within"]  # fmt: skip

DEFAULT_LENGTH = 200  # tokens generated when a request does not say
DIGITS = 4  # decimals of the probabilities, attention weights and feature maps sent to a client


class Cancelled(Exception):
    """The work of a request was stopped: its time was up, or the server is stopping. Not a user's mistake (the
    client has had its 503 already), so not a :class:`~dnn.errors.DnnError`."""


class Deadline:
    """When the work of one request must stop: ``at`` (a :func:`time.monotonic` time), or earlier if
    :meth:`cancel` is called (from any thread)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        self._cancelled.set()

    def check(self) -> None:
        """Raise :class:`Cancelled` if the time is up or the work was cancelled."""
        if self._cancelled.is_set():
            raise Cancelled("the request was cancelled")
        if time.monotonic() >= self.at:
            raise Cancelled(f"the request ran past its limit of {self.seconds:g} s")


_current = threading.local()  # .deadline: the Deadline of the request this thread works on, if any


@contextmanager
def within(deadline: Deadline) -> Iterator[Deadline]:
    """Within the block, every forward call of a watched model made by this thread checks ``deadline``."""
    # probe: a thread-local has no deadline until this thread first enters within()
    previous = getattr(_current, "deadline", None)
    _current.deadline = deadline
    try:
        deadline.check()
        yield deadline
    finally:
        _current.deadline = previous


def check_deadline() -> None:
    """Raise :class:`Cancelled` if this thread works within a deadline that has passed; otherwise nothing."""
    # probe: a thread-local has no deadline until this thread first enters within()
    deadline = getattr(_current, "deadline", None)
    if deadline is not None:
        deadline.check()


def _check_before_forward(module: nn.Module, args: Any) -> None:
    check_deadline()


def watch_deadlines(model: nn.Module) -> list[Any]:
    """Put a forward pre-hook on every module of ``model`` that checks the calling thread's deadline (see the
    module docstring); returns the hooks' handles (``handle.remove()`` takes one off)."""
    return [module.register_forward_pre_hook(_check_before_forward) for module in model.modules()]


def _needs(served: ServedRun, endpoint: str) -> None:
    """A ConfigError unless the run's panel is served by ``endpoint``."""
    if ENDPOINT[served.panel] != endpoint:
        task = served.run.cfg.data.task
        raise ConfigError(
            f"run {served.name!r} is a {task} run: POST /runs/{served.name}/{ENDPOINT[served.panel]}, not /{endpoint}"
        )


def count_tokens(predictor: Any, text: str) -> int:
    """Tokens of ``text`` as the run reads them: its (source) tokenizer, else whitespace-separated words."""
    return predictor.count_tokens(text)


def _check_text(predictor: Any, text: str, limits: ServeLimits, field: str = "text", allow_empty: bool = False):
    if not allow_empty and not text.strip():
        raise DataError(f"{field}: empty input, expected some text")
    n = count_tokens(predictor, text)
    if n > limits.max_tokens:
        raise DataError(f"{field}: {n} tokens, over the limit of {limits.max_tokens} (--max-tokens)")


def _probabilities(classes: list[str], probs: torch.Tensor) -> dict[str, Any]:
    top = int(probs.argmax())
    return {
        "label": classes[top],
        "probability": round(float(probs[top]), DIGITS),
        "classes": list(classes),
        "probabilities": [round(p, DIGITS) for p in probs.tolist()],
    }


def predict(served: ServedRun, limits: ServeLimits, text: str | None = None, image: str | None = None,
            feature_maps_count: int = 16) -> dict[str, Any]:  # fmt: skip
    """Classify a text or a base64 image, or tag a text.

    Text classification: ``label``, ``probability``, ``classes`` and ``probabilities`` (one per class). Tagging:
    ``tokens`` and ``tags``. Images: as classification, plus ``feature_maps``: the first convolution's
    ``layer`` name, the full ``shape`` (C_1, H_1, W_1) and ``maps``, at most ``feature_maps_count`` of them (0:
    none), each a list of rows of floats.
    """
    _needs(served, "predict")
    predictor = served.predictor
    if served.panel == "image":
        if image is None or text is not None:
            raise ConfigError(f'run {served.name!r} classifies images: send {{"image": <base64 PNG/JPEG>}}')
        x = decode_image(image, predictor.image_size, predictor.channels, limits.max_pixels)  # (C, H_img, W_img)
        with first_conv_maps(served.run.model) as first:
            probs = predictor.predict_tensor(x.unsqueeze(0))[0]  # (K,)
        out = _probabilities(predictor.classes, probs)
        if feature_maps_count > 0 and first.output is not None:
            maps = feature_maps(first.output[0], max_maps=feature_maps_count)  # (K_maps, H', W')
            out["feature_maps"] = {
                "layer": first.name,
                "shape": list(first.output.shape[1:]),
                "maps": maps.round(decimals=DIGITS).tolist(),
            }
        return out
    if text is None or image is not None:
        raise ConfigError(f'run {served.name!r} reads text: send {{"text": "..."}}')
    _check_text(predictor, text, limits)
    if served.panel == "tag":
        row = predictor.predict_texts([text])[0]
        return {"tokens": row["tokens"], "tags": row["tags"]}
    probs = predictor.predict_proba([text])[0]  # (K,)
    return _probabilities(predictor.labels.labels, probs)


def translate(served: ServedRun, limits: ServeLimits, text: str, beam_size: int = 5) -> dict[str, Any]:
    """Translate one text: ``output``, ``source_tokens``, ``output_tokens`` and ``attention`` — one row per output
    token, the weights over the source tokens ([] for a model without attention)."""
    _needs(served, "translate")
    options = served.predictor.check({"beam_size": beam_size})  # the predictor's schema, as on the command line
    _check_text(served.predictor, text, limits)
    row = served.predictor.translate([text], **options)[0]
    return {
        "source": row["source"],
        "output": row["output"],
        "source_tokens": row["source_tokens"],
        "output_tokens": row["output_tokens"],
        "attention": [[round(w, DIGITS) for w in weights] for weights in row["attention"]],  # (T_out, S)
    }


def generate(served: ServedRun, limits: ServeLimits, prompt: str = "", length: int | None = None,
             temperature: float = 0.8, top_k: int | None = None, top_p: float | None = None,
             seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """Continue ``prompt`` by ``length`` tokens: ``text`` (the prompt and its continuation) and ``continuation``.
    ``length`` None: 200 tokens, or ``limits.max_tokens`` if fewer. An empty prompt starts as after a line break
    (see :meth:`dnn.tasks.language.TextGenerator.generate`)."""
    _needs(served, "generate")
    length = min(DEFAULT_LENGTH, limits.max_tokens) if length is None else length
    int_in("length", length, 1, limits.max_tokens, expected=f"an integer from 1 to {limits.max_tokens} (--max-tokens)")
    given = {"length": length, "temperature": temperature, "top_k": top_k, "top_p": top_p, "seed": seed}
    options = served.predictor.check({k: v for k, v in given.items() if v is not None})  # the schema, its rules
    _check_text(served.predictor, prompt, limits, field="prompt", allow_empty=True)
    text = served.predictor.generate(prompt, **options)
    return {"prompt": prompt, "continuation": text[len(prompt) :], "text": text}


def run(served: ServedRun, limits: ServeLimits, inputs: Sequence[str | Upload], options: Mapping[str, Any],
        explain: bool = False) -> dict[str, Any]:  # fmt: skip
    """Any run, through its predictor's contract: ``predictor.predict(inputs, **predictor.check(options))``.

    ``inputs`` are texts, or files (:class:`~dnn.serve.uploads.Upload`) by the predictor's ``modality``, staged in
    a temporary folder for the call (:func:`dnn.serve.uploads.staged`). Returns ``run``, ``kind``, ``rows`` (one
    per input: the predictor's dict, JSON-safe — floats to 4 decimals, tensors as lists — with each file named as
    the client named it) and ``explanation``: None, or with ``explain`` the first input explained
    (``predictor.explain``) and drawn — ``title``, ``explains``, ``png`` (base64), ``width``, ``height``.
    """
    predictor = served.predictor
    checked = predictor.check(options)  # the one validation of options: the schema and the predictor's rules
    if explain and not predictor.explains:
        raise ConfigError(f"run {served.name!r} is {predictor.what}, which draws no picture of an input; "
                          'leave out "explain"')  # fmt: skip
    with staged(inputs, predictor.modality, limits.max_pixels) as batch:
        for i, item in enumerate(inputs):
            if isinstance(item, str):  # a text (staged() refuses one for a run that reads files)
                _check_text(predictor, item, limits, field=f"inputs[{i}]", allow_empty=True)
        try:
            rows = predictor.predict(batch.paths, **checked)
            explanation = _explanation(predictor, batch) if explain else None
        except DnnError as err:  # its message names the client's file, never the server's folder
            raise type(err)(batch.shown(str(err))) from None
    return {"run": served.name, "kind": predictor.kind, "rows": [_plain(batch.shown(row)) for row in rows],
            "explanation": explanation}  # fmt: skip


def _explanation(predictor: Any, batch: Staged) -> dict[str, Any]:
    """The first input explained by the predictor, drawn to a PNG (in a temporary folder of its own)."""
    figure = predictor.explain(batch.paths[0])
    check_deadline()  # drawing is no model's forward call: the deadline is checked before it starts
    with tempfile.TemporaryDirectory(prefix="dnn-serve-") as folder:
        png = draw_figure(figure, Path(folder) / "explain.png").read_bytes()
    with Image.open(io.BytesIO(png)) as img:
        width, height = img.size
    return {"title": batch.shown(figure.title), "explains": predictor.explains,
            "png": base64.b64encode(png).decode("ascii"), "width": width, "height": height}  # fmt: skip


def _plain(value: Any) -> Any:
    """``value`` as JSON can carry it: floats rounded (not finite: None), tensors and arrays as lists."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return round(value, DIGITS) if math.isfinite(value) else None
    if isinstance(value, (torch.Tensor, np.ndarray, np.generic)):
        return _plain(value.tolist())
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return str(value)
