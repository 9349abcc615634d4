import pytest
import torch
from torch import nn

from zfcourse import models, train
from zfcourse.data.synthetic import SyntheticImages


def test_renormalisation_caps_rms_and_leaves_small_filters_alone():
    torch.manual_seed(0)
    model = models.mini_zfnet(10)
    conv = models.conv_of(model, "conv1")
    with torch.no_grad():
        conv.weight[:10] *= 100  # these exceed the radius
        conv.weight[10:] *= 0.01 / conv.weight[10:].pow(2).mean((1, 2, 3), keepdim=True).sqrt()  # these do not
    before = conv.weight.detach().clone()
    n = train.renormalize_filters(model, radius=0.1)
    rms = conv.weight.pow(2).mean((1, 2, 3)).sqrt()
    assert (rms <= 0.1 + 1e-6).all()
    assert torch.allclose(rms[:10], torch.full((10,), 0.1))
    assert torch.equal(conv.weight[10:], before[10:])
    # direction is kept: rescaling, not clipping
    assert torch.allclose(torch.nn.functional.normalize(conv.weight[:10].flatten(1)), torch.nn.functional.normalize(before[:10].flatten(1)), atol=1e-6)
    assert n >= 10


def test_folded_batchnorm_computes_what_the_normalised_network_did():
    torch.manual_seed(0)
    model = models.mini_alexnet(10)
    net = train.with_batchnorm(model)
    assert sum(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in net) == 7  # 5 conv + fc6 + fc7
    net.train()
    for _ in range(3):  # give the running statistics and affine maps non-trivial values
        net(torch.randn(16, 3, 64, 64) * 2 + 0.5)
    with torch.no_grad():
        for m in net:
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.weight.uniform_(0.5, 2), m.bias.uniform_(-1, 1)
    x = torch.randn(4, 3, 64, 64)
    expected = net.eval()(x)
    train.fold_batchnorm(net)
    assert torch.allclose(model.eval()(x), expected, atol=1e-4, rtol=1e-4)
    assert not any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in model.modules())


def test_training_is_deterministic_and_learns():
    data = SyntheticImages("train", 256, seed=1)

    def run():
        torch.manual_seed(0)
        model = models.mini_alexnet(10)
        hist = train.train(model, data, epochs=2, lr=0.05, batchnorm=True, seed=3, device="cpu", progress=False)
        return model, hist

    (a, ha), (b, hb) = run(), run()
    for p, q in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(p, q)
    assert ha.loss == hb.loss and ha.loss[1] < ha.loss[0]


def test_renormalisation_during_training():
    data = SyntheticImages("train", 128, seed=1)
    torch.manual_seed(0)
    model = models.mini_zfnet(10)
    # initial filters have RMS about 0.01: a radius at that scale binds from the first step
    hist = train.train(model, data, epochs=1, lr=0.05, renorm_radius=0.01, device="cpu", progress=False)
    assert hist.rescaled[0] > 0
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            assert m.weight.pow(2).mean((1, 2, 3)).sqrt().max() <= 0.01 + 1e-6


def test_renormalisation_limited_to_chosen_layers():
    torch.manual_seed(0)
    model = models.mini_alexnet(10)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.mul_(10)  # RMS about 0.1 everywhere
    conv2 = models.conv_of(model, "conv2").weight.clone()
    n = train.renormalize_filters(model, radius=0.05, layers=["conv1"])
    assert n == 48 and torch.equal(models.conv_of(model, "conv2").weight, conv2)
    assert models.conv_of(model, "conv1").weight.pow(2).mean((1, 2, 3)).sqrt().max() <= 0.05 + 1e-6
    with pytest.raises(KeyError, match="conv1, pool1, conv2"):
        train.train(model, SyntheticImages("train", 8), renorm_radius=0.1, renorm_layers=["conv9"], progress=False)
    with pytest.raises(ValueError, match="renorm_radius"):
        train.train(model, SyntheticImages("train", 8), renorm_layers=["conv1"], progress=False)


def test_renormalisation_and_batchnorm_exclude_each_other():
    with pytest.raises(ValueError, match="renormalisation"):
        train.train(models.mini_zfnet(10), SyntheticImages("train", 8), renorm_radius=0.1, batchnorm=True, progress=False)


class _Interrupting(SyntheticImages):
    """Raises after ``budget`` batches, like a kernel interrupted mid-epoch."""

    def __init__(self, data, budget):
        self.__dict__.update(data.__dict__)
        self.budget = budget

    def transform_batch(self, images):
        self.budget -= 1
        if self.budget < 0:
            raise KeyboardInterrupt
        return SyntheticImages.transform_batch(images)


