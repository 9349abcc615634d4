"""The explorers: they start at the strongest unit and follow their pickers."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from zfcourse import evolution, explorers, models  # noqa: E402
from zfcourse.explorers import pooling_explorer, projection_explorer  # noqa: E402
from zfcourse.infra import progress  # noqa: E402
from zfcourse.topk import top_activations  # noqa: E402


@pytest.fixture(scope="module")
def world(mini_world):
    return mini_world


def _pickers(box):
    (image, layer), (channel, row, col) = box.children[0].children, box.children[1].children
    return image, layer, channel, row, col


def _strongest(world, x, layer):
    a = models.activations(world.model, x, layer)[layer][0]
    c = int(a.flatten(1).max(1).values.argmax())
    h, w = divmod(int(a[c].flatten().argmax()), a.shape[2])
    return c, h, w


def test_projection_explorer_starts_at_and_returns_to_the_strongest(world):
    torch.manual_seed(1)
    images = torch.randn(2, 3, 64, 64)
    image, layer, channel, row, col = _pickers(projection_explorer(world, images, layer="conv2"))
    assert (channel.value, row.value, col.value) == _strongest(world, images[:1], "conv2")
    assert (channel.max, row.max, col.max) == (95, 7, 7)
    layer.value = "pool1"
    assert (channel.value, row.value, col.value) == _strongest(world, images[:1], "pool1")
    assert (channel.max, row.max) == (47, 7)
    image.value = 1
    assert (channel.value, row.value, col.value) == _strongest(world, images[1:], "pool1")
    row.value = 0
    assert row.value == 0, "a position can be picked by hand"
    channel.value = (channel.value + 1) % 48
    a = models.activations(world.model, images[1:], "pool1")["pool1"][0, channel.value]
    assert (row.value, col.value) == divmod(int(a.flatten().argmax()), 8)


def test_projection_explorer_rejects_dense_layers(world):
    with pytest.raises(KeyError, match="valid"):
        projection_explorer(world, torch.zeros(1, 3, 64, 64), layer="fc6")


def test_pooling_explorer_has_row_and_column_sliders():
    box = pooling_explorer(row=4, col=2)
    row, col = box.children[0].children
    assert (row.value, col.value, row.max) == (4, 2, 6)
    col.value = 3  # redraws without error


def test_top9_explorer_redraws_for_the_picked_layer_and_channel(world, monkeypatch):
    images = torch.randn(20, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    tops = {layer: top_activations(world.model, images, layer, k=9, progress=False)
            for layer in ("conv1", "conv2", "conv5")}
    drawn = []

    def record(world_, top, images_, channel, captions=None, rule="deconvnet"):
        drawn.append((top.layer, channel))
        return plt.figure()

    monkeypatch.setattr(explorers, "channel_figure", record)
    box = explorers.top9_explorer(world, tops, images, layer="conv2", channel=3)
    layer_w, channel_w = box.children[0].children
    assert layer_w.options == ("conv1", "conv2", "conv5") and drawn == [("conv2", 3)]
    channel_w.value = 50
    layer_w.value = "conv1"                                   # 48 channels: the slider shrinks to fit
    assert channel_w.max == 47 and drawn == [("conv2", 3), ("conv2", 50), ("conv1", 47)]
    with pytest.raises(KeyError, match="conv3"):
        explorers.top9_explorer(world, tops, images, layer="conv3")
    assert len(drawn) == 3


def test_evolution_explorer_needs_shared_epochs():
    torch.manual_seed(0)
    model = models.mini_alexnet(4).eval()
    first = {k: v.clone() for k, v in model.state_dict().items()}
    snaps = {1: first, 3: {k: v + 0.02 * torch.randn_like(v) for k, v in first.items()}}
    evo = evolution.evolution(model, snaps, torch.randn(3, 3, 64, 64), [("conv2", 0)])
    box = explorers.evolution_explorer({"a": evo, "b": evo})
    assert box.children[0].value == 1
    other = evolution.Evolution([1], evo.units, [p[:1] for p in evo.projections], evo.images[:1])
    with pytest.raises(ValueError, match="same epochs"):
        explorers.evolution_explorer({"a": evo, "b": other})


# --------------------------------------------------------------------------- kernel-free twins

def _walk(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from _walk(child)


def _pictures(widget):
    import ipywidgets as W
    return [w.value for w in _walk(widget) if isinstance(w, W.Image)]


@pytest.fixture
def links(monkeypatch):
    """Every jslink made, as (source widget, trait, target widget, trait)."""
    import ipywidgets as W
    made, jslink = [], W.jslink

    def record(source, target):
        made.append((*source, *target))
        return jslink(source, target)

    monkeypatch.setattr(W, "jslink", record)
    return made


@pytest.fixture
def site(monkeypatch, links):
    monkeypatch.setenv(progress.SITE, "1")
    return links


def _driven(box, links):
    """The (picker, trait) pairs that drive a Stack inside ``box``."""
    import ipywidgets as W
    stacks = {id(w) for w in _walk(box) if isinstance(w, W.Stack)}
    return {(id(s), t) for s, t, target, trait in links if id(target) in stacks and trait == "selected_index"}


def test_linked_views_nest_one_stack_per_picker_level(links):
    import ipywidgets as W
    a, b = W.IntSlider(1, 0, 1), W.Dropdown(options=["x", "y", "z"], value="y")
    views = [[W.HTML(f"{i}{j}") for j in range(3)] for i in range(2)]
    top = explorers.linked_views(views, [(a, "value"), (b, "index")])
    assert top.selected_index == 1 and [c.selected_index for c in top.children] == [1, 1]
    assert top.children[1].children[2].value == "12"
    assert sorted((id(s), t) for s, t, _, _ in links) == sorted([(id(a), "value")] + [(id(b), "index")] * 2)


def test_every_twin_shows_distinct_views_switched_by_its_pickers(site, world):
    import ipywidgets as W
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    tops = {layer: top_activations(world.model, images, layer, k=3, progress=False)
            for layer in ("conv1", "conv5")}
    twins = {
        "feature maps": (explorers.feature_map_explorer(world, images, "conv2", twin_images=2,
                                                        twin_channels=2), 2 * 2 * 8),
        "projections": (projection_explorer(world, images, "conv5", twin_images=2), 2 * 8),
        "top 9": (explorers.top9_explorer(world, tops, images, "conv5", channel=7, twin_channels=3), 2 * 3),
    }
    for name, (box, n) in twins.items():
        pictures = _pictures(box)
        assert len(pictures) == n and len(set(pictures)) > n // 2, name
        assert all(bytes(p[:2]) == b"\xff\xd8" for p in pictures), name     # JPEG
        pickers = [w for w in _walk(box) if hasattr(w, "description") and not isinstance(w, type(box))]
        assert _driven(box, site) >= {(id(p), "index" if hasattr(p, "index") else "value")
                                      for p in pickers if p.description}, f"{name}: a picker drives nothing"
    pooling = pooling_explorer(size=5)
    tables = [w.value for w in _walk(pooling) if isinstance(w, W.HTML)]
    assert len(tables) == 25 and len(set(tables)) == 25 and "<sup>4</sup>" in tables[2 * 5 + 2]
    assert _driven(pooling, site) >= {(id(w), "value") for w in pooling.children[0].children}
    conv5 = [s for s in _walk(twins["top 9"][0]) if getattr(s, "description", "") == "channel"][1]
    assert conv5.label == "7", "the chosen channel is among the twin's and selected"
