"""zfcourse: the helper package of the course on Zeiler & Fergus (2014).

``zfcourse.world()`` gives a chapter its model and validation set; the modules
hold the paper's methods (see the README for the list).
"""
from . import (
           correspondence,
           data,
           deconv,
           filters,
           invariance,
           models,
           occlusion,
           receptive,
           topk,
           transfer,
)
from .infra.device import default_device
from .worlds import World, world

__all__ = ["World", "world", "models", "data", "deconv", "receptive", "topk", "transfer",
           "occlusion", "correspondence", "invariance", "filters", "default_device"]
__version__ = "0.1.0"
