"""The windowed pass: which outputs an occluder reaches, and the maps it gives."""
import torch
from torch import nn

from zfcourse.infra.device import seeded
from zfcourse.local_pass import LocalPass, plan, run


def shapes_of(modules, x):
    shapes = [x.shape]
    for m in modules:
        x = m(x)
        shapes.append(x.shape)
    return shapes


def test_plan_counts_the_outputs_whose_window_meets_the_occluder():
    # a 3x3 convolution with padding 1: rows 2..3 occluded change output rows 1..4
    conv = nn.Conv2d(1, 1, 3, padding=1)
    x = torch.zeros(1, 1, 8, 8)
    [step] = plan([conv], shapes_of([conv], x), rows=[2], cols=[6], window=(2, 2))
    assert step.size == [4, 3]           # columns 6..7 change 5..7: the map ends at 7
    assert step.start == [[1], [5]]
    assert step.crop == [6, 5]           # (size - 1) * stride + kernel


def test_plan_stops_where_the_window_covers_the_whole_map():
    modules = [nn.Conv2d(1, 1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
               nn.Conv2d(1, 1, 3, padding=1), nn.Conv2d(1, 1, 3, padding=1)]
    x = torch.zeros(1, 1, 8, 8)
    steps = plan(modules, shapes_of(modules, x), rows=[0, 4], cols=[0, 4], window=(4, 4))
    assert steps[1] is None                        # ReLU: pointwise
    assert steps[-1].size == [4, 4]                # the pooled map is 4x4: all of it
    assert len(steps) == 4


def test_windowed_maps_equal_the_plain_pass_of_the_occluded_copies():
    with seeded(0):
        modules = [nn.Conv2d(3, 4, 5, stride=2, padding=2), nn.ReLU(),
                   nn.MaxPool2d(3, 2), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU()]
        x = torch.randn(3, 3, 20, 20, dtype=torch.float64)
    modules = [m.double() for m in modules]
    rows, cols, window = [0, 6, 12], [0, 12], (8, 8)
    engine = LocalPass(modules, shapes_of(modules, x), rows, cols, window)
    assert engine.end > 0
    fill = torch.full((1, 3, 1, 1), 0.5, dtype=torch.float64)
    segments = [(1, 0, 0, 3), (2, 1, 1, 2)]          # (row, col, first image, last + 1)
    maps, _ = engine.forward(engine.bases(x), segments, fill, torch.contiguous_format)
    copies = []
    for r, c, i0, i1 in segments:
        copy = x[i0:i1].clone()
        copy[:, :, rows[r]: rows[r] + 8, cols[c]: cols[c] + 8] = 0.5
        copies.append(copy)
    plain, _ = run(modules[: engine.end], torch.cat(copies), None)
    torch.testing.assert_close(maps, plain, rtol=1e-12, atol=1e-12)
