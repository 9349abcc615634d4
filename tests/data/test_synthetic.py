import hashlib
import subprocess
import sys

import pytest
import torch

from zfcourse.data import synthetic


def test_shapes_types_and_balance():
    images, masks, labels = synthetic.render(range(30), "train", seed=0)
    assert images.shape == (30, 3, 64, 64) and images.dtype == torch.uint8
    assert masks.shape == (30, 64, 64) and masks.dtype == torch.uint8
    assert torch.equal(labels, torch.arange(30) % len(synthetic.TRAIN_PAIRS))
    assert len(synthetic.TRAIN_PAIRS) >= 10


def test_heldout_classes_are_new_combinations_of_known_parts():
    train, held = set(synthetic.TRAIN_PAIRS), set(synthetic.HELDOUT_PAIRS)
    assert not train & held
    assert {s for s, _ in held} <= {s for s, _ in train}
    assert {t for _, t in held} <= {t for _, t in train}


def test_any_image_renders_alone_as_in_a_batch():
    batch, masks, _ = synthetic.render(range(50, 80), "val", seed=3)
    alone, mask, _ = synthetic.render([61], "val", seed=3)
    assert torch.equal(batch[11], alone[0]) and torch.equal(masks[11], mask[0])


def test_splits_and_seeds_differ():
    a = synthetic.render(range(8), "train", 0)[0]
    assert not torch.equal(a, synthetic.render(range(8), "val", 0)[0])
    assert not torch.equal(a, synthetic.render(range(8), "train", 1)[0])


def _digest(split="train", seed=7):
    return hashlib.sha256(synthetic.render(range(40), split, seed)[0].numpy().tobytes()).hexdigest()


def test_two_processes_draw_identical_images():
    code = "from tests.data.test_synthetic import _digest; print(_digest())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == _digest()


def test_object_mask_marks_the_object():
    images, masks, _ = synthetic.render(range(20), "train", 0)
    inside = masks > 200
    assert all(0.05 < m.float().mean() < 0.6 for m in inside)  # an object, not the whole image
    # pixels inside the object carry the object's two tones, so they differ from the surround
    assert all((img.float()[:, m].std(1).mean() > 5) for img, m in zip(images, inside))


def test_textures_have_their_spatial_frequencies():
    """Fine stripes put more of the object's power at high frequency than coarse dots."""
    def high_share(texture):
        label = [i for i, (_, t) in enumerate(synthetic.TRAIN_PAIRS) if t == texture][0]
        idx = [label + k * len(synthetic.TRAIN_PAIRS) for k in range(12)]
        images, masks, _ = synthetic.render(idx, "train", 0)
        gray = images.float().mean(1) * (masks > 250)
        power = torch.fft.fftshift(torch.fft.fft2(gray - gray.mean((1, 2), keepdim=True)).abs() ** 2, dim=(-2, -1))
        yy, xx = torch.meshgrid(torch.arange(64) - 32, torch.arange(64) - 32, indexing="ij")
        r = (yy ** 2 + xx ** 2).float().sqrt()
        return float((power[:, r > 12].sum((1,)) / power.sum((1, 2))).mean())
    assert high_share("stripes") > high_share("checks") > high_share("dots")


def test_dataset_items_are_normalised_and_round_trip():
    ds = synthetic.SyntheticImages("heldout", 12, seed=0)
    x, y = ds[5]
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32 and -2.01 <= float(x.min()) <= float(x.max()) <= 2.01
    assert y == 5 % len(synthetic.HELDOUT_PAIRS)
    assert torch.allclose(synthetic.denormalize(x) * 255, ds.images[5].float(), atol=1e-3)
    assert ds.classes == [synthetic.class_name(p) for p in synthetic.HELDOUT_PAIRS]


def test_unknown_split_is_named():
    with pytest.raises(ValueError, match="train, val, heldout"):
        synthetic.render([0], "test")


def test_part_labels_group_images_by_texture_and_shape():
    classes = ["striped square", "dotted square", "striped disc"]
    parts = synthetic.part_labels(classes, [0, 1, 2, 2])
    assert parts["texture"].tolist() == [1, 0, 1, 1]        # dotted < striped
    assert parts["shape"].tolist() == [1, 1, 0, 0]          # disc < square


def test_counts_are_checked():
    with pytest.raises(ValueError, match="n must be at least 0"):
        synthetic.SyntheticImages("train", -1)
    with pytest.raises(TypeError, match="n must be an int"):
        synthetic.SyntheticImages("train", 2.5)
    assert len(synthetic.SyntheticImages("train", 0)) == 0
