"""The networks of the course and the paper's names for their layers.

Every model here is a sequence of standard modules (Conv2d, ReLU, MaxPool2d,
LocalResponseNorm, Dropout, AdaptiveAvgPool2d, Flatten, Linear), so the reverse
passes of later chapters can walk it layer by layer. Layer names follow Zeiler &
Fergus (2014): ``conv1``..``conv5`` are the *rectified* convolution outputs,
``pool1``, ``pool2``, ``pool5`` the max-pooling outputs, ``norm1``, ``norm2`` the
contrast-normalised maps where a model has them, ``fc6``, ``fc7`` the rectified
dense layers and ``fc8`` the logits.

Every network pools adaptively before its dense layers, so it takes any image size at
which its layers can compute: :func:`check_images` follows the modules' own size
formulas and refuses only images too small for the layer asked for, naming the
smallest (63 x 63 for torchvision's AlexNet, 47 x 47 for ZFNet).
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .infra.checks import count, layer_list
from .infra.device import placed

__all__ = [
    "alexnet", "zfnet", "mini_alexnet", "mini_zfnet",
    "sequence", "layer_names", "layer_index", "get_layer", "activations", "check_images",
    "conv_of", "map_size", "summary", "strongest_channels", "strongest_unit",
]


def alexnet(pretrained: bool = False, num_classes: int = 1000, progress: bool = True) -> nn.Module:
    """torchvision's AlexNet (the single-tower "one weird trick" variant).

    ``pretrained=True`` loads ``AlexNet_Weights.IMAGENET1K_V1`` through
    torchvision's weights API, which downloads once to ``$TORCH_HOME/hub/checkpoints``
    and verifies the file. The weights' metadata (categories, transforms) stays
    reachable as ``model.weights``.
    """
    from torchvision.models import AlexNet_Weights
    from torchvision.models import alexnet as tv_alexnet

    weights = AlexNet_Weights.IMAGENET1K_V1 if pretrained else None
    if weights is not None and num_classes != len(weights.meta["categories"]):
        raise ValueError(f"pretrained AlexNet has {len(weights.meta['categories'])} classes, got num_classes={num_classes}")
    model = tv_alexnet(weights=weights, progress=progress, num_classes=num_classes)
    model.weights = weights
    model.input_size = 224
    return model


def _convnet(conv1: nn.Conv2d, conv2: nn.Conv2d, middle, hidden, num_classes: int,
             pool: dict, norm: bool, pooled: int, dropout: float, input_size: int) -> nn.Sequential:
    """Two conv layers (filter, rectify, max pool, contrast normalise), the 3x3 conv
    layers of ``middle`` (their widths), a max pool, and a dense layer for each width of
    ``hidden`` before the classifier: the order of the paper's Fig. 3, which has three
    middle layers and two hidden ones; Table 3 removes or widens them."""
    def lrn():
        return [nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)] if norm else []

    def conv3x3(c_in, c_out):
        return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True)]

    widths = (conv2.out_channels, *middle)
    features = nn.Sequential(
        conv1, nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, **pool), *lrn(),
        conv2, nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, **pool), *lrn(),
        *[m for c_in, c_out in zip(widths, widths[1:]) for m in conv3x3(c_in, c_out)],
        nn.MaxPool2d(3, 2, **pool),
    )
    sizes = (widths[-1] * pooled * pooled, *hidden)
    classifier = nn.Sequential(
        *[m for n_in, n_out in zip(sizes, sizes[1:])
          for m in (nn.Dropout(dropout), nn.Linear(n_in, n_out), nn.ReLU(inplace=True))],
        nn.Linear(sizes[-1], num_classes),
    )
    model = nn.Sequential(OrderedDict(
        features=features,
        avgpool=nn.AdaptiveAvgPool2d(pooled),
        flatten=nn.Flatten(),
        classifier=classifier,
    ))
    # The paper's initialisation (Sec. 3): weights normal with mean 0 and standard
    # deviation 1e-2 (the paper writes 10^-2), biases 0. Small
    # initial filters let training, not the random start, shape what layer 1 shows.
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 1e-2)
            nn.init.zeros_(m.bias)
    model.input_size = input_size
    return model


def zfnet(num_classes: int = 1000) -> nn.Sequential:
    """The network of Zeiler & Fergus (2014), Fig. 3, with dense layers 3-5.

    7x7 filters at stride 2 in layer 1 (AlexNet: 11x11 at stride 4), 5x5 at
    stride 2 in layer 2, max pooling over 3x3 windows at stride 2, local contrast
    normalisation after pooling in layers 1 and 2. At 224x224 input the maps are
    110 -> 55 -> 26 -> 13 -> 13 -> 13 -> 6. Conv1 is padded by 1 (224 + 2 - 7 is odd,
    so the last row and column of padding are never reached). Pooling uses
    ``ceil_mode=True`` and no padding, as Caffe does: 110 -> 55 and 26 -> 13 without
    shifting the first window off the image. With 1000 classes the model has
    62,357,608 parameters.
    """
    return _convnet(
        nn.Conv2d(3, 96, 7, stride=2, padding=1), nn.Conv2d(96, 256, 5, stride=2),
        middle=(384, 384, 256), hidden=(4096, 4096), num_classes=num_classes,
        pool=dict(ceil_mode=True), norm=True, pooled=6, dropout=0.5, input_size=224,
    )


MINI_WIDTHS = (48, 96, 128, 128, 96)
MINI_HIDDEN = (256, 256)


def mini_alexnet(num_classes: int) -> nn.Sequential:
    """An AlexNet-style network for 64x64 images: 11x11 filters at stride 4 in layer 1.

    Maps at 64 px: conv1 16, pool1 8, conv2 8 (5x5, stride 1, as AlexNet),
    pool2 4, conv3-5 4, pool5 2. Widths are a fraction of AlexNet's; the contrast
    with :func:`mini_zfnet` is the one of the paper: only layers 1 and 2 differ.
    Like torchvision's AlexNet the minis have no contrast normalisation: on a CPU
    it costs more time than all the convolutions together and does not help here.
    """
    return _convnet(
        nn.Conv2d(3, MINI_WIDTHS[0], 11, stride=4, padding=5), nn.Conv2d(MINI_WIDTHS[0], MINI_WIDTHS[1], 5, padding=2),
        middle=MINI_WIDTHS[2:], hidden=MINI_HIDDEN, num_classes=num_classes,
        pool=dict(padding=1), norm=False, pooled=2, dropout=0.5, input_size=64,
    )


def mini_zfnet(num_classes: int, middle=MINI_WIDTHS[2:], hidden=MINI_HIDDEN) -> nn.Sequential:
    """A ZF-style network for 64x64 images: 7x7 filters at stride 2 in layer 1.

    Maps at 64 px: conv1 32, pool1 16, conv2 8 (5x5 at stride 2, as ZFNet),
    pool2 4, conv3-5 4, pool5 2: the same sizes as :func:`mini_alexnet` from
    pool2 on, with a layer 1 that samples the image four times more densely.

    ``middle`` (the widths of the 3x3 conv layers above layer 2, at least one) and
    ``hidden`` (the widths of the dense layers below the classifier, possibly none)
    make the variants of the paper's Table 3: ``middle=(96,)`` removes layers 3 and 4,
    ``hidden=()`` layers 6 and 7. The layers keep the paper's names by position, so
    in a network without layers 3 and 4 the last conv layer is ``conv3``.
    """
    middle, hidden = _widths(middle, "middle", 1), _widths(hidden, "hidden", 0)
    return _convnet(
        nn.Conv2d(3, MINI_WIDTHS[0], 7, stride=2, padding=3), nn.Conv2d(MINI_WIDTHS[0], MINI_WIDTHS[1], 5, stride=2, padding=2),
        middle=middle, hidden=hidden, num_classes=num_classes,
        pool=dict(padding=1), norm=False, pooled=2, dropout=0.5, input_size=64,
    )


def _widths(widths, name: str, minimum: int) -> tuple[int, ...]:
    if isinstance(widths, (str, bytes)) or not hasattr(widths, "__len__"):
        raise TypeError(f"{name} must be a tuple of layer widths (ints), got {widths!r}")
    if len(widths) < minimum:
        raise ValueError(f"{name} must hold at least {minimum} width(s), got {tuple(widths)!r}")
    return tuple(count(w, f"each width of {name}") for w in widths)


def sequence(model: nn.Module) -> list[nn.Module]:
    """The model's modules in the order its forward pass applies them.

    Works for nested ``nn.Sequential`` models and for torchvision's AlexNet/VGG
    layout (``features``, ``avgpool``, flatten, ``classifier``).
    """
    if isinstance(model, nn.Sequential):
        return [m for child in model for m in sequence(child)]
    if all(hasattr(model, a) for a in ("features", "avgpool", "classifier")):
        return sequence(model.features) + [model.avgpool, nn.Flatten()] + sequence(model.classifier)
    return [model]


def _named_sequence(model: nn.Module) -> list[tuple[str | None, nn.Module]]:
    """Pairs (paper name or None, module) in forward order."""
    mods = sequence(model)
    named: list[tuple[str | None, nn.Module]] = []
    n_conv = n_fc = 0
    for i, m in enumerate(mods):
        nxt = mods[i + 1] if i + 1 < len(mods) else None
        name = None
        if isinstance(m, nn.Conv2d):
            n_conv += 1
            name = None if isinstance(nxt, nn.ReLU) else f"conv{n_conv}"
        elif isinstance(m, nn.Linear):
            n_fc += 1
            name = None if isinstance(nxt, nn.ReLU) else f"fc{n_conv + n_fc}"
        elif isinstance(m, nn.ReLU):
            prev = mods[i - 1] if i else None
            if isinstance(prev, nn.Conv2d):
                name = f"conv{n_conv}"
            elif isinstance(prev, nn.Linear):
                name = f"fc{n_conv + n_fc}"
        elif isinstance(m, nn.MaxPool2d):
            name = f"pool{n_conv}"
        elif isinstance(m, nn.LocalResponseNorm):
            name = f"norm{n_conv}"
        named.append((name, m))
    return named


def layer_names(model: nn.Module) -> list[str]:
    """The paper's names of the model's layers, input to output.

    >>> layer_names(zfnet())
    ['conv1', 'pool1', 'norm1', 'conv2', 'pool2', 'norm2', 'conv3', 'conv4', 'conv5', 'pool5', 'fc6', 'fc7', 'fc8']
    """
    return [name for name, _ in _named_sequence(model) if name is not None]


def layer_index(model: nn.Module, name: str) -> int:
    """Position of the named layer in :func:`sequence`; a KeyError lists the valid names."""
    named = _named_sequence(model)
    for i, (n, _) in enumerate(named):
        if n == name:
            return i
    valid = [n for n, _ in named if n is not None]
    if not valid:
        raise KeyError(f"unknown layer {name!r}: this model has no layer the course can name. Names "
                       f"come from a sequence of standard modules (Conv2d, ReLU, MaxPool2d, "
                       f"LocalResponseNorm, Linear; see zfcourse.models.sequence), and this model is "
                       f"one {type(model).__name__} block; write it as an nn.Sequential")
    if not isinstance(name, str):
        raise TypeError(f"a layer is named by a string ({', '.join(valid)}), got {name!r}")
    raise KeyError(f"unknown layer {name!r}; this model has {', '.join(valid)}")


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """The module whose output is the named layer (for ``conv1``: its ReLU)."""
    return sequence(model)[layer_index(model, name)]


def _pair(v) -> tuple[int, int]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _through(modules: list[nn.Module], channels: int, h: int, w: int) -> str | None:
    """Why an image of ``h x w`` cannot pass ``modules`` (None: it can)."""
    return _walk(modules, channels, h, w)[0]


def _walk(modules: list[nn.Module], channels: int, h: int, w: int) -> tuple[str | None, int, int]:
    """``(why, h, w)``: why an ``h x w`` input cannot pass ``modules`` (None: it can) and the
    map size after them. Sizes follow the modules' own formulas (PyTorch's, including
    ``ceil_mode``); modules that keep the size, and any this cannot follow, count as
    keeping it."""
    for m in modules:
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            k, s, p = (_pair(v) for v in (m.kernel_size, m.stride or m.kernel_size, m.padding))
            d = _pair(getattr(m, "dilation", 1))
            if isinstance(m.padding, str):          # "same" keeps the size, "valid" pads nothing
                p = (0, 0) if m.padding == "valid" else (d[0] * (k[0] - 1) // 2, d[1] * (k[1] - 1) // 2)
                s = s if m.padding == "valid" else (1, 1)
            ceil = getattr(m, "ceil_mode", False)
            size = []
            for n, kk, ss, pp, dd in zip((h, w), k, s, p, d):
                span = n + 2 * pp - dd * (kk - 1) - 1
                out = (-(-span // ss) if ceil else span // ss) + 1
                if ceil and (out - 1) * ss >= n + pp:   # the last window may not start in the padding
                    out -= 1
                size.append(out)
            if min(size) < 1:
                return f"its {type(m).__name__} with a {k[0]}x{k[1]} window gets a {h}x{w} map", h, w
            h, w = size
            channels = m.out_channels if isinstance(m, nn.Conv2d) else channels
        elif isinstance(m, nn.AdaptiveAvgPool2d):
            h, w = (a if a is not None else b for a, b in zip(_pair(m.output_size), (h, w)))
        elif isinstance(m, nn.Linear):
            if m.in_features != channels * h * w:
                return f"its Linear takes {m.in_features} values, not {channels} x {h} x {w}", h, w
            channels, h, w = m.out_features, 1, 1       # flat from here on
    return None, h, w


def map_size(model: nn.Module, layer: str, image_size: int | tuple[int, int]) -> tuple[int, int]:
    """``(height, width)`` of ``layer``'s maps for images of ``image_size`` (``H`` or
    ``(H, W)``); ``(1, 1)`` for a dense layer. A ValueError when the images are too small."""
    H, W = (image_size, image_size) if isinstance(image_size, int) else image_size
    modules = sequence(model)[: layer_index(model, layer) + 1]
    first = next((m for m in modules if isinstance(m, nn.Conv2d)), None)
    why, h, w = _walk(modules, first.in_channels if first is not None else 3, H, W)
    if why is not None:
        raise ValueError(f"{H}x{W} images are too small for {layer} ({why})")
    return h, w


def _smallest(modules: list[nn.Module], channels: int, h: int, w: int) -> tuple[int, int] | None:
    """The smallest height (at width ``w``) and width (at height ``h``) that pass; None
    where none up to 4096 does."""
    def first(ok):
        return next((n for n in range(1, 4097) if ok(n)), None)
    tall = first(lambda n: _through(modules, channels, n, max(w, 4096)) is None)
    wide = first(lambda n: _through(modules, channels, max(h, 4096), n) is None)
    return None if tall is None or wide is None else (tall, wide)


def check_images(model: nn.Module, images, layer: str | None = None) -> None:
    """Raise a ValueError naming the problem if ``images`` cannot go into ``model`` as far
    as ``layer`` (None: the whole model): a batch ``[N, C, H, W]`` of finite floats, with
    the channels of the first convolution, at least as large as the layers need."""
    modules = sequence(model)
    first = next((m for m in modules if isinstance(m, nn.Conv2d)), None)
    channels = first.in_channels if first is not None else 3
    expected = f"[N, {channels}, H, W]"
    if not torch.is_tensor(images) or images.dim() != 4:
        shape = list(images.shape) if torch.is_tensor(images) else type(images).__name__
        raise ValueError(f"expected a batch of images shaped {expected}, got {shape}")
    if len(images) == 0:
        raise ValueError(f"images must hold at least one image, got shape {list(images.shape)}")
    if images.shape[1] != channels:
        raise ValueError(f"expected {channels} colour channels ({expected}), got {images.shape[1]} "
                         f"in shape {list(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"images must be floating point in model-input space (normalised), got "
                         f"{images.dtype}; e.g. world.normalize(images.float() / 255)")
    if not torch.isfinite(images).all():
        raise ValueError("images hold NaN or infinite pixels")
    upto = modules if layer is None else modules[: layer_index(model, layer) + 1]
    H, W = images.shape[-2:]
    why = _through(upto, channels, H, W)
    if why is not None:
        smallest = _smallest(upto, channels, H, W)
        need = f"the smallest it takes is {smallest[0]}x{smallest[1]}" if smallest else \
            "no size up to 4096 fits"
        raise ValueError(f"{H}x{W} images are too small for {layer or 'this model'} ({why}); {need}")


@torch.no_grad()
def activations(model: nn.Module, images: torch.Tensor, layers: str | list[str]) -> dict[str, torch.Tensor]:
    """The named layers' outputs for a batch, running the network only as deep as needed.

    The model runs in eval mode (dropout off, batch-norm statistics frozen; its mode is
    put back after), and a recorded output is copied when a later module works in place,
    so each layer's value is the same whichever other layers are asked for."""
    layers = layer_list(layers, layer_names(model))
    wanted = {layer_index(model, name): name for name in layers}
    check_images(model, images, wanted[max(wanted)])
    modules = sequence(model)[: max(wanted) + 1]
    out: dict[str, torch.Tensor] = {}
    x = images
    with placed(model):
        for i, m in enumerate(modules):
            x = m(x)
            if i in wanted:
                in_place = any(getattr(later, "inplace", False) for later in modules[i + 1:])
                out[wanted[i]] = x.clone() if in_place else x
    return out


