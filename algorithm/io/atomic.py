"""The one atomic write: a temporary name in the target folder, fsync, then a rename.

An interrupted write (exception, SIGKILL, full disk) never leaves a partial file under the final
name: at most a hidden ``.NAME.XXXXXXXX.SUFFIX`` (mkstemp's eight random characters), which
``algorithm.io.writing.remove_stale_temp_files`` recognises. Every writer of the project (masks,
JSON, PNG, DICOM-SEG, checkpoints, training caches and logs) goes through here; the callers turn
``OSError`` into their own user-facing error.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def temp_path(final: Path, suffix: str = ".tmp") -> Path:
    """A new, empty, closed temporary file next to ``final`` (``.NAME.XXXXXXXX.SUFFIX``)."""
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=suffix)
    os.close(fd)
    return Path(tmp)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_file(path: Path) -> None:
    """Flush a file (possibly written by a library such as ITK) before it is renamed into place."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit(tmp: Path, final: Path, mode: int | None = None) -> None:
    """fsync ``tmp``, give it ``mode`` (default: what a plain ``open()`` would) and rename it to ``final``.

    On failure the temporary file is removed and the ``OSError`` propagates.
    """
    try:
        _fsync_file(tmp)
        # mkstemp creates 0600; give the result the permissions a plain open() would
        os.chmod(tmp, (0o666 & ~_current_umask()) if mode is None else mode)
        os.replace(tmp, final)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_path(final: str | os.PathLike, suffix: str = ".tmp", mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path to write; on a normal exit it becomes ``final``, else it is removed.

    ``suffix`` matters to writers that pick the format from the name (ITK, image writers).
    """
    final = Path(final)
    tmp = temp_path(final, suffix)
    try:
        yield tmp
        commit(tmp, final, mode)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, mode: int | None = None) -> None:
    """``data`` to ``path`` atomically, creating the folder if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, mode=mode) as tmp:
        tmp.write_bytes(data)
