"""The learned decoder: shapes, training that learns, determinism, a model left alone, and a
cache keyed by everything that changes the result."""
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from tests.helpers import seeded
from zfcourse import decoder, models
from zfcourse.decoder import Decoder, fit, for_world, learned_decoder


@pytest.fixture(scope="module")
def model():
    return seeded(lambda: models.mini_alexnet(10))


@pytest.fixture(scope="module")
def images():
    """Smooth random colour fields: learnable from pool1 in a few steps."""
    g = torch.Generator().manual_seed(1)
    return F.interpolate(torch.randn(48, 3, 4, 4, generator=g), size=64, mode="bilinear", align_corners=False)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ZFCOURSE_CACHE", str(tmp_path))
    return tmp_path


TINY = dict(steps=3, batch_size=4, progress=False)


@pytest.mark.parametrize("channels, map_size, image_size, out_size", [(48, 8, 64, None), (96, 4, 64, None),
                                                                      (64, 27, 224, 112), (8, 13, 224, None)])
def test_decoder_maps_features_to_images_of_the_exact_size(channels, map_size, image_size, out_size):
    d = Decoder(channels, map_size, image_size, width=16, out_size=out_size).eval()
    assert d(torch.randn(2, channels, map_size, map_size)).shape == (2, 3, image_size, image_size)


def test_decoder_rejects_bad_features_and_settings():
    d = Decoder(48, 8, 64)
    with pytest.raises(ValueError, match=r"\[N, 48, 8, 8\]"):
        d(torch.randn(2, 48, 4, 4))
    with pytest.raises(ValueError, match="width"):
        Decoder(48, 8, 64, width=0)


def test_fit_learns_and_leaves_the_model_and_random_state_alone(model, images):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    d, history = fit(model, images, "pool1", steps=40, batch_size=8, progress=False)
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert not model.training and not d.training
    assert len(history["loss"]) == 40 and history["seconds"] > 0
    with torch.no_grad():
        error = F.mse_loss(d(models.activations(model, images, "pool1")["pool1"]), images)
    assert error < 0.5 * images.var(), "reconstructs much better than the mean image"


def test_fit_is_deterministic_under_its_seed(model, images):
    a, _ = fit(model, images, "pool1", seed=3, **TINY)
    b, _ = fit(model, images, "pool1", seed=3, **TINY)
    c, _ = fit(model, images, "pool1", seed=4, **TINY)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert not torch.equal(a.state_dict()["net.1.weight"], c.state_dict()["net.1.weight"])


def test_fit_takes_any_size_the_network_computes(model, images):
    small = images[..., :32, :32]
    d, _ = fit(model, small, "pool1", **TINY)
    with torch.no_grad():
        assert d(models.activations(model, small, "pool1")["pool1"]).shape == small.shape


def test_fit_rejects_bad_arguments(model, images):
    with pytest.raises(ValueError, match="steps"):
        fit(model, images, "pool1", steps=0)
    with pytest.raises(ValueError, match="floating point"):
        fit(model, images.to(torch.uint8), "pool1", **TINY)
    with pytest.raises(ValueError, match="square feature maps"):
        fit(model, images, "fc6", **TINY)


def _files(cache):
    return sorted(p.name for p in (cache / "decoders").glob("*.pt"))


def test_learned_decoder_is_cached_and_loads_without_training(model, images, cache, monkeypatch):
    d1, meta1 = learned_decoder(model, images, "pool1", **TINY)
    assert len(_files(cache)) == 1
    monkeypatch.setattr(decoder, "fit", lambda *a, **k: pytest.fail("trained again instead of loading"))
    d2, meta2 = learned_decoder(model, images, "pool1", **TINY)
    assert all(torch.equal(v, d2.state_dict()[k]) for k, v in d1.state_dict().items())
    assert meta1["loss"] == meta2["loss"] and meta2["recipe"]["steps"] == TINY["steps"]
    assert not d2.training