@pytest.mark.parametrize("batchnorm", [False, True])
def test_resumed_training_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, batchnorm):
    data = SyntheticImages("train", 96, seed=1)
    recipe = dict(epochs=3, lr=0.05, batch_size=32, batchnorm=batchnorm, snapshots=(1, 3), device="cpu", progress=False)
    if not batchnorm:
        recipe["renorm_radius"] = 0.05
    a, ha = train.train_cached(lambda: models.mini_alexnet(10), data, data, path=tmp_path / "a.pt", seed=4, **recipe)
    # 3 batches per epoch: the interruption falls in the middle of epoch 2
    with pytest.raises(KeyboardInterrupt):
        train.train_cached(lambda: models.mini_alexnet(10), _Interrupting(data, 4), data, path=tmp_path / "b.pt", seed=4, **recipe)
    ckpt = torch.load(tmp_path / "b.pt", weights_only=True)
    assert ckpt["epoch"] == 1 and set(ckpt["history"]["snapshots"]) == {1}
    b, hb = train.train_cached(lambda: models.mini_alexnet(10), data, data, path=tmp_path / "b.pt", seed=4, **recipe)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
    assert ha.loss == hb.loss and len(hb.loss) == 3 and ha.val_accuracy == hb.val_accuracy
    for e in (1, 3):
        for p, q in zip(ha.snapshots[e].values(), hb.snapshots[e].values()):
            assert torch.equal(p, q)
    # the last snapshot is the final (folded) model; a finished checkpoint is only loaded
    for p, q in zip(ha.snapshots[3].values(), a.state_dict().values()):
        assert torch.equal(p, q)
    c, _ = train.train_cached(lambda: models.mini_alexnet(10), _Interrupting(data, 0), data, path=tmp_path / "a.pt", seed=4, **recipe)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), c.state_dict().values()))


def test_snapshots_in_batchnorm_mode_are_folded_copies_and_do_not_disturb_training():
    data = SyntheticImages("train", 64, seed=1)
    seen = []

    def run(snapshots):
        torch.manual_seed(0)
        model = models.mini_zfnet(10)
        hist = train.train(model, data, epochs=2, lr=0.05, batch_size=32, batchnorm=True, snapshots=snapshots,
                           on_snapshot=lambda e, sd: seen.append(e), device="cpu", progress=False)
        return model, hist

    (a, ha), (b, hb) = run(()), run((1, 2))
    assert ha.snapshots == {} and sorted(hb.snapshots) == [1, 2] and seen == [1, 2]
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    first = hb.snapshots[1]
    assert set(first) == set(a.state_dict())  # the model's own keys: no BatchNorm left
    assert not torch.equal(first["features.0.weight"], b.state_dict()["features.0.weight"])
    model = models.mini_zfnet(10)
    model.load_state_dict(hb.snapshots[2])
    x = data.transform_batch(data.images[:4])
    assert torch.allclose(model.eval()(x), b(x), atol=1e-5)


def test_bad_snapshots_and_foreign_checkpoints_are_refused(tmp_path):
    data = SyntheticImages("train", 32, seed=1)
    with pytest.raises(ValueError, match="snapshot epochs"):
        train.train(models.mini_zfnet(10), data, epochs=2, snapshots=(3,), progress=False)
    path = tmp_path / "c.pt"
    train.train(models.mini_zfnet(10), data, epochs=1, batch_size=32, checkpoint=path, device="cpu", progress=False)
    with pytest.raises(ValueError, match="another recipe.*lr"):
        train.train(models.mini_zfnet(10), data, epochs=1, lr=0.5, batch_size=32, checkpoint=path, device="cpu", progress=False)
    path.write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="unreadable"):
        train.train(models.mini_zfnet(10), data, epochs=1, batch_size=32, checkpoint=path, device="cpu", progress=False)
    assert torch.load(path, weights_only=True)["epoch"] == 1


def test_train_cached_keys_its_default_file_by_recipe_data_and_initial_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("ZFCOURSE_CACHE", str(tmp_path))
    data = SyntheticImages("train", 32, seed=1)
    recipe = dict(epochs=1, batch_size=32, device="cpu", progress=False)
    a, _ = train.train_cached(lambda: models.mini_zfnet(10), data, **recipe)
    files = list((tmp_path / "training").glob("*.pt"))
    assert len(files) == 1
    # found again: nothing is trained (the interrupting data would raise on the first batch)
    b, _ = train.train_cached(lambda: models.mini_zfnet(10), _Interrupting(data, 0), on_snapshot=print, **recipe)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    train.train_cached(lambda: models.mini_zfnet(10), data, lr=0.02, **recipe)
    train.train_cached(lambda: models.mini_zfnet(10), data, seed=1, **recipe)
    train.train_cached(lambda: models.mini_zfnet(10), SyntheticImages("train", 32, seed=2), **recipe)
    assert len(list((tmp_path / "training").glob("*.pt"))) == 4


