"""images-folder: a user's folder of images, starting from an earlier run's weights with part of the body frozen."""

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file
from sklearn.datasets import load_digits

from dnn.run import load_run
from dnn.train import train


def digit_folder(root, classes=(0, 1, 2), per_class=20):
    digits = load_digits()
    for c in classes:
        (root / f"class{c}").mkdir(parents=True)
        for i, idx in enumerate(np.flatnonzero(digits.target == c)[:per_class]):
            Image.fromarray((digits.images[idx] * 15).astype("uint8")).save(root / f"class{c}" / f"{i}.png")
    return root


def test_images_folder_transfers_weights_freezes_the_body_and_predicts(tmp_path):
    base = tmp_path / "base"
    train("digits-lenet5", ["train.epochs=1"], run_dir=base, progress=False)
    folder = digit_folder(tmp_path / "photos")
    run_dir = tmp_path / "transfer"
    overrides = [
        f"data.train={folder}", "data.image_size=8", "data.augment=false", "data.horizontal_flip=false",
        "model.name=lenet5", f"train.init_from={base}", "train.freeze_up_to=conv2", "train.epochs=2",
    ]  # fmt: skip
    results = train("images-folder", overrides, run_dir=run_dir, progress=False)
    assert set(results) >= {"valid", "test"}
    log = (run_dir / "log.txt").read_text()
    assert "transfer: " in log and "frozen stages conv1, conv2" in log
    before, after = load_file(base / "model.safetensors"), load_file(run_dir / "model.safetensors")
    assert torch.equal(before["features.0.weight"], after["features.0.weight"])  # conv1: transferred, frozen
    assert torch.equal(before["features.3.weight"], after["features.3.weight"])  # conv2
    assert not torch.equal(before["classifier.0.weight"], after["classifier.0.weight"])  # fc1: trained on
    assert after["classifier.5.weight"].shape[0] == 3  # a new head for the folder's 3 classes
    rows = load_run(run_dir).predictor.predict_files([str(folder / "class1" / "0.png")])
    assert rows[0]["label"] in {"class0", "class1", "class2"}