def test_cache_key_changes_with_layer_recipe_weights_and_images(model, images, cache):
    learned_decoder(model, images, "pool1", **TINY)
    learned_decoder(model, images, "conv2", **TINY)
    learned_decoder(model, images, "pool1", **dict(TINY, steps=4))
    learned_decoder(model, images[:40], "pool1", **TINY)
    changed = models.mini_alexnet(10).eval()
    changed.load_state_dict(model.state_dict())
    with torch.no_grad():
        models.conv_of(changed, "conv1").bias[0] += 1
    learned_decoder(changed, images, "pool1", **TINY)
    # weights after the layer do not change a decoder of it
    with torch.no_grad():
        models.conv_of(changed, "conv1").bias[0] -= 1
        models.conv_of(changed, "conv5").bias[0] += 1
    learned_decoder(changed, images, "pool1", **TINY)
    assert len(_files(cache)) == 5


def test_a_corrupt_cache_file_is_rebuilt(model, images, cache):
    learned_decoder(model, images, "pool1", **TINY)
    (path,) = (cache / "decoders").glob("*.pt")
    path.write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="rebuilding"):
        d, _ = learned_decoder(model, images, "pool1", **TINY)
    assert d(torch.zeros(1, 48, 8, 8)).shape == (1, 3, 64, 64)


@pytest.mark.parametrize("source_name, recipe", [("train", "train"), ("val", "val-cpu")])
def test_for_world_uses_the_worlds_data_and_budget(model, images, cache, monkeypatch, source_name, recipe):
    monkeypatch.setitem(decoder.RECIPES, recipe, dict(decoder.RECIPES[recipe], images=10, steps=2, batch_size=4))
    labels = torch.zeros(len(images), dtype=torch.long)
    world = SimpleNamespace(model=model, device=torch.device("cpu"), decoder_source=source_name,
                            train=TensorDataset(images, labels), val=TensorDataset(images[:24], labels[:24]))
    d, meta = for_world(world, "pool1", progress=False)
    source = world.train if source_name == "train" else world.val
    assert meta["source"] == source_name
    assert len(meta["indices"]) == 10 and meta["indices"][0] == 0 and meta["indices"][-1] == len(source) - 1
    assert meta["recipe"]["steps"] == 2
    assert meta["recipe"]["out_size"] == decoder.RECIPES[recipe]["out_size"]


def test_unit_picture_is_what_one_unit_adds_to_the_decoders_picture():
    torch.manual_seed(0)
    d = Decoder(8, 4, 16, width=16).eval()
    pictures = decoder.unit_picture(d, 3, (1, 2), torch.tensor([0.0, 2.0, 2.0]), n=3)
    assert pictures.shape == (3, 3, 16, 16)
    assert torch.equal(pictures[0], torch.zeros(3, 16, 16)), "a zero value adds nothing"
    seed = torch.zeros(1, 8, 4, 4)
    seed[0, 3, 1, 2] = 2.0
    with torch.no_grad():
        expected = d(seed) - d(torch.zeros_like(seed))
    torch.testing.assert_close(pictures[1:], expected.expand(2, -1, -1, -1), rtol=1e-5, atol=1e-6)
    assert pictures[1].abs().max() > 0
    with pytest.raises(ValueError, match="outside the decoder's 8 channels of 4x4"):
        decoder.unit_picture(d, 3, (4, 0), 1.0)


def test_outside_variation_measures_detail_outside_the_box_against_a_reference():
    g = torch.Generator().manual_seed(0)
    image = torch.rand(3, 12, 12, generator=g)
    box = (2, 3, 6, 9)
    assert decoder.outside_variation(image, image, box) == pytest.approx(1.0)
    assert decoder.outside_variation(2 * image, image, box) == pytest.approx(2.0)
    flat = torch.full_like(image, 0.3)
    flat[:, 2:6, 3:9] = image[:, 2:6, 3:9]  # detail inside the box does not count
    assert decoder.outside_variation(flat, image, box) == 0.0
    assert decoder.outside_variation(flat, image, (2, 3, 5, 9)) > 0, "a row of detail outside"
