import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from dnn.data.images import (
    AugmentationConfig,
    Compose,
    ImageFolder,
    Normalize,
    RandomAffine,
    RandomCrop,
    RandomHorizontalFlip,
    build_augmentation,
    channel_stats,
    digits_split_indices,
    digits_splits,
    load_digits_dataset,
    load_image,
)
from dnn.errors import ConfigError, DataError


def _save(path, array, mode=None, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8), mode=mode).save(path, **kw)


def _grey(value, size=(6, 5)):  # size = (H, W)
    return np.full(size, value, dtype=np.uint8)


def _rgb(r, g, b, size=(6, 5)):
    return np.stack([np.full(size, v, dtype=np.uint8) for v in (r, g, b)], axis=-1)


@pytest.fixture
def mixed_folder(tmp_path):
    root = tmp_path / "train"
    _save(root / "cat" / "a.png", _grey(51))
    _save(root / "cat" / "b.PNG", _rgb(255, 0, 0))
    _save(root / "dog" / "c.png", _rgb(0, 0, 255, size=(3, 3)))
    _save(root / "dog" / "nested" / "d.png", _grey(0))
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / "dog" / ".hidden.png").write_bytes(b"ignored")
    return root


def test_image_folder_classes_samples_shapes_and_values(mixed_folder):
    data = ImageFolder(mixed_folder, image_size=(4, 4))
    assert data.classes == ["cat", "dog"] and not data.grayscale and data.channels == 3
    assert [(p.name, label) for p, label in data.samples] == [("a.png", 0), ("b.PNG", 0), ("c.png", 1), ("d.png", 1)]
    assert data.targets == [0, 0, 1, 1] and len(data) == 4
    images = [data[i][0] for i in range(4)]
    assert all(x.shape == (3, 4, 4) and x.dtype == torch.float32 for x in images)
    torch.testing.assert_close(images[0], torch.full((3, 4, 4), 51 / 255))  # grey -> RGB repeats the value
    torch.testing.assert_close(images[1], torch.tensor([1.0, 0.0, 0.0])[:, None, None].expand(3, 4, 4))
    torch.testing.assert_close(images[2], torch.tensor([0.0, 0.0, 1.0])[:, None, None].expand(3, 4, 4))
    assert data[3][1] == 1


def test_image_folder_grayscale_decided_from_data_and_forced(tmp_path, mixed_folder):
    grey_root = tmp_path / "grey"
    _save(grey_root / "a" / "x.png", _grey(200))
    _save(grey_root / "b" / "y.jpg", _grey(100), quality=100)
    grey = ImageFolder(grey_root, image_size=5)
    assert grey.grayscale and grey[0][0].shape == (1, 5, 5)
    torch.testing.assert_close(grey[0][0], torch.full((1, 5, 5), 200 / 255))
    assert (grey[1][0] - 100 / 255).abs().max() <= 2 / 255  # JPEG is lossy
    forced = ImageFolder(mixed_folder, image_size=4, grayscale=True)
    expected = round(0.299 * 255) / 255  # ITU-R 601-2 luma of pure red
    assert abs(forced[1][0].mean().item() - expected) <= 1 / 255 and forced[1][0].shape == (1, 4, 4)


def test_image_folder_converts_rgba_palette_and_16_bit(tmp_path):
    root = tmp_path / "modes"
    rgba = np.concatenate([_rgb(10, 20, 30), np.full((6, 5, 1), 7, dtype=np.uint8)], axis=-1)
    _save(root / "a" / "rgba.png", rgba, mode="RGBA")
    Image.fromarray(_rgb(0, 255, 0)).convert("P").save(root / "a" / "palette.png")
    Image.fromarray(np.full((6, 5), 65535, dtype=np.uint16)).save(root / "a" / "deep.png")
    data = ImageFolder(root, image_size=(6, 5), grayscale=False)
    by_name = {p.name: data[i][0] for i, (p, _) in enumerate(data.samples)}
    torch.testing.assert_close(by_name["rgba.png"][:, 0, 0], torch.tensor([10, 20, 30]) / 255)
    torch.testing.assert_close(by_name["palette.png"][:, 0, 0], torch.tensor([0.0, 1.0, 0.0]))
    torch.testing.assert_close(by_name["deep.png"], torch.ones(3, 6, 5))  # 16-bit white is white, not clipped


