"""Reading CT images: any file SimpleITK reads, or a DICOM folder (largest series).

Files: the header is read and checked first (``ReadImageInformation``), so that a corrupt or
absurd header fails fast with one line and no allocation. DICOM: the slice geometry is checked
from each file's ImagePositionPatient/ImageOrientationPatient, because ITK stacks a gantry-tilted
or unevenly spaced series as if it were regular (and only warns on stderr). Such a series is
resampled onto a regular grid with a warning; one with large gaps is refused (docs/robustness.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from algorithm.errors import InputError
from algorithm.io.formats import has_image_suffix, strip_image_suffix
from algorithm.io.pixel_data import check_pixel_data, metaimage_fields
from algorithm.io.quiet import quiet_native_stderr
from algorithm.io.validation import check_header

MAX_GAP_FACTOR = 3.0  # a gap up to 3x the usual slice spacing (two missing slices) is interpolated
SPACING_TOLERANCE = 0.05  # relative deviation of a slice gap treated as even
TILT_TOLERANCE_MM = 0.01  # in-plane shift of the last slice treated as no tilt
TAG_POSITION, TAG_ORIENTATION = "0020|0032", "0020|0037"
TAG_SERIES_NUMBER, TAG_SERIES_DESCRIPTION = "0020|0011", "0008|103e"


@dataclass
class LoadedImage:
    image: sitk.Image
    source: Path
    description: str  # what was read, e.g. "DICOM series 1.2.3 (64 of 80 files)"
    warnings: list[str] = field(default_factory=list)


def case_name(path: Path) -> str:
    """File name without its image suffix (``a/b/scan.nii.gz`` -> ``scan``)."""
    return strip_image_suffix(path)


def is_image_file(path: Path) -> bool:
    return path.is_file() and has_image_suffix(path)


def read_image(path: str | Path) -> LoadedImage:
    """Read a CT file or DICOM folder; raises InputError with a one-line reason."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"input not found: {path}")
    if path.is_dir():
        return _read_dicom_folder(path)
    if path.name.lower().endswith((".mha", ".mhd")):
        _precheck_metaimage_header(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        with quiet_native_stderr():  # the readers print their own notes besides raising
            reader.ReadImageInformation()
    except RuntimeError as exc:
        raise InputError(f"cannot read {path}: {_first_line(exc)}") from exc
    _check_reader_header(reader, path)
    check_pixel_data(path)  # ITK fills a truncated NIfTI with zeros, silently
    try:
        with quiet_native_stderr():
            image = reader.Execute()
    except (RuntimeError, MemoryError) as exc:
        raise InputError(f"cannot read {path}: {_first_line(exc)}") from exc
    return LoadedImage(image=image, source=path, description=f"file {path.name}")


def _precheck_metaimage_header(path: Path) -> None:
    """The MetaImage fields MetaIO trusts blindly (``NDims = -1`` crashes it with a segfault)."""
    problem = _metaimage_problem(metaimage_fields(path)[0])
    if problem:
        raise InputError(f"cannot read {path}: malformed MetaImage header ({problem})")


def _metaimage_problem(fields: dict[str, str]) -> str | None:
    try:
        dims = int(fields.get("NDims", ""))
    except ValueError:
        return f"NDims = {fields.get('NDims', 'missing')!r}"
    if not 1 <= dims <= 8:
        return f"NDims = {dims}"
    for key in ("DimSize", "ElementSpacing", "ElementSize", "Offset", "Origin", "Position"):
        if key not in fields:
            continue
        values = fields[key].split()
        if len(values) < dims:
            return f"{key} has {len(values)} values for {dims} dimensions"
        try:
            numbers = [float(v) for v in values[:dims]]
        except ValueError:
            return f"{key} = {fields[key]!r}"
        if key == "DimSize" and any(n < 0 or n != int(n) for n in numbers):
            return f"DimSize = {fields[key]!r}"
    if "DimSize" not in fields:
        return "no DimSize"
    return None


def _check_reader_header(reader: sitk.ImageFileReader, path: Path) -> None:
    """Header sanity before any pixel data is read (a 100000^3 header must not allocate)."""
    try:
        check_header(
            reader.GetDimension(), reader.GetNumberOfComponents(), reader.GetSize(),
            reader.GetSpacing(), reader.GetDirection(),
        )
    except InputError as exc:
        raise InputError(f"{path.name}: {exc}") from exc


def _read_dicom_folder(folder: Path) -> LoadedImage:
    try:
        with quiet_native_stderr():  # GDCM notes on non-DICOM files in the folder
            series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)) or []
    except RuntimeError:
        series_ids = []
    files_per_series = {
        sid: sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), sid) for sid in series_ids
    }
    broken = _unreadable_dicom_files(folder, {f for files in files_per_series.values() for f in files})
    if not series_ids:
        raise InputError(f"no DICOM series found in folder {folder}" + (f" ({broken})" if broken else ""))
    # The largest series is the CT volume; localizers and dose reports hold one or few files.
    chosen = max(series_ids, key=lambda sid: (len(files_per_series[sid]), sid))
    files = list(files_per_series[chosen])
    label = _series_label(chosen, files[0])
    warnings = [broken + ": left out"] if broken else []
    if len(series_ids) > 1:
        others = ", ".join(
            f"{_series_label(sid, files_per_series[sid][0])} ({len(files_per_series[sid])} files)"
            for sid in sorted(series_ids) if sid != chosen
        )
        warnings.append(
            f"{len(series_ids)} DICOM series in {folder}; took the largest, series {label} "
            f"({len(files)} files); ignored {others}"
        )
    geometry = _slice_geometry(files)
    if geometry is not None:
        files = [files[i] for i in geometry.order]
    image = _read_series(files, chosen, folder)
    if geometry is not None:
        image, geometry_warnings = _regularize(image, geometry)
        warnings += geometry_warnings
    return LoadedImage(
        image=image,
        source=folder,
        description=f"DICOM series {label} ({len(files)} files)",
        warnings=warnings,
    )


