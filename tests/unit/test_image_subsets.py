"""Image data options the experiments use through the ordinary training path — a subset of the classes
(``data.classes``), a few labels per class (``data.per_class``), digits on a larger canvas (``data.canvas_*``) —
and the two small image models (``mlp``, ``convnet``)."""

import pytest
import torch

from dnn.errors import ConfigError, DataError
from dnn.models import create_model, model_config
from dnn.run import resolve_config
from dnn.tasks import make_task
from dnn.tasks.images import place_on_canvas


def digits(*overrides):
    task = make_task(resolve_config("digits-lenet5", ["data.image_size=8", *overrides]))
    task.prepare(lambda message: None)
    return task


def test_a_class_subset_keeps_only_its_images_relabelled_in_the_given_order():
    full, subset = digits(), digits("data.classes=[7,3]")
    assert subset.classes == ["7", "3"]
    for split in ("train", "valid", "test"):
        x, y = subset.splits[split]
        fx, fy = full.splits[split]
        kept = (fy == 7) | (fy == 3)
        assert torch.equal(x, fx[kept])  # the same images, in the same order
        assert torch.equal(y, torch.where(fy[kept] == 7, 0, 1))  # "7" is class 0, "3" class 1
    assert subset.model_options()["num_classes"] == 2


def test_a_class_that_does_not_exist_names_the_field():
    with pytest.raises(ConfigError, match=r"data.classes: there is no class '12'; the classes are 0, 1, 2"):
        digits("data.classes=[1,12]")
    with pytest.raises(ConfigError, match=r"data.classes must list distinct class names"):
        resolve_config("digits-lenet5", ["data.classes=[1,1]"])


def test_few_labels_per_class_are_drawn_by_seed_from_the_training_split_only():
    full, few = digits(), digits("data.per_class=3")
    x, y = few.splits["train"]
    assert torch.bincount(y).tolist() == [3] * 10
    fx, fy = full.splits["train"]
    assert all(any(torch.equal(img, other) for other in fx[fy == label]) for img, label in zip(x, y))
    assert torch.equal(few.splits["test"][0], full.splits["test"][0])  # evaluation keeps every image
    assert torch.equal(digits("data.per_class=3").splits["train"][0], x)  # the same draw for the same seed
    assert not torch.equal(digits("data.per_class=3", "seed=1").splits["train"][0], x)
    with pytest.raises(DataError, match=r"data.per_class=500: class 0 has only \d+ training images"):
        digits("data.per_class=500")
    with pytest.raises(ConfigError, match=r"data.per_class must be a positive integer or null, got 0"):
        resolve_config("digits-lenet5", ["data.per_class=0"])


def test_digits_on_a_canvas_centred_for_training_and_at_random_offsets_for_testing():
    full, task = digits(), digits("data.canvas_size=16", "data.canvas_test=random")
    assert task.image_size == 16 and task.model_options()["image_size"] == 16
    x, _ = task.splits["train"]
    assert x.shape[-2:] == (16, 16)
    assert torch.equal(x[:, :, 4:12, 4:12], full.splits["train"][0])  # centred: (16 − 8) / 2 = 4 on each side
    assert x.sum() == full.splits["train"][0].sum()  # the rest of the canvas is blank
    test, full_test = task.splits["test"][0], full.splits["test"][0]
    assert torch.allclose(test.sum(dim=(1, 2, 3)), full_test.sum(dim=(1, 2, 3)))  # whole digits, moved
    assert not torch.equal(test[:, :, 4:12, 4:12], full_test)
    assert torch.equal(digits("data.canvas_size=16", "data.canvas_test=random").splits["test"][0], test)


def test_place_on_canvas_puts_each_image_where_it_fits_whole():
    images = torch.ones(50, 1, 3, 3)
    out = place_on_canvas(images, 5, "random", torch.Generator().manual_seed(0))
    assert out.shape == (50, 1, 5, 5) and (out.sum(dim=(1, 2, 3)) == 9).all()
    corners = {tuple(torch.nonzero(img[0])[0].tolist()) for img in out}
    assert corners == {(i, j) for i in range(3) for j in range(3)}  # every offset that fits is drawn
    with pytest.raises(ConfigError, match=r"data.canvas_size=2 is smaller than the images \(3×3\)"):
        place_on_canvas(images, 2, "center", None)


def test_mlp_and_convnet_parameter_counts_against_the_image_size():
    assert (
        sum(p.numel() for p in create_model("mlp", model_config("mlp", hidden_sizes=[])).parameters())
        == 8 * 8 * 10 + 10
    )
    counts = [
        sum(p.numel() for p in create_model("convnet", model_config("convnet", image_size=s)).parameters())
        for s in (8, 16, 64)
    ]
    assert counts == [28_714] * 3
    convnet = create_model("convnet", model_config("convnet", image_size=8))
    assert convnet(torch.randn(2, 1, 20, 20)).shape == (2, 10)  # any size: the head pools globally
    mlp = create_model("mlp", model_config("mlp", image_size=8))
    with pytest.raises(ConfigError, match=r"mlp: input images must be 8×8 pixels, got 16×16"):
        mlp(torch.randn(2, 1, 16, 16))
    assert list(mlp.stages()) == ["fc1", "head"] and mlp.get_classifier() is mlp.head
