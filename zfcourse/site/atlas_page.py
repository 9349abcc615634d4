"""The atlas (:mod:`zfcourse.atlas`) in the built site, registered by :mod:`zfcourse.site`
(listed in ``_config.yml``, ``sphinx: extra_extensions``), so that ``jupyter-book build .``
makes the atlas of the world the book is built in (:func:`zfcourse.world`) with no other
step. After every HTML build, also one in which Jupyter Book's execution cache skipped
every chapter, it writes for each network of :func:`zfcourse.minis.atlas_networks`::

    <site>/atlas/index.json                  {"world": ..., "networks": [{"name", "title",
                                               "manifest": "<name>/manifest.json", ...}]}
    <site>/atlas/<name>/manifest.json        the documented manifest, and its images

The atlas itself comes from zfcourse's cache once built (:func:`zfcourse.atlas.cached_build`),
so a rebuild costs only the copy. It also serves the page's script and style
(``_static/atlas.js``, ``_static/atlas.css``), which ``book/atlas.md`` loads.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from sphinx.util import logging

STATIC = Path(__file__).with_name("static")
log = logging.getLogger(__name__)


def _add_static(app, config) -> None:
    config.html_static_path = list(config.html_static_path) + [str(STATIC)]


def _build_atlas(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    import zfcourse
    from zfcourse import atlas, minis

    world = zfcourse.world()
    root = Path(app.outdir) / "atlas"
    entries = []
    workers = min(4, os.cpu_count() or 1) if world.name == "imagenet" else 0
    for net in minis.atlas_networks(world):
        log.info(f"atlas: {net.title} over {len(net.images):,} images ({world.name} world)")
        built = atlas.cached_build(net, workers=workers)
        atlas.write(built, root / net.name)
        m = built["manifest"]
        entries.append({"name": net.name, "title": net.title, "manifest": f"{net.name}/manifest.json",
                        "num_images": m["num_images"], "dataset": m["dataset"],
                        "layers": {layer: info["channels"] for layer, info in m["layers"].items()}})
    tmp = root / ".index.json.tmp"
    tmp.write_text(json.dumps({"world": world.name, "networks": entries}, indent=1))
    os.replace(tmp, root / "index.json")


def register(app) -> None:
    app.connect("config-inited", _add_static)
    app.connect("build-finished", _build_atlas)