def _unreadable_dicom_files(folder: Path, listed: set[str]) -> str:
    """Files with the DICOM preamble that GDCM left out of every series (truncated or corrupt),
    named in words; "" where there are none. GDCM skips them silently."""
    broken = []
    for path in sorted(folder.iterdir()):
        if str(path) in listed or not path.is_file():
            continue
        try:
            with open(path, "rb") as handle:
                if handle.read(132)[128:] == b"DICM":
                    broken.append(path.name)
        except OSError:
            broken.append(path.name)
    if not broken:
        return ""
    shown = ", ".join(broken[:3]) + (f" and {len(broken) - 3} more" if len(broken) > 3 else "")
    return f"{len(broken)} DICOM file(s) in the folder could not be read (truncated or corrupt?): {shown}"


def _read_series(files: list[str], series_id: str, folder: Path) -> sitk.Image:
    # One file: a multi-frame (enhanced) CT, which the series reader would stack into 4D (x, y, z, 1)
    reader = sitk.ImageFileReader() if len(files) == 1 else sitk.ImageSeriesReader()
    if len(files) == 1:
        reader.SetFileName(files[0])
    else:
        reader.SetFileNames(files)
    try:
        with quiet_native_stderr():  # ITK's "non uniform sampling" warning: checked by _regularize
            return reader.Execute()
    except (RuntimeError, MemoryError) as exc:
        raise InputError(f"cannot read DICOM series {series_id} in {folder}: {_first_line(exc)}") from exc


def _series_label(series_id: str, first_file: str) -> str:
    """'3 "CHEST 1.25" (UID)' from the tags of one file; the UID alone where they lack."""
    tags = _file_tags(first_file, (TAG_SERIES_NUMBER, TAG_SERIES_DESCRIPTION))
    number = tags.get(TAG_SERIES_NUMBER, "").strip()
    text = tags.get(TAG_SERIES_DESCRIPTION, "").strip()
    parts = [number, f'"{text}"' if text else "", f"({series_id})" if number or text else series_id]
    return " ".join(p for p in parts if p)


def _file_tags(path: str, keys: tuple[str, ...]) -> dict[str, str]:
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return {}
    return {k: reader.GetMetaData(k) for k in keys if reader.HasMetaDataKey(k)}


@dataclass
class SliceGeometry:
    """Where each slice of a DICOM series lies, sorted along the slice normal."""

    order: list[int]  # file order sorted by position along the normal
    row: np.ndarray  # ImageOrientationPatient: direction of increasing column index (x)
    column: np.ndarray  # direction of increasing row index (y)
    normal: np.ndarray
    origin: np.ndarray  # ImagePositionPatient of the first sorted slice
    depth_mm: np.ndarray  # position of each sorted slice along the normal
    shift_mm: np.ndarray  # (K, 2) in-plane offset of each sorted slice from the first (row, column)


