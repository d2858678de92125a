"""The one loader of the real CT scans that the realism study compares phantoms with.

The scans live beside the repository (``../shared/data/real``) and are never copied into it.
``REAL_DIR`` is defined here once, relative to this file, so that it does not depend on the
working directory; ``benchmarks.real_scans`` uses the same folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import SimpleITK as sitk

REPO_ROOT = Path(__file__).resolve().parents[2]
REAL_DIR = REPO_ROOT.parent / "shared" / "data" / "real"


@dataclass(frozen=True)
class Scan:
    """One real scan: its name (the file or folder name without suffix) and its image, LPS."""

    name: str
    image: sitk.Image


def load_real_scans(folder: Path = REAL_DIR) -> list[Scan]:
    """Every scan in the folder (files and DICOM series), dropping exact duplicates."""
    if not folder.is_dir():
        return []
    scans, seen = [], set()
    for path in sorted(folder.iterdir()):
        if path.is_dir():
            reader = sitk.ImageSeriesReader()
            files = reader.GetGDCMSeriesFileNames(str(path))
            if not files:
                continue
            reader.SetFileNames(files)
            image = reader.Execute()
        elif path.suffix in {".mha", ".mhd", ".nrrd", ".gz", ".nii"}:
            image = sitk.ReadImage(str(path))
        else:
            continue
        key = (image.GetSize(), tuple(round(s, 3) for s in image.GetSpacing()))
        if key in seen:  # the same scan as DICOM and as a single file
            continue
        seen.add(key)
        name = path.name
        for suffix in (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".gz"):
            name = name.removesuffix(suffix)
        # Identity directions (x to the patient's left, y posterior, z superior): the dome measures
        # tell right from left and up from down by voxel index.
        scans.append(Scan(name, sitk.DICOMOrient(sitk.Cast(image, sitk.sitkInt16), "LPS")))
    return scans