def conv_of(model: nn.Module, layer: str) -> nn.Conv2d:
    """The Conv2d that feeds a ``conv`` layer: its ``.weight`` holds that layer's filters."""
    mods = sequence(model)
    i = layer_index(model, layer)
    conv = next((m for m in reversed(mods[: i + 1]) if isinstance(m, nn.Conv2d)), None)
    if not layer.startswith("conv") or conv is None:
        convs = [n for n in layer_names(model) if n.startswith("conv")]
        raise ValueError(f"{layer!r} is not a convolutional layer; valid: {', '.join(convs)}")
    return conv


def strongest_channels(maps: torch.Tensor, k: int | None = None) -> torch.Tensor:
    """The channels of one image's maps ``[C, H, W]`` ordered by their largest activation,
    strongest first (the first ``k`` of them if given): a LongTensor."""
    if maps.dim() != 3:
        raise ValueError(f"expected one image's maps [C, H, W], got shape {list(maps.shape)}")
    order = maps.flatten(1).max(1).values.argsort(descending=True, stable=True)
    return order if k is None else order[:k]


def strongest_unit(maps: torch.Tensor) -> tuple[int, tuple[int, int]]:
    """``(channel, (row, column))`` of the largest activation in one image's maps
    ``[C, H, W]``; ties go to the first channel, then the first position in reading order."""
    if maps.dim() != 3:
        raise ValueError(f"expected one image's maps [C, H, W], got shape {list(maps.shape)}")
    channel = int(maps.flatten(1).max(1).values.argmax())
    row, col = divmod(int(maps[channel].flatten().argmax()), maps.shape[2])
    return channel, (row, col)