def _slice_geometry(files: list[str]) -> SliceGeometry | None:
    """Geometry from each file's tags; None where a tag is missing (ITK's stacking is kept)."""
    positions, orientations = [], []
    for path in files:
        tags = _file_tags(path, (TAG_POSITION, TAG_ORIENTATION))
        try:
            positions.append([float(v) for v in tags[TAG_POSITION].split("\\")])
            orientations.append([float(v) for v in tags[TAG_ORIENTATION].split("\\")])
        except (KeyError, ValueError):
            return None
    if len(files) < 2 or any(len(p) != 3 for p in positions) or any(len(o) != 6 for o in orientations):
        return None
    orientations = np.asarray(orientations)
    if np.abs(orientations - orientations[0]).max() > 1e-3:
        raise InputError("the DICOM slices have different orientations (ImageOrientationPatient): not one volume")
    row, column = orientations[0, :3], orientations[0, 3:]
    normal = np.cross(row, column)
    positions = np.asarray(positions)
    depth = positions @ normal
    order = [int(i) for i in np.argsort(depth, kind="stable")]
    positions, depth = positions[order], depth[order]
    offsets = positions - positions[0]
    shift = np.stack([offsets @ row, offsets @ column], axis=1)
    return SliceGeometry(order, row, column, normal, positions[0], depth, shift)


def _regularize(image: sitk.Image, geometry: SliceGeometry) -> tuple[sitk.Image, list[str]]:
    """Put a tilted or unevenly spaced stack onto a regular grid; unchanged where it is regular."""
    gaps = np.diff(geometry.depth_mm)
    if np.any(gaps < 1e-3):
        duplicates = int(np.sum(gaps < 1e-3))
        raise InputError(
            f"{duplicates} DICOM slices share a position with another: several acquisitions in one series?"
        )
    step = float(np.median(gaps))
    if gaps.max() > MAX_GAP_FACTOR * step:
        k = int(np.argmax(gaps))
        raise InputError(
            f"slices are missing: a gap of {gaps[k]:.1f} mm between slices {k + 1} and {k + 2} "
            f"(usual spacing {step:.2f} mm; at most {MAX_GAP_FACTOR:g}x is interpolated)"
        )
    uneven = bool(np.abs(gaps - step).max() > SPACING_TOLERANCE * step)
    tilted = bool(np.abs(geometry.shift_mm[-1]).max() > TILT_TOLERANCE_MM)
    if not uneven and not tilted:
        return image, []
    warnings = []
    if tilted:
        length = geometry.depth_mm[-1] - geometry.depth_mm[0]
        angle = np.degrees(np.arctan2(np.linalg.norm(geometry.shift_mm[-1]), length))
        warnings.append(f"gantry tilt of {angle:.1f} degrees: slices resampled onto an orthogonal grid")
    if uneven:
        warnings.append(
            f"uneven slice spacing ({gaps.min():.2f} to {gaps.max():.2f} mm, missing slices?): "
            f"resampled to {step:.2f} mm by linear interpolation"
        )
    return _resample_stack(image, geometry, step), warnings


def _resample_stack(image: sitk.Image, geometry: SliceGeometry, step: float) -> sitk.Image:
    """Linear interpolation along the normal, then each slice shifted back under the first."""
    stack = sitk.GetArrayViewFromImage(image)  # (K, Y, X) in sorted file order
    spacing_x, spacing_y = image.GetSpacing()[:2]
    depth = geometry.depth_mm - geometry.depth_mm[0]
    count = int(round(depth[-1] / step)) + 1
    targets = np.arange(count) * step
    background = float(stack.min())
    out = np.empty((count,) + stack.shape[1:], np.float32)
    for k, target in enumerate(targets):
        upper = int(np.clip(np.searchsorted(depth, target), 1, len(depth) - 1))
        weight = float(np.clip((target - depth[upper - 1]) / (depth[upper] - depth[upper - 1]), 0.0, 1.0))
        plane = (1 - weight) * stack[upper - 1].astype(np.float32) + weight * stack[upper].astype(np.float32)
        shift_row, shift_col = (1 - weight) * geometry.shift_mm[upper - 1] + weight * geometry.shift_mm[upper]
        # voxel (i, j) of a slice lies at its own position + i*row + j*column: move it under the first
        out[k] = ndimage.shift(
            plane, (shift_col / spacing_y, shift_row / spacing_x), order=1, mode="constant", cval=background
        )
    if np.issubdtype(stack.dtype, np.integer):
        info = np.iinfo(stack.dtype)
        out = np.clip(np.rint(out), info.min, info.max).astype(stack.dtype)
    result = sitk.GetImageFromArray(out)
    result.SetSpacing((spacing_x, spacing_y, step))
    result.SetOrigin(tuple(float(v) for v in geometry.origin))
    direction = np.stack([geometry.row, geometry.column, geometry.normal], axis=1)
    result.SetDirection(tuple(float(v) for v in direction.ravel()))
    return result


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    # ITK messages start with file/line noise; the last line usually says what went wrong.
    return lines[-1] if lines else type(exc).__name__
