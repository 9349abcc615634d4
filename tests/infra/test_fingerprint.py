"""One fingerprint for every cache: contents decide, never the type or the length alone."""
import pytest
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from zfcourse import models, train
from zfcourse.data import ImageFolderDataset
from zfcourse.data.synthetic import SyntheticImages
from zfcourse.infra.fingerprint import fingerprint


class Items(Dataset):
    """A dataset the fingerprint knows nothing about."""

    def __init__(self, images, labels):
        self.x, self.y = images, labels

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


def test_datasets_that_differ_only_in_labels_differ():
    x = torch.randn(8, 3, 64, 64)
    a, b = torch.zeros(8, dtype=torch.long), torch.arange(8)
    assert fingerprint(TensorDataset(x, a)) != fingerprint(TensorDataset(x, b))
    assert fingerprint(TensorDataset(x, a)) == fingerprint(TensorDataset(x.clone(), a.clone()))
    assert fingerprint(Items(x, a)) != fingerprint(Items(x, b))
    assert fingerprint(Subset(TensorDataset(x, a), [0, 1])) != fingerprint(Subset(TensorDataset(x, a), [1, 0]))


def test_tensors_modules_and_tensor_backed_datasets():
    assert fingerprint(torch.zeros(2, 3)) != fingerprint(torch.zeros(3, 2))        # the shape counts
    assert fingerprint(torch.zeros(2)) != fingerprint(torch.zeros(2, dtype=torch.float64))
    torch.manual_seed(0)
    m = models.mini_alexnet(10)
    before = fingerprint(m)
    with torch.no_grad():
        models.conv_of(m, "conv3").bias[0] += 1e-6
    assert fingerprint(m) != before
    assert fingerprint(SyntheticImages("val", 10)) != fingerprint(SyntheticImages("val", 10, seed=1))


def test_file_backed_datasets_change_with_their_files(tmp_path):
    from PIL import Image
    for i in range(2):
        Image.new("RGB", (8, 8), (i * 100, 0, 0)).save(tmp_path / f"{i}.png")
    world = type("W", (), {"preprocess": staticmethod(lambda im: torch.zeros(3, 8, 8)),
                           "image_size": 8, "normalize": staticmethod(lambda x: x)})()
    before = fingerprint(ImageFolderDataset(tmp_path, world))
    Image.new("RGB", (9, 9), (7, 7, 7)).save(tmp_path / "1.png")
    assert fingerprint(ImageFolderDataset(tmp_path, world)) != before


def test_what_is_no_dataset_is_refused():
    with pytest.raises(TypeError, match="cannot fingerprint a list"):
        fingerprint([1, 2, 3])


def test_train_cached_never_returns_a_model_trained_on_other_labels(tmp_path, monkeypatch):
    monkeypatch.setenv("ZFCOURSE_CACHE", str(tmp_path))
    x = torch.randn(8, 3, 64, 64)
    recipe = dict(epochs=1, lr=0.05, batch_size=8, device="cpu", progress=False)
    a, _ = train.train_cached(lambda: models.mini_alexnet(2), TensorDataset(x, torch.zeros(8).long()), **recipe)
    b, _ = train.train_cached(lambda: models.mini_alexnet(2), TensorDataset(x, torch.ones(8).long()), **recipe)
    assert len(list((tmp_path / "training").glob("*.pt"))) == 2
    assert not torch.equal(a.state_dict()["classifier.6.bias"], b.state_dict()["classifier.6.bias"])
