"""The book's Sphinx extension (``_config.yml``: ``sphinx.extra_extensions``): what
``jupyter-book build .`` does beyond executing the chapters.

* It marks the build as one for the static website, before any chapter runs
  (``ZFCOURSE_SITE=1``, inherited by the kernels that execute the chapters), so that
  every explorer renders its kernel-free twin (:mod:`zfcourse.explorers`);
* after every HTML build it writes the atlas of the world's networks into the site
  (:mod:`.atlas_page`), also when the execution cache skipped every chapter.
"""
from __future__ import annotations

import os

from ..infra.progress import SITE
from . import atlas_page

__all__ = ["setup"]


def setup(app):
    os.environ[SITE] = "1"
    atlas_page.register(app)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
