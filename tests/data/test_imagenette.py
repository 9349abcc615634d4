import pytest
import torch

from zfcourse.data import imagenette
from zfcourse.data.imagenette import TensorImages
from zfcourse.train import evaluate


def test_imagenette_decodes_small_squares_and_caches(imagenet_standin, tmp_path):
    train = imagenette.imagenette("train", size=32, progress=False)
    assert train.images.shape == (20, 3, 32, 32) and train.images.dtype == torch.uint8
    assert train.labels.tolist() == [c for c in range(10) for _ in range(2)]
    assert train.classes[0] == "tench" and train.classes[-1] == "parachute"
    files = list((tmp_path / "cache" / "imagenette").glob("train-32-*.pt"))
    assert len(files) == 1
    again = imagenette.imagenette("train", size=32, progress=False)
    assert torch.equal(again.images, train.images)


def test_imagenette_corrupt_cache_is_rebuilt_with_a_warning(imagenet_standin, tmp_path):
    first = imagenette.imagenette("val", size=16, progress=False)
    (path,) = (tmp_path / "cache" / "imagenette").glob("val-16-*.pt")
    path.write_bytes(b"not a tensor file")
    with pytest.warns(UserWarning, match="rebuilding"):
        second = imagenette.imagenette("val", size=16, progress=False)
    assert torch.equal(first.images, second.images)


def test_imagenette_bad_arguments_name_valid_values(imagenet_standin):
    with pytest.raises(ValueError, match="valid: train, val"):
        imagenette.imagenette("test")
    with pytest.raises(ValueError, match="at least 8"):
        imagenette.imagenette("train", size=4)


def test_tensor_images_items_match_batches_and_invert():
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8, generator=gen)
    data = TensorImages(images, torch.arange(5) % 2, ["a", "b"])
    x, y = data[3]
    assert torch.allclose(x, data.transform_batch(images[3:4])[0]) and y == 1
    assert torch.allclose(data.denormalize(x) * 255, images[3].float(), atol=1e-3)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 2))
    assert 0 <= evaluate(model, data) <= 1
    with pytest.raises(ValueError, match="uint8"):
        TensorImages(images.float(), torch.arange(5), ["a"])