def test_palette_of_grey_entries_counts_as_grey(tmp_path):
    root = tmp_path / "p"
    _save(root / "a" / "x.png", _grey(90))
    Image.fromarray(_grey(30)).convert("P").save(root / "a" / "y.png")
    assert ImageFolder(root, image_size=3).grayscale


def test_resize_is_bilinear_against_the_formula(tmp_path):
    # Upscaling [0, 255] to width 4 (align_corners=False): output centres sit at x = -0.25, 0.25, 0.75, 1.25 of the
    # input grid, clamped at the borders -> 0, 63.75, 191.25, 255.
    path = tmp_path / "two.png"
    _save(path, np.array([[0, 255], [0, 255]]))
    image = load_image(path, (2, 4), grayscale=True)
    expected = torch.tensor([0, 63.75, 191.25, 255]) / 255
    torch.testing.assert_close(image[0], expected.expand(2, 4), atol=0.5 / 255 + 1e-6, rtol=0)


def test_resize_down_matches_torch_antialiased_bilinear(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(12, 16), dtype=np.uint8)
    path = tmp_path / "noise.png"
    _save(path, pixels)
    image = load_image(path, (6, 4), grayscale=True)
    reference = F.interpolate(
        torch.tensor(pixels, dtype=torch.float32)[None, None] / 255,
        size=(6, 4),
        mode="bilinear",
        antialias=True,
        align_corners=False,
    )[0]
    torch.testing.assert_close(image, reference, atol=2 / 255, rtol=0)
    torch.testing.assert_close(load_image(path, (12, 16), True)[0], torch.tensor(pixels) / 255)  # same size: exact


def test_image_folder_errors_name_the_problem(tmp_path, mixed_folder):
    with pytest.raises(DataError, match="missing.*does not exist"):
        ImageFolder(tmp_path / "missing", 4)
    (tmp_path / "flat").mkdir()
    _save(tmp_path / "flat" / "x.png", _grey(1))
    with pytest.raises(DataError, match="no class folders"):
        ImageFolder(tmp_path / "flat", 4)
    (mixed_folder / "empty").mkdir()
    with pytest.raises(DataError, match="'empty' has no images"):
        ImageFolder(mixed_folder, 4)
    with pytest.raises(ConfigError, match="image_size"):
        ImageFolder(tmp_path, (4, 0))


