"""Image classification: scikit-learn's digits or a user's folder of images, with any CNN of the zoo."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dnn.data.batching import shuffled_batches
from dnn.data.images import (
    AugmentationConfig,
    ImageFolder,
    Normalize,
    build_augmentation,
    channel_stats,
    digits_split_indices,
    load_digits_dataset,
    load_image,
)
from dnn.data.splits import derive_seed, split_indices
from dnn.device import model_device
from dnn.errors import CheckpointError, ConfigError, DataError
from dnn.rundir import TASK, RunDir
from dnn.tasks.base import ClassPredictions, Figure, Predictor, StageFeatureMaps, Task, most_likely_classes
from dnn.tasks.registry import register_task
from dnn.training import metrics
from dnn.training.memory import BatchPlan

__all__ = ["ImageClassification"]


def _stack(dataset) -> tuple[Tensor, Tensor]:
    """A whole (small) image dataset as tensors: (N, C, H, W) and (N,)."""
    images, labels = zip(*(dataset[i] for i in range(len(dataset))))
    return torch.stack(images), torch.tensor(labels, dtype=torch.int64)


@register_task("digits", "image_folder")
class ImageClassification(Task):
    """Digits or an image folder → tensors in memory, normalised with the training split's statistics.

    Augmentation draws from a generator seeded by (seed, epoch, batch), so that the data of every step is a
    function of the seed alone: a resumed run sees exactly the batches an uninterrupted one would have seen.
    """

    monitor = ("accuracy", "max")

    builtin_data: ClassVar[dict[str, str]] = {"digits": "scikit-learn's 8×8 handwritten digits"}

    def __init__(self, cfg):
        super().__init__(cfg)
        self.classes: list[str] = []
        self.normalize: Normalize | None = None
        self.splits: dict[str, tuple[Tensor, Tensor]] = {}
        self.augment = None
        self.image_size = cfg.data.image_size

    # -- data --------------------------------------------------------------------------------------------------

    def prepare(self, log) -> None:
        data = self.cfg.data
        if data.task == "digits":
            images, labels = load_digits_dataset()
            if data.image_size and data.image_size != 8:  # e.g. 32: LeNet-5's own input size, bilinear upsampling
                images = F.interpolate(images, size=data.image_size, mode="bilinear", align_corners=False)
            train, valid, test = digits_split_indices(self.cfg.seed, data.valid_fraction, data.test_fraction)
            self.splits = {"train": (images[train], labels[train]), "valid": (images[valid], labels[valid])}
            self.splits["test"] = (images[test], labels[test])
            self.classes = [str(i) for i in range(10)]
            self.image_size = images.shape[-1]
        else:
            if not data.train:
                raise DataError("data.train must name a folder of images (one sub-folder per class)")
            size = data.image_size or 32
            self.image_size = size
            folder = ImageFolder(data.train, size, grayscale=data.grayscale)
            self.classes = list(folder.classes)
            if len(self.classes) < 2:
                raise DataError(f"{data.train}: one class ({', '.join(self.classes)}); a classifier needs at least "
                                f"2 sub-folders, one per class")  # fmt: skip
            x, y = _stack(folder)
            if data.valid or data.test:
                self.splits["train"] = (x, y)
                for split in ("valid", "test"):
                    path = getattr(data, split)
                    if path:
                        other = ImageFolder(path, size, grayscale=folder.grayscale, classes=self.classes)
                        self.splits[split] = _stack(other)
            else:
                train, valid, test = split_indices(
                    len(y), (1 - data.valid_fraction - data.test_fraction, data.valid_fraction, data.test_fraction),
                    seed=self.cfg.seed,
                )  # fmt: skip
                for split, idx in zip(("train", "valid", "test"), (train, valid, test)):
                    self.splits[split] = (x[idx], y[idx])
        self._select_and_place(log)
        mean, std = channel_stats(self.splits["train"][0])
        self.normalize = Normalize(mean, std.clamp_min(1e-6))
        if data.augment:
            aug = AugmentationConfig(
                crop_padding=max(1, self.image_size // 8), horizontal_flip=data.horizontal_flip, degrees=10.0,
                translate=0.05,
            )  # fmt: skip
            self.augment = build_augmentation(aug, self.image_size)
        sizes = ", ".join(f"{k} {len(v[1])}" for k, v in self.splits.items())
        log(f"data: {data.task}, {len(self.classes)} classes, {sizes} images of {self.image_size}×{self.image_size}")

    def _select_and_place(self, log) -> None:
        """``data.classes``, ``data.per_class`` and ``data.canvas_size``: a subset of the classes, few training
        labels, the images on a larger canvas (centred, or at one random offset per image drawn from the seed)."""
        data, seed = self.cfg.data, self.cfg.seed
        if data.classes is not None:
            self.splits, self.classes = keep_classes(self.splits, self.classes, data.classes)
            log(f"data: classes {', '.join(self.classes)} only, labelled 0–{len(self.classes) - 1}")
        if data.per_class is not None:
            self.splits["train"] = few_per_class(*self.splits["train"], data.per_class, len(self.classes), seed)
            log(f"data: {data.per_class} training images per class ({len(self.splits['train'][1])} in all)")
        if data.canvas_size is not None:
            for split, (x, y) in self.splits.items():
                placement = data.canvas_test if split == "test" else data.canvas_train
                generator = torch.Generator().manual_seed(derive_seed(seed, "canvas", split))
                self.splits[split] = (place_on_canvas(x, data.canvas_size, placement, generator), y)
            log(f"data: images on a {data.canvas_size}×{data.canvas_size} canvas, training and validation at the "
                f"{data.canvas_train}, test at the {data.canvas_test}")  # fmt: skip
            self.image_size = data.canvas_size

    def prepare_evaluation(self, run_dir: RunDir, path: str, log) -> None:
        """A trained run's classes, image size and normalisation, and the image folder ``path`` (one sub-folder per
        class, names as in training) as the test split (``dnn eval RUN --data FOLDER``)."""
        info = _read_info(run_dir)
        self.classes, self.image_size = list(info["classes"]), int(info["image_size"])
        self.normalize = Normalize.from_dict(info["normalize"])
        folder = ImageFolder(path, self.image_size, grayscale=int(info["channels"]) == 1, classes=self.classes)
        if len(folder) == 0:
            raise DataError(f"{path}: no images to evaluate")
        self.splits["test"] = _stack(folder)
        log(f"data: {path}, {len(folder)} images of {self.image_size}×{self.image_size}")

    def model_options(self) -> dict[str, Any]:
        channels = self.splits["train"][0].shape[1]
        return {"num_classes": len(self.classes), "in_channels": int(channels), "image_size": self.image_size}

    def train_batches(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        x, y = self.splits["train"]
        bs = self.cfg.train.batch_size
        generator = torch.Generator().manual_seed(self.cfg.seed * 100_003 + epoch)
        for b, idx in enumerate(shuffled_batches(len(y), bs, generator)):
            images = x[idx]
            if self.augment is not None:
                g = torch.Generator().manual_seed((self.cfg.seed * 100_003 + epoch) * 1_000_003 + b)
                for transform in self.augment.transforms:
                    transform.generator = g
                images = torch.stack([self.augment(img) for img in images])
            yield self.normalize(images), y[idx]

    def batches_per_epoch(self) -> int:
        n = len(self.splits["train"][1])
        return (n + self.cfg.train.batch_size - 1) // self.cfg.train.batch_size

    def batch_plan(self) -> BatchPlan:
        x = self.splits["train"][0]  # (N, C, H_img, W_img)

        def make(size: int, length: int) -> tuple[Tensor, Tensor]:
            return torch.empty(size, *x.shape[1:]), torch.zeros(size, dtype=torch.int64)  # values do not matter

        return BatchPlan(min(self.cfg.train.batch_size, len(x)), 0, make, ("train.batch_size", "data.image_size"))

    # -- training and evaluation -------------------------------------------------------------------------------

    @staticmethod
    def step(model: nn.Module, batch, context) -> tuple[Tensor, int]:
        images, labels = batch
        return F.cross_entropy(model(images), labels), len(labels)

    def evaluate(self, model: nn.Module, split: str = "valid") -> dict[str, float]:
        if split not in self.splits or len(self.splits[split][1]) == 0:
            return {}
        x, y = self.splits[split]
        preds, total_loss, device = [], 0.0, model_device(model)
        with torch.no_grad():
            for start in range(0, len(y), 256):
                logits = model(self.normalize(x[start : start + 256]).to(device)).float()
                total_loss += F.cross_entropy(logits.cpu(), y[start : start + 256], reduction="sum").item()
                preds.append(logits.argmax(-1).cpu())
        pred = torch.cat(preds)
        return {
            "accuracy": metrics.accuracy(pred, y),
            "macro_f1": metrics.macro_f1(pred, y),
            "loss": total_loss / len(y),
        }

    def predictions(self, model: nn.Module, split: str = "test", limit: int = 2000) -> ClassPredictions | None:
        if split not in self.splits or len(self.splits[split][1]) == 0:
            return None
        x, y = self.splits[split]
        x, y = x[:limit], y[:limit]
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                device = model_device(model)
                pred = torch.cat([model(self.normalize(x[i : i + 256]).to(device)).argmax(-1).cpu()
                                  for i in range(0, len(y), 256)])  # fmt: skip
        finally:
            model.train(was_training)
        return ClassPredictions(list(self.classes), pred, y)

    def sample_inputs(self, split: str = "test", n: int = 1) -> list[tuple[Tensor, str]]:
        """The first ``n`` images of ``split`` (before normalisation, in [0, 1]) and their true classes."""
        x, y = self.splits.get(split, (torch.empty(0), torch.empty(0, dtype=torch.int64)))
        return [(x[i], self.classes[int(y[i])]) for i in range(min(n, len(y)))]

    def figures(self, model: nn.Module, predictor: ImagePredictor) -> list[Figure]:
        """The feature maps of the first test image."""
        return [predictor.feature_maps(image, "the first test image", truth) for image, truth in self.sample_inputs()]

    # -- artefacts saved with the run, and prediction ----------------------------------------------------------

    def save_artifacts(self, run_dir: RunDir) -> None:
        info = {
            "task": "ImageClassification",
            "classes": self.classes,
            "image_size": self.image_size,
            "channels": int(self.splits["train"][0].shape[1]),
            "normalize": self.normalize.to_dict(),
        }
        run_dir.write_json(TASK, info)

    @classmethod
    def load_predictor(cls, run_dir: RunDir, model: nn.Module) -> ImagePredictor:
        info = _read_info(run_dir)
        normalize = Normalize.from_dict(info["normalize"])
        return ImagePredictor(model, info["classes"], info["image_size"], info["channels"], normalize)


def keep_classes(
    splits: dict[str, tuple[Tensor, Tensor]], classes: list[str], wanted: list[int | str]
) -> tuple[dict[str, tuple[Tensor, Tensor]], list[str]]:
    """Only the images of the classes named in ``wanted``, relabelled 0, 1, … in that order (``data.classes``)."""
    names = [str(c) for c in wanted]
    for name in names:
        if name not in classes:
            raise ConfigError(f"data.classes: there is no class {name!r}; the classes are {', '.join(classes)}")
    relabel = torch.full((len(classes),), -1, dtype=torch.int64)  # old label → new label, −1 = dropped
    relabel[torch.tensor([classes.index(n) for n in names])] = torch.arange(len(names))
    out = {}
    for split, (x, y) in splits.items():
        new = relabel[y]  # (N,)
        out[split] = (x[new >= 0], new[new >= 0])
    return out, names


def few_per_class(x: Tensor, y: Tensor, n: int, num_classes: int, seed: int) -> tuple[Tensor, Tensor]:
    """``n`` images of each class, drawn by seed, kept in their original order (``data.per_class``)."""
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(derive_seed(seed, "per_class")))
    keep = []
    for k in range(num_classes):
        chosen = order[y[order] == k][:n]
        if len(chosen) < n:
            raise DataError(f"data.per_class={n}: class {k} has only {len(chosen)} training images")
        keep.append(chosen)
    idx = torch.cat(keep).sort().values
    return x[idx], y[idx]


def place_on_canvas(x: Tensor, size: int, placement: str, generator: torch.Generator) -> Tensor:
    """Images ``(N, C, h, w)`` pasted onto blank (zero) canvases ``(N, C, size, size)``: all at the centre, or each
    at an offset drawn uniformly from every position where it fits whole (``data.canvas_size``)."""
    N, C, h, w = x.shape
    if size < max(h, w):
        raise ConfigError(f"data.canvas_size={size} is smaller than the images ({h}×{w})")
    if placement == "center":
        top, left = torch.full((N,), (size - h) // 2), torch.full((N,), (size - w) // 2)
    else:
        top = torch.randint(0, size - h + 1, (N,), generator=generator)
        left = torch.randint(0, size - w + 1, (N,), generator=generator)
    canvas = x.new_zeros(N, C, size, size)
    for i, (t, l) in enumerate(zip(top.tolist(), left.tolist())):
        canvas[i, :, t : t + h, l : l + w] = x[i]
    return canvas


def _read_info(run_dir: RunDir) -> dict[str, Any]:
    """An image run's task.json, checked for what prediction needs."""
    path = run_dir.file(TASK)
    required = ("classes", "image_size", "channels", "normalize")
    info = run_dir.read_json(TASK, "an image run's task.json", required=required)
    try:
        Normalize.from_dict(info["normalize"])
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path}: unreadable normalisation ({err})") from None
    return info


