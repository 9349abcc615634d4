"""The images the course looks at: a reader's own pictures (:mod:`.files`), the
synthetic world's procedural images (:mod:`.synthetic`), Imagenette held in memory
at a small size (:mod:`.imagenette`) and Caltech-101 for transfer (:mod:`.caltech`).

``zfcourse.data.load_images`` and ``zfcourse.data.ImageFolderDataset`` are the
entry points for your own pictures (see :mod:`zfcourse.data.files`).
"""
from .files import (
                    IMAGE_SUFFIXES,
                    ImageFolderDataset,
                    ImageReadError,
                    image_files,
                    labels,
                    load_images,
                    read_image,
)

__all__ = ["IMAGE_SUFFIXES", "ImageFolderDataset", "ImageReadError", "image_files", "labels", "load_images",
           "read_image"]
