"""One value per image: ints, sequences, tensors and arrays of ints; never floats."""
import numpy as np
import pytest
import torch

from zfcourse.occluder import per_image


@pytest.mark.parametrize("value", [3, [3, 1], (3, 1), torch.tensor([3, 1]), np.array([3, 1]),
                                   np.int64(3)])
def test_ints_in_any_container_are_taken(value):
    got = per_image(value, 2, "target", "cpu")
    assert got.dtype == torch.long and got.shape == (2,) and int(got[0]) == 3


@pytest.mark.parametrize("value", [1.5, [1, 2.5], torch.tensor([1.0, 2.0]), np.array([1.0, 2.0]),
                                   True, [True, False], "cat"])
def test_floats_booleans_and_text_are_refused(value):
    with pytest.raises(TypeError, match="target must be an int or one int per image"):
        per_image(value, 2, "target", "cpu")


def test_the_count_must_match():
    with pytest.raises(ValueError, match=r"one per image \(2\), got 3 values"):
        per_image([1, 2, 3], 2, "target", "cpu")
