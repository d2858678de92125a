"""The one label map of the project (the paper's, Section III).

lungmask numbers the right middle lobe 4 and the right lower lobe 5; this project follows the
paper (4 = RLL, 5 = RML). The map is written into every output so the two cannot be confused.
"""

from __future__ import annotations

from enum import IntEnum


class Lobe(IntEnum):
    """Voxel values of the lobe mask."""

    BACKGROUND = 0
    LUL = 1  # left upper lobe
    LLL = 2  # left lower lobe
    RUL = 3  # right upper lobe
    RLL = 4  # right lower lobe
    RML = 5  # right middle lobe


NUM_CLASSES = len(Lobe)
LOBES: tuple[Lobe, ...] = (Lobe.LUL, Lobe.LLL, Lobe.RUL, Lobe.RLL, Lobe.RML)
LEFT_LOBES: tuple[Lobe, ...] = (Lobe.LUL, Lobe.LLL)
RIGHT_LOBES: tuple[Lobe, ...] = (Lobe.RUL, Lobe.RLL, Lobe.RML)

LOBE_NAMES: dict[Lobe, str] = {
    Lobe.BACKGROUND: "background",
    Lobe.LUL: "left upper lobe",
    Lobe.LLL: "left lower lobe",
    Lobe.RUL: "right upper lobe",
    Lobe.RLL: "right lower lobe",
    Lobe.RML: "right middle lobe",
}


def label_map() -> dict[str, str]:
    """The label map as written into outputs: voxel value (as a string) -> 'ABBR: name'."""
    return {str(int(lobe)): f"{lobe.name}: {LOBE_NAMES[lobe]}" for lobe in Lobe}


def label_map_header() -> str:
    """A compact one-line form for image metadata, e.g. '0=background;1=LUL;...'."""
    return ";".join(
        f"{int(lobe)}={'background' if lobe == Lobe.BACKGROUND else lobe.name}" for lobe in Lobe
    )
