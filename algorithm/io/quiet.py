"""Silencing the native libraries' own stderr output (ITK, MetaIO, GDCM).

They print warnings and failure notes straight to file descriptor 2 in addition to raising; the
command line reports each problem once, as one ``error:`` or ``warning:`` line of its own.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import SimpleITK as sitk


def silence_itk_warnings() -> None:
    """ITK's warning display is process-wide; the command line turns it off once at start."""
    sitk.ProcessObject.SetGlobalWarningDisplay(False)


@contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for the duration (Python's sys.stderr is flushed first)."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 at all: nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
