"""Atomic writing of outputs: a temporary name in the target folder, then a rename, so that an
interrupted run never leaves a partial file under the final name.

A run killed while writing leaves at most a hidden temporary ``.NAME.XXXXXXXX.SUFFIX`` (mkstemp's
eight random characters); ``remove_stale_temp_files`` deletes those of an output folder at the
start of the next run, under an exclusive lock on the folder (``locked_output_dir``), so that a
concurrent run's live temporary files are never taken for stale ones.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import SimpleITK as sitk

from algorithm.errors import OutputError
from algorithm.labels import label_map_header
from algorithm.io.atomic import commit, temp_path
from algorithm.io.quiet import quiet_native_stderr


@contextmanager
def output_file(final: Path, suffix: str, library_errors: tuple[type[Exception], ...] = ()) -> Iterator[Path]:
    """``algorithm.io.atomic.atomic_path`` with the user-facing ``OutputError`` messages.

    Yields the temporary path to write; ``library_errors`` are what the writer's library raises
    besides ``OSError`` (ITK's RuntimeError, an image writer's ValueError...).
    """
    try:
        tmp = temp_path(final, suffix)
    except OSError as exc:
        raise OutputError(f"cannot write in {final.parent}: {exc.strerror or exc}") from exc
    try:
        yield tmp
        commit(tmp, final)
    except (OSError, *library_errors) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).strip().splitlines()[-1]
        raise OutputError(f"cannot write {final}: {reason}") from exc
    finally:
        tmp.unlink(missing_ok=True)


_TEMP_NAME = re.compile(r"^\.(?P<final>.+)\.[A-Za-z0-9_]{8}(?P<suffix>\.[A-Za-z0-9.]+)$")


def is_temp_name(name: str) -> bool:
    """``.NAME.XXXXXXXX.SUFFIX`` where NAME ends with SUFFIX: only what ``atomic.temp_path`` makes."""
    match = _TEMP_NAME.match(name)
    return bool(match) and match["final"].endswith(match["suffix"])


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Delete the temporary files an interrupted run left in ``folder`` (not recursive)."""
    removed = []
    for path in folder.iterdir():
        if is_temp_name(path.name) and path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


@contextmanager
def locked_output_dir(folder: Path) -> Iterator[None]:
    """An exclusive lock on the folder itself (no lock file): one run writes into it at a time."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise OutputError(f"another run is writing to {folder}: wait for it to finish") from exc
        yield
    finally:
        os.close(fd)  # releases the lock


def output_path(folder: Path, file_name: str) -> Path:
    """``folder / file_name``, refused unless it is a plain name directly inside ``folder``."""
    candidate = folder / file_name
    if (
        not file_name or file_name in {".", ".."} or "/" in file_name or "\0" in file_name
        or candidate.parent != folder
    ):
        raise OutputError(f"refusing output name {file_name!r}: it would leave {folder}")
    return candidate


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
    with output_file(final, suffix, library_errors=(RuntimeError,)) as tmp:
        with quiet_native_stderr():  # MetaIO prints its own note on a failed write
            sitk.WriteImage(mask, str(tmp), useCompression=True)


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
    with output_file(final, ".json") as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(to_json_safe(data), handle, indent=2, allow_nan=False)
            handle.write("\n")


def write_png(rgb, final: Path) -> None:
    """An (H, W, 3) uint8 picture as PNG, atomically (scikit-image's writer, a runtime package)."""
    from skimage import io  # imported here: only the preview needs the image writer

    with output_file(final, ".png", library_errors=(ValueError, RuntimeError)) as tmp:
        io.imsave(str(tmp), rgb, check_contrast=False)