class _Fixed(nn.Module):
    """Logits that are the image's first pixel values, one per class."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return x[:, 0, 0, :3]


def test_predict_keeps_the_order_and_confident_mistakes_come_first():
    logits = torch.tensor([[5.0, 0, 0], [0, 1, 0], [0, 0, 9], [2, 0, 0], [0, 0, 0.5]])
    images = torch.zeros(5, 1, 1, 3)
    images[:, 0, 0] = logits
    labels = torch.tensor([0, 2, 1, 0, 0])  # items 1, 2 and 4 are wrong
    data = torch.utils.data.TensorDataset(images, labels)
    probs, y = train.predict(_Fixed(), data, batch_size=2, progress=False)
    assert torch.equal(y, labels)
    assert torch.allclose(probs, logits.softmax(1))
    assert train.confident_mistakes(probs, y).tolist() == [2, 1, 4]
    assert train.confident_mistakes(probs, y, k=1).tolist() == [2]
    assert train.confident_mistakes(probs, probs.argmax(1)).tolist() == []


@pytest.mark.parametrize("spoil", ["empty weights", "no history fields", "nan weights"])
def test_a_checkpoint_with_invalid_contents_is_trained_anew_with_a_warning(tmp_path, spoil):
    data = SyntheticImages("train", 32, seed=1)
    recipe = dict(epochs=1, lr=0.05, batch_size=16, device="cpu", progress=False)
    a, ha = train.train_cached(lambda: models.mini_alexnet(10), data, path=tmp_path / "a.pt", **recipe)
    ckpt = torch.load(tmp_path / "a.pt", weights_only=True)
    if spoil == "empty weights":
        ckpt["net"] = {}
    elif spoil == "no history fields":
        ckpt["history"] = {"loss": ckpt["history"]["loss"]}
    else:
        ckpt["net"] = {k: torch.full_like(v, float("nan")) for k, v in ckpt["net"].items()}
    torch.save(ckpt, tmp_path / "a.pt")
    with pytest.warns(UserWarning, match="does not hold a valid training state"):
        b, hb = train.train_cached(lambda: models.mini_alexnet(10), data, path=tmp_path / "a.pt", **recipe)
    assert hb.loss == ha.loss
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_history_reads_as_its_last_epoch():
    history = train.History(loss=[2.0, 1.0], train_accuracy=[0.2, 0.5], val_accuracy=[0.3, 0.61],
                            seconds=12.4)
    assert repr(history) == "History(epochs=2, val_accuracy=0.610, seconds=12)"
    assert train.History.from_state(history.state(), 2).val_accuracy == [0.3, 0.61]
    with pytest.raises(ValueError, match="3 finite values"):
        train.History.from_state(history.state(), 3)


@pytest.mark.parametrize("options, error, message", [
    (dict(epochs=0), ValueError, "epochs must be at least 1"),
    (dict(epochs=1.5), TypeError, "epochs must be an int"),
    (dict(lr=-1.0), ValueError, "lr must be more than 0"),
    (dict(lr=float("nan")), ValueError, "lr must be finite"),
    (dict(batch_size=0), ValueError, "batch_size must be at least 1"),
    (dict(momentum=-0.5), ValueError, "momentum must be at least 0"),
])
def test_bad_training_arguments_are_named(options, error, message):
    data = SyntheticImages("train", 8, seed=1)
    with pytest.raises(error, match=message):
        train.train(models.mini_alexnet(10), data, **{"epochs": 1, **options}, device="cpu", progress=False)


def test_empty_data_is_refused_for_training_and_for_accuracy():
    empty = SyntheticImages("train", 0)
    with pytest.raises(ValueError, match="train_set holds no images"):
        train.train(models.mini_alexnet(10), empty, epochs=1, device="cpu", progress=False)
    with pytest.raises(ValueError, match="accuracy is undefined"):
        train.evaluate(models.mini_alexnet(10), empty)


def test_top_k_errors_against_a_sort():
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(200, 10, generator=g).softmax(1)
    labels = torch.randint(0, 10, (200,), generator=g)
    errors = train.top_k_errors(probs, labels, ks=(1, 5, 10))
    ranked = probs.argsort(dim=1, descending=True, stable=True)
    for k in (1, 5):
        inside = (ranked[:, :k] == labels[:, None]).any(1)
        assert errors[k] == pytest.approx(1 - inside.float().mean().item())
    assert errors[10] == 0.0
    assert train.top_k_errors(torch.eye(3), torch.tensor([0, 1, 2]), ks=(1,))[1] == 0.0
    with pytest.raises(ValueError, match="at most the number of classes"):
        train.top_k_errors(torch.eye(3), torch.tensor([0, 1, 2]), ks=(5,))