def test_corrupt_images_are_data_errors_naming_the_file(tmp_path):
    root = tmp_path / "bad"
    _save(root / "a" / "good.png", _grey(5))
    (root / "a" / "junk.png").write_bytes(b"this is not a png")
    with pytest.raises(DataError, match=r"junk\.png.*cannot read image"):
        ImageFolder(root, 4)  # not an image at all: found at construction
    (root / "a" / "junk.png").unlink()
    _save(root / "a" / "cut.jpg", np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
    data = (root / "a" / "cut.jpg").read_bytes()
    (root / "a" / "cut.jpg").write_bytes(data[: len(data) // 2])
    dataset = ImageFolder(root, 4)  # the header is intact
    index = [p.name for p, _ in dataset.samples].index("cut.jpg")
    with pytest.raises(DataError, match=r"cut\.jpg"):
        dataset[index]
    assert dataset[1 - index][0].shape == (1, 4, 4)


def test_explicit_classes_for_validation_folders(tmp_path, mixed_folder):
    valid = tmp_path / "valid"
    _save(valid / "dog" / "x.png", _grey(9))
    data = ImageFolder(valid, 4, classes=["bird", "cat", "dog"])
    assert data.classes == ["bird", "cat", "dog"] and data.targets == [2]  # labels follow the given list
    _save(valid / "fish" / "y.png", _grey(9))
    with pytest.raises(DataError, match="'fish' is not one of"):
        ImageFolder(valid, 4, classes=["cat", "dog"])


def test_transform_is_applied(mixed_folder):
    data = ImageFolder(mixed_folder, 4, transform=lambda x: x * 0 + 7)
    assert torch.equal(data[0][0], torch.full((3, 4, 4), 7.0))


def test_digits_dataset_shapes_and_range():
    images, labels = load_digits_dataset()
    assert images.shape == (1797, 1, 8, 8) and images.dtype == torch.float32 and labels.dtype == torch.int64
    assert images.min() == 0.0 and images.max() == 1.0
    assert sorted(labels.unique().tolist()) == list(range(10))
    from sklearn.datasets import load_digits

    torch.testing.assert_close(images[5, 0] * 16, torch.tensor(load_digits().images[5], dtype=torch.float32))


def test_digits_split_is_stratified_disjoint_and_deterministic():
    images, labels = load_digits_dataset()
    train, valid, test = digits_split_indices(seed=3, valid=0.1, test=0.2)
    assert len(train) + len(valid) + len(test) == 1797
    assert torch.equal(torch.cat([train, valid, test]).sort().values, torch.arange(1797))  # disjoint and covering
    counts = torch.bincount(labels, minlength=10).double()
    for part, fraction in ((test, 0.2), (valid, 0.1)):
        assert (torch.bincount(labels[part], minlength=10) - fraction * counts).abs().max() <= 2
    again = digits_split_indices(seed=3, valid=0.1, test=0.2)
    assert all(torch.equal(a, b) for a, b in zip((train, valid, test), again))
    assert not torch.equal(digits_split_indices(seed=4)[2], test)
    train_ds, valid_ds, test_ds = digits_splits(seed=3)
    assert len(train_ds) == len(train) and torch.equal(test_ds.tensors[0], images[test])
    assert torch.equal(valid_ds.tensors[1], labels[valid])
    assert len(digits_split_indices(seed=0, valid=0.0)[1]) == 0
    with pytest.raises(ConfigError, match="valid"):
        digits_split_indices(0, valid=0.5, test=0.5)


def test_random_crop_keeps_size_and_is_identity_without_padding():
    x = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    assert RandomCrop(8, padding=2, generator=g)(x).shape == (3, 8, 8)
    assert torch.equal(RandomCrop(8, padding=0, generator=g)(x), x)
    # A padded crop is the image shifted by the offset: every crop is a window of the padded image.
    crop = RandomCrop(8, padding=1, generator=g)(x)
    padded = F.pad(x, (1, 1, 1, 1))
    assert any(torch.equal(crop, padded[:, i : i + 8, j : j + 8]) for i in range(3) for j in range(3))


def test_flip_twice_is_identity_and_p_bounds():
    x = torch.rand(2, 4, 5)
    flip = RandomHorizontalFlip(p=1.0)
    assert torch.equal(flip(x), x.flip(-1)) and torch.equal(flip(flip(x)), x)
    assert torch.equal(RandomHorizontalFlip(p=0.0)(x), x)
    with pytest.raises(ConfigError, match="p must be"):
        RandomHorizontalFlip(p=1.5)


def test_affine_with_zero_parameters_is_identity():
    x = torch.rand(3, 7, 9)
    torch.testing.assert_close(RandomAffine(0.0, 0.0, (1.0, 1.0))(x), x, atol=1e-6, rtol=0)


def test_affine_moves_pixels_exactly_at_the_extremes(monkeypatch):
    import dnn.data.images as images

    x = torch.zeros(1, 8, 8)
    x[0, 2, 5] = 1.0
    monkeypatch.setattr(images, "_uniform", lambda low, high, generator: high)  # every draw at its maximum
    moved = RandomAffine(translate=0.25)(x)  # 0.25 * 8 = 2 pixels right and 2 down
    torch.testing.assert_close(moved, F.pad(x, (2, 0, 2, 0))[:, :8, :8], atol=1e-6, rtol=0)
    rotated = RandomAffine(degrees=90.0)(x)  # +90 degrees with y pointing down: clockwise
    torch.testing.assert_close(rotated, torch.rot90(x, k=-1, dims=(1, 2)), atol=1e-6, rtol=0)
    wide = torch.zeros(1, 4, 8)  # non-square: pixel units differ per axis in normalised coordinates
    wide[0, 1, 4] = 1.0  # (x, y) = (0.5, -0.5) about the centre (3.5, 1.5)
    torch.testing.assert_close(RandomAffine(translate=0.25)(wide), F.pad(wide, (2, 0, 1, 0))[:, :4, :8])
    expected = torch.zeros(1, 4, 8)
    expected[0, 2, 4] = 1.0  # clockwise by 90 degrees: (x, y) -> (-y, x) = (0.5, 0.5)
    torch.testing.assert_close(RandomAffine(degrees=90.0)(wide), expected, atol=1e-6, rtol=0)
    halved = RandomAffine(scale=(0.5, 0.5))(torch.ones(1, 8, 8))  # shrunk about the centre: border is zero
    assert halved[0, 0].abs().max() == 0 and torch.allclose(halved[0, 3:5, 3:5], torch.ones(2, 2))


def test_augmentations_are_deterministic_for_a_seed():
    x = torch.rand(3, 10, 10)
    config = AugmentationConfig(crop_padding=2, horizontal_flip=True, degrees=15.0, translate=0.1, scale=(0.9, 1.1))

    def run(seed):
        augment = build_augmentation(config, 10, generator=torch.Generator().manual_seed(seed))
        return torch.stack([augment(x) for _ in range(5)])

    assert len(build_augmentation(config, 10).transforms) == 3
    assert torch.equal(run(0), run(0)) and not torch.equal(run(0), run(1))
    assert torch.equal(build_augmentation(AugmentationConfig(), 10)(x), x)
    with pytest.raises(ConfigError, match="scale"):
        AugmentationConfig(scale=(1.2, 1.0))


def test_channel_stats_equals_torch_population_statistics():
    images = (
        torch.rand(37, 3, 5, 6, generator=torch.Generator().manual_seed(0))
        * torch.tensor([1.0, 0.5, 0.1])[:, None, None]
    )
    expected_mean = images.double().mean(dim=(0, 2, 3))
    expected_std = images.double().std(dim=(0, 2, 3), unbiased=False)
    for data in (images, torch.utils.data.TensorDataset(images, torch.zeros(37))):
        mean, std = channel_stats(data, chunk_size=8) if isinstance(data, torch.Tensor) else channel_stats(data)
        torch.testing.assert_close(mean.double(), expected_mean, atol=1e-6, rtol=0)
        torch.testing.assert_close(std.double(), expected_std, atol=1e-6, rtol=0)


def test_normalize_round_trips_through_json_and_standardises():
    images = torch.rand(20, 3, 4, 4) * 3 + 1
    normalize = Normalize(*channel_stats(images))
    restored = Normalize.from_dict(json.loads(json.dumps(normalize.to_dict())))
    assert torch.equal(restored.mean, normalize.mean) and torch.equal(restored.std, normalize.std)
    out = torch.stack([restored(x) for x in images])
    torch.testing.assert_close(out.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-5, rtol=0)
    with pytest.raises(ConfigError, match="std must be > 0"):
        Normalize([0.5], [0.0])
    with pytest.raises(DataError, match="mean"):
        Normalize.from_dict({"mean": [0.0]})
    assert isinstance(Compose([normalize, RandomHorizontalFlip(0.0)]).registered[0], Normalize)


def test_corrupt_file_after_a_colour_image_is_still_found_at_construction(tmp_path):
    root = tmp_path / "late"
    _save(root / "a" / "1.png", _rgb(1, 2, 3))
    (root / "a" / "2.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match=r"2\.png"):
        ImageFolder(root, 4, grayscale=False)
