"""Reading CT images: any file SimpleITK reads, or a DICOM folder (largest series)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import SimpleITK as sitk

from algorithm.errors import InputError

IMAGE_SUFFIXES = (".mha", ".mhd", ".nii", ".nii.gz", ".nrrd", ".nhdr")


@dataclass
class LoadedImage:
    image: sitk.Image
    source: Path
    description: str  # what was read, e.g. "DICOM series 1.2.3 (64 of 80 files)"
    warnings: list[str] = field(default_factory=list)


def case_name(path: Path) -> str:
    """File name without its image suffix (``a/b/scan.nii.gz`` -> ``scan``)."""
    name = path.name
    for suffix in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(IMAGE_SUFFIXES)


def read_image(path: str | Path) -> LoadedImage:
    """Read a CT file or DICOM folder; raises InputError with a one-line reason."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"input not found: {path}")
    if path.is_dir():
        return _read_dicom_folder(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputError(f"cannot read {path}: {_first_line(exc)}") from exc
    return LoadedImage(image=image, source=path, description=f"file {path.name}")


def _read_dicom_folder(folder: Path) -> LoadedImage:
    try:
        series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)) or []
    except RuntimeError:
        series_ids = []
    if not series_ids:
        raise InputError(f"no DICOM series found in folder {folder}")
    files_per_series = {
        sid: sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), sid) for sid in series_ids
    }
    # The largest series is the CT volume; localizers and dose reports hold one or few files.
    chosen = max(series_ids, key=lambda sid: len(files_per_series[sid]))
    files = files_per_series[chosen]
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    reader.MetaDataDictionaryArrayUpdateOn()
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise InputError(f"cannot read DICOM series {chosen} in {folder}: {_first_line(exc)}") from exc
    warnings = []
    if len(series_ids) > 1:
        warnings.append(
            f"{len(series_ids)} DICOM series in {folder}; took the largest, {chosen} ({len(files)} files)"
        )
    return LoadedImage(
        image=image,
        source=folder,
        description=f"DICOM series {chosen} ({len(files)} files)",
        warnings=warnings,
    )


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    # ITK messages start with file/line noise; the last line usually says what went wrong.
    return lines[-1] if lines else type(exc).__name__
