"""The shared argument checks: floats are no counts, booleans no numbers, NaN no value."""
import pytest

from zfcourse.infra.checks import count, layer_list, number


def test_count_refuses_floats_booleans_and_small_values():
    assert count(3, "k") == 3
    for bad in (2.0, 2.5, True, "3", None):
        with pytest.raises(TypeError, match="k must be an int"):
            count(bad, "k")
    with pytest.raises(ValueError, match="k must be at least 1, got 0"):
        count(0, "k")


def test_number_refuses_non_finite_and_out_of_range_values():
    assert number(0.5, "lr", 0, above=True) == 0.5
    with pytest.raises(ValueError, match="lr must be finite"):
        number(float("nan"), "lr")
    with pytest.raises(ValueError, match="lr must be more than 0, got 0"):
        number(0, "lr", 0, above=True)
    with pytest.raises(ValueError, match="momentum must be at least 0"):
        number(-0.1, "momentum", 0)
    with pytest.raises(TypeError, match="lr must be a number"):
        number("0.1", "lr")


def test_layer_list_takes_a_name_or_names():
    assert layer_list("conv1", ["conv1"]) == ["conv1"]
    assert layer_list(("conv1", "fc8"), ["conv1", "fc8"]) == ["conv1", "fc8"]
    with pytest.raises(ValueError, match="at least one layer; valid: conv1, fc8"):
        layer_list([], ["conv1", "fc8"])
    with pytest.raises(TypeError, match="a layer name or a list of them"):
        layer_list(3, ["conv1"])