def _describe(m: nn.Module) -> str:
    if isinstance(m, nn.Conv2d):
        return f"conv {m.kernel_size[0]}x{m.kernel_size[1]}/{m.stride[0]}, pad {m.padding[0]}"
    if isinstance(m, nn.MaxPool2d):
        return f"max pool {m.kernel_size}/{m.stride}" + (", ceil" if m.ceil_mode else f", pad {m.padding}")
    if isinstance(m, nn.LocalResponseNorm):
        return f"contrast norm, size {m.size}"
    if isinstance(m, nn.Linear):
        return f"dense {m.in_features} -> {m.out_features}"
    return type(m).__name__


def summary(model: nn.Module, size: int | None = None) -> list[dict]:
    """One row per named layer: the operation that makes it, output shape, parameters.

    Shapes come from a forward pass of one ``size`` x ``size`` image (default: the
    model's ``input_size``), so the table describes the model as built, not as
    documented. Parameters are those of the modules since the previous named layer.
    """
    size = getattr(model, "input_size", 224) if size is None else count(size, "size")
    first = next(m for m in sequence(model) if isinstance(m, nn.Conv2d))
    device = first.weight.device
    with placed(model):
        out = activations(model, torch.zeros(1, first.in_channels, size, size, device=device), layer_names(model))
    rows, ops, params = [], [], 0
    for name, m in _named_sequence(model):
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.LocalResponseNorm, nn.Linear)):
            ops.append(_describe(m))
        params += sum(p.numel() for p in m.parameters(recurse=False))
        if name is not None:
            rows.append({"layer": name, "operation": ", ".join(ops) + (" + ReLU" if isinstance(m, nn.ReLU) else ""),
                         "output": tuple(out[name].shape[1:]), "parameters": params})
            ops, params = [], 0
    return rows
