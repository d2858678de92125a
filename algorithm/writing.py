"""Atomic writing of outputs: a temporary name in the target folder, then a rename, so that an
interrupted run never leaves a partial file under the final name."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import SimpleITK as sitk

from algorithm.errors import OutputError
from algorithm.labels import label_map_header


def _temp_path(final: Path, suffix: str) -> Path:
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=suffix)
    os.close(fd)
    return Path(tmp)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _replace(tmp: Path, final: Path) -> None:
    try:
        # mkstemp creates 0600; give the result the permissions a plain open() would
        os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, final)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {final}: {exc.strerror or exc}") from exc


def ensure_output_dir(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output folder {folder}: {exc.strerror or exc}") from exc
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {folder} is not writable")


def write_mask(mask: sitk.Image, final: Path) -> None:
    """uint8 mask, compressed, with the label map in the header."""
    mask = sitk.Cast(mask, sitk.sitkUInt8)
    mask.SetMetaData("LabelMap", label_map_header())
    suffix = "".join(final.suffixes[-2:]) if final.name.endswith(".nii.gz") else final.suffix
    try:
        tmp = _temp_path(final, suffix)
    except OSError as exc:
        raise OutputError(f"cannot write in {final.parent}: {exc.strerror or exc}") from exc
    try:
        sitk.WriteImage(mask, str(tmp), useCompression=True)
    except RuntimeError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {final}: {str(exc).strip().splitlines()[-1]}") from exc
    _replace(tmp, final)


def to_json_safe(value):
    """NaN and infinities become null (grand-challenge's JSON rule)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): to_json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_safe(v) for v in value]
    return value


def write_json(data, final: Path) -> None:
    try:
        tmp = _temp_path(final, ".json")
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(to_json_safe(data), handle, indent=2, allow_nan=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        if "tmp" in locals():
            Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write {final}: {exc.strerror or exc}") from exc
    _replace(tmp, final)