class ImagePredictor(Predictor):
    """A trained image classifier with what it needs to read an image file and name the class."""

    kind = "image"
    modality = "image"
    inputs = "image files (PNG/JPEG), or images (B, C, H, W) in [0, 1]"
    outputs = "the most likely class and its probability"
    explains = "the feature maps of each stage of the CNN"

    def __init__(self, model: nn.Module, classes: list[str], image_size: int, channels: int, normalize: Normalize):
        self.model, self.classes, self.image_size, self.channels, self.normalize = (
            model, classes, image_size, channels, normalize,
        )  # fmt: skip

    def load(self, path: str) -> Tensor:
        """The image file at ``path`` as the model reads it: ``(C, H, W)`` in [0, 1], resized."""
        return load_image(path, self.image_size, grayscale=self.channels == 1)

    def predict_tensor(self, images: Tensor) -> Tensor:
        """Class probabilities ``(B, K)`` for images ``(B, C, H, W)`` in [0, 1]."""
        self.model.eval()
        with torch.inference_mode():
            return torch.softmax(self.model(self.normalize(images).to(model_device(self.model))).float(), -1).cpu()

    def predict(self, inputs: Sequence[str], **options: Any) -> list[dict[str, Any]]:
        probs = self.predict_tensor(torch.stack([self.load(p) for p in inputs]))
        return most_likely_classes(inputs, probs, self.classes)

    predict_files = predict  # the name earlier versions used

    def explain(self, input: str, **options: Any) -> StageFeatureMaps:
        return self.feature_maps(self.load(input), Path(input).name)

    def feature_maps(self, image: Tensor, name: str, truth: str | None = None) -> StageFeatureMaps:
        """The feature maps of ``image (C, H, W)`` in [0, 1], titled with ``name``, the prediction (and ``truth``)."""
        maps, probs = stage_feature_maps(self.model, self.normalize(image.unsqueeze(0))[0])
        top = int(probs.argmax())
        said = f"predicted {self.classes[top]} ({float(probs[top]):.2f})" + (f", true class {truth}" if truth else "")
        return StageFeatureMaps("feature_maps", f"Feature maps: {name}", image=image, maps=maps,
                                heading=f"Feature maps per stage; {said}")  # fmt: skip


def stage_feature_maps(model: nn.Module, image: Tensor) -> tuple[dict[str, np.ndarray], Tensor]:
    """The output ``(C, H, W)`` of each stage of a CNN (:meth:`~dnn.models.cnn_base.ImageClassifier.stages`) for
    one normalised ``image (C, H_img, W_img)``, in order, and the class probabilities ``(K,)``.

    A stage's output is that of its last module; stages whose output is not a map (the fully connected ones)
    are left out.
    """
    outputs: dict[str, Tensor] = {}

    def keep(name: str):
        def hook(module, args, output):
            if name not in outputs and isinstance(output, Tensor):
                outputs[name] = output.detach()

        return hook

    handles = [modules[-1].register_forward_hook(keep(name)) for name, modules in model.stages().items() if modules]
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            probs = torch.softmax(model(image.unsqueeze(0).to(model_device(model))).float(), dim=-1)[0].cpu()  # (K,)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    maps = {name: out[0].float().cpu().numpy() for name, out in outputs.items() if out.dim() == 4}  # (C, H, W) each
    return maps, probs
