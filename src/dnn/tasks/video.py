"""Video classification (CNN per frame → RNN over time): clips of a digit moving left, right, up or down.

Data, decided once in :meth:`VideoClassification.prepare` (``data.task: video``, :class:`~dnn.run_config.
VideoData`): scikit-learn's digit images are split by seed into train / valid / test images, and each split's clips
are drawn from its own digits (:func:`dnn.data.digit_scenes.moving_digit_clips`, seeded by (seed, split)). Frames
are normalised with the training frames' mean and standard deviation. The loss is the cross-entropy of the
direction; evaluation reports ``accuracy``, ``macro_f1`` and the ``loss``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dnn.data.batching import shuffled_batches
from dnn.data.digit_scenes import DIRECTIONS, digits_by_split, moving_digit_clips
from dnn.data.images import Normalize, channel_stats
from dnn.data.splits import derive_seed
from dnn.device import model_device
from dnn.errors import CheckpointError, ConfigError, DataError
from dnn.rundir import TASK, RunDir
from dnn.tasks.base import ClassPredictions, FramesWithBelief, Predictor, Task, most_likely_classes
from dnn.tasks.registry import register_task
from dnn.training import metrics
from dnn.training.memory import BatchPlan

__all__ = ["VideoClassification", "VideoPredictor", "read_clip"]

SPLITS = ("train", "valid", "test")
EVAL_BATCH = 256


@register_task("video")
class VideoClassification(Task):
    """Moving-digit clips ``(N, T, 1, size, size)`` and their directions → batches, accuracy, a clip classifier."""

    monitor = ("accuracy", "max")

    builtin_data: ClassVar[dict[str, str]] = {"video": "clips of a digit moving left, right, up or down"}

    def __init__(self, cfg):
        super().__init__(cfg)
        self.classes = list(DIRECTIONS)
        self.splits: dict[str, tuple[Tensor, Tensor]] = {}
        self.normalize: Normalize | None = None

    def prepare(self, log) -> None:
        data, seed = self.cfg.data, self.cfg.seed
        digits = digits_by_split(seed, data.valid_fraction, data.test_fraction, data.sizes, "clips")
        for split, n in zip(SPLITS, data.sizes):
            generator = torch.Generator().manual_seed(derive_seed(seed, "video", split))
            if n:
                self.splits[split] = moving_digit_clips(*digits[split], n, data.frames, data.frame_size, data.speed,
                                                        data.distractors, generator)  # fmt: skip
            else:
                size = data.frame_size
                self.splits[split] = (torch.zeros(0, data.frames, 1, size, size), torch.zeros(0, dtype=torch.int64))
        mean, std = channel_stats(self.splits["train"][0].flatten(0, 1))  # over every training frame
        self.normalize = Normalize(mean, std.clamp_min(1e-6))
        sizes = ", ".join(f"{s} {len(self.splits[s][1])}" for s in SPLITS)
        log(f"data: video, a digit moving {data.speed} px/frame {'/'.join(self.classes)} over {data.frames} frames "
            f"of {data.frame_size}×{data.frame_size} ({data.distractors} still digits); {sizes} clips")  # fmt: skip

    def model_options(self) -> dict[str, Any]:
        return {"num_classes": len(self.classes), "in_channels": 1, "image_size": self.cfg.data.frame_size}

    def train_batches(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        x, y = self.splits["train"]
        bs = self.cfg.train.batch_size
        generator = torch.Generator().manual_seed(derive_seed(self.cfg.seed, "video", "epoch", str(epoch)))
        for idx in shuffled_batches(len(y), bs, generator):
            yield self.normalize(x[idx]), y[idx]

    def batches_per_epoch(self) -> int:
        return -(-len(self.splits["train"][1]) // self.cfg.train.batch_size)

    def data_bytes(self) -> int:
        """fp32 clips ``(T, 1, size, size)``, about 1.5 times over at the peak (measured: 1.47)."""
        data = self.cfg.data
        return round(1.5 * sum(data.sizes) * data.frames * data.frame_size**2 * 4)

    def batch_plan(self) -> BatchPlan:
        x = self.splits["train"][0]  # (N, T, 1, size, size)

        def make(size: int, length: int) -> tuple[Tensor, Tensor]:
            return torch.empty(size, *x.shape[1:]), torch.zeros(size, dtype=torch.int64)  # values do not matter

        keys = ("train.batch_size", "data.frames", "data.frame_size")
        return BatchPlan(min(self.cfg.train.batch_size, len(x)), 0, make, keys)

    @staticmethod
    def step(model: nn.Module, batch, context) -> tuple[Tensor, int]:
        clips, labels = batch
        return F.cross_entropy(model(clips), labels), len(labels)

    def _logits(self, model: nn.Module, x: Tensor) -> Tensor:
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                return torch.cat([model(self.normalize(x[i : i + EVAL_BATCH])) for i in range(0, len(x), EVAL_BATCH)])
        finally:
            model.train(was_training)

    def evaluate(self, model: nn.Module, split: str = "valid") -> dict[str, float]:
        x, y = self.splits.get(split, (None, torch.zeros(0)))
        if len(y) == 0:
            return {}
        logits = self._logits(model, x)  # (N, K)
        pred = logits.argmax(-1)
        return {
            "accuracy": metrics.accuracy(pred, y),
            "macro_f1": metrics.macro_f1(pred, y),
            "loss": float(F.cross_entropy(logits, y)),
        }

    def predictions(self, model: nn.Module, split: str = "test", limit: int = 2000) -> ClassPredictions | None:
        x, y = self.splits.get(split, (None, torch.zeros(0)))
        if len(y) == 0:
            return None
        return ClassPredictions(list(self.classes), self._logits(model, x[:limit]).argmax(-1), y[:limit])

    def sample_inputs(self, split: str = "test", n: int = 1) -> list[tuple[Tensor, str]]:
        """The first ``n`` clips of ``split`` (``(T, 1, size, size)`` in [0, 1]) and their true directions."""
        x, y = self.splits.get(split, (None, torch.zeros(0)))
        return [(x[i], self.classes[int(y[i])]) for i in range(min(n, len(y)))]

    def save_artifacts(self, run_dir: RunDir) -> None:
        data = self.cfg.data
        run_dir.write_json(TASK, {
            "task": "VideoClassification", "classes": self.classes, "frames": data.frames,
            "frame_size": data.frame_size, "channels": 1, "normalize": self.normalize.to_dict(),
        })  # fmt: skip

    @classmethod
    def load_predictor(cls, run_dir: RunDir, model: nn.Module) -> VideoPredictor:
        path = run_dir.file(TASK)
        required = ("classes", "frames", "frame_size", "normalize")
        info = run_dir.read_json(TASK, "a video run's task.json", required=required)
        try:
            normalize = Normalize.from_dict(info["normalize"])
            frames, size = int(info["frames"]), int(info["frame_size"])
        except (ConfigError, ValueError, KeyError, TypeError) as err:
            raise CheckpointError(f"{path}: unreadable ({err})") from None
        return VideoPredictor(model, list(info["classes"]), frames, size, normalize)


def read_clip(path: str | Path, size: int) -> Tensor:
    """A clip file as frames ``(T, 1, size, size)`` in [0, 1]: an animated GIF (each frame grey, resized) or a
    ``.npy`` array ``(T, H, W)`` with values in [0, 1] (resized bilinearly when its frames are not size × size)."""
    from PIL import Image, ImageSequence

    path = Path(path)
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise DataError(f"{path}: cannot read the clip ({err})") from None
        if array.ndim != 3:
            raise DataError(f"{path}: a clip must be an array (T, H, W), got shape {array.shape}")
        clip = torch.as_tensor(array, dtype=torch.float32).unsqueeze(1)  # (T, 1, H, W)
        if clip.shape[-2:] != (size, size):
            clip = F.interpolate(clip, size=(size, size), mode="bilinear", align_corners=False)
        return clip.clamp(0.0, 1.0)
    try:
        with Image.open(path) as img:
            frames = [np.asarray(f.convert("L").resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)
                      for f in ImageSequence.Iterator(img)]  # fmt: skip
    except (OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{path}: cannot read the clip ({type(err).__name__}: {err})") from None
    return torch.from_numpy(np.stack(frames)).div_(255.0).unsqueeze(1)  # (T, 1, size, size)


class VideoPredictor(Predictor):
    """A trained clip classifier with what it needs to read a clip and name its class."""

    kind = "video"
    modality = "video"
    explains = "the frames, each with the class the model believes after seeing the clip up to it"
    inputs = "clip files (animated GIF, or .npy frames (T, H, W) in [0, 1]), or clips (B, T, C, H, W) in [0, 1]"
    outputs = "the most likely class and its probability"

    def __init__(self, model: nn.Module, classes: list[str], frames: int, frame_size: int, normalize: Normalize):
        self.model, self.classes, self.frames, self.frame_size = model, classes, frames, frame_size
        self.normalize = normalize

    def predict_tensor(self, clips: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Class probabilities ``(B, K)`` of ``clips (B, T, C, H, W)`` in [0, 1] (``lengths``: real frames)."""
        self.model.eval()
        with torch.inference_mode():
            device = model_device(self.model)  # a run loaded on a GPU: the clips go where its weights are
            return torch.softmax(self.model(self.normalize(clips).to(device), lengths).float(), dim=-1).cpu()

    def explain(self, input: str, **options: Any) -> FramesWithBelief:
        clip = read_clip(input, self.frame_size)  # (T, 1, size, size)
        T = len(clip)
        prefixes = clip.unsqueeze(0).expand(T, *clip.shape)  # row t reads frames 1…t+1 (lengths mask the rest)
        probs = self.predict_tensor(prefixes, torch.arange(1, T + 1))  # (T, K)
        best = probs.argmax(dim=-1)
        final = self.classes[int(best[-1])]
        return FramesWithBelief(
            "frames", f"Frames and the class believed after each: {Path(input).name}",
            frames=clip[:, 0], labels=[self.classes[int(k)] for k in best],
            probabilities=[float(probs[t, k]) for t, k in enumerate(best)], heading=f"predicted {final}",
        )  # fmt: skip

    def predict(self, paths: Sequence[str | Path], **options: Any) -> list[dict[str, Any]]:
        """``[{"input", "label", "probability"}]`` for each clip file; clips of different lengths are padded."""
        clips = [read_clip(p, self.frame_size) for p in paths]
        lengths = torch.tensor([len(c) for c in clips])
        batch = torch.zeros(len(clips), int(lengths.max()), *clips[0].shape[1:])  # (B, T_max, 1, size, size)
        for b, clip in enumerate(clips):
            batch[b, : len(clip)] = clip
        probs = self.predict_tensor(batch, lengths)
        return most_likely_classes(paths, probs, self.classes)

    predict_files = predict  # the name earlier versions used
