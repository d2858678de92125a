"""The image file formats the project reads, named once (command line, training data, container)."""

from __future__ import annotations

from pathlib import Path

# CT volumes SimpleITK reads; DICOM comes as a folder (algorithm.io.reading)
IMAGE_SUFFIXES = (".mha", ".mhd", ".nii", ".nii.gz", ".nrrd", ".nhdr")


def has_image_suffix(path: Path, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> bool:
    """The file name ends with one of ``suffixes`` (case-insensitive)."""
    return path.name.lower().endswith(suffixes)


def strip_image_suffix(path: Path, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> str:
    """File name without its image suffix (``a/b/scan.nii.gz`` -> ``scan``); the longest suffix wins."""
    name = path.name
    for suffix in sorted(suffixes, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name
