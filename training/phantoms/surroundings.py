"""What lies on and under the patient (v2): clothing, blankets, the cushion and the table.

Blankets and clothing follow the body outline at a varying gap; where their folds touch the skin
they close pockets of air against it. The shipped v1-trained network took such air in front of a
real chest for lung (docs/design.md, "Air around the body taken for lung"), so v2 phantoms show it,
labelled background. The cushion is compressed under the back and rises beside it, which leaves
air wedges between the flanks and the mattress. The table and cushion lie in the scanner frame
(they do not rotate with the patient); blankets and clothing follow the patient.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from .config import BodyParams, stream
from .config_v2 import V2Params
from .grid import Grid, PatientFrame


class TorsoOutline(Protocol):
    """What the surroundings read of ``torso.ThoraxV2``: its outline and its parameters. A
    protocol, so that this module does not import ``torso`` (which imports this one to dress the
    body): the dependency runs one way, torso -> surroundings."""

    p: BodyParams
    v2: V2Params
    seed: int
    cy: float
    cage_half_width: float
    cage_half_depth: float

    def torso(self, x: np.ndarray, y: np.ndarray, z: np.ndarray, inset_mm: float | np.ndarray, widen_mm: float = 0.0
              ) -> np.ndarray: ...

    def torso_half_width_mm(self, z: np.ndarray) -> np.ndarray: ...


COVER_HU = -100.0  # cushion cover (vinyl)
TABLE_SHELL_HU = 250.0  # carbon-fibre skin of the table
TABLE_HALF_WIDTH_MM = 225.0
CLOTHING_MM = 1.2


def _folds(rng: np.random.Generator, x: np.ndarray, z: np.ndarray, mean_mm: float, amp_mm: float) -> np.ndarray:
    """Gap (mm, >= 0) between skin and a draped sheet: low-frequency folds that touch the skin."""
    waves = 0.0
    for weight in (0.6, 0.4, 0.25):
        lx, lz = rng.uniform(50.0, 160.0), rng.uniform(60.0, 220.0)
        phase = rng.uniform(0.0, 2 * np.pi, size=2)
        waves = waves + weight * np.sin(2 * np.pi * x / lx + phase[0]) * np.cos(2 * np.pi * z / lz + phase[1])
    return np.maximum(0.0, mean_mm + amp_mm * waves).astype(np.float32)


def _sheet(th: TorsoOutline, x, y, z, gap: np.ndarray, thick_mm: float, widen_mm: float) -> np.ndarray:
    """Points between the outline offset by ``gap`` and by ``gap + thick_mm``."""
    inner = th.torso(x, y, z, -gap, widen_mm)
    outer = th.torso(x, y, z, -(gap + thick_mm), widen_mm)
    return (inner >= 1.0) & (outer < 1.0)


def _draw_blanket(th: TorsoOutline, hu: np.ndarray, x, y, z, body: np.ndarray) -> np.ndarray:
    """Layers of blanket over the front and sides, hanging down to the table; returns its mask."""
    s = th.v2.surroundings
    rng = stream(th.seed, "blanket-v2")
    widen = (2.0 * s.arm_radius_mm + s.arm_gap_mm) if s.arms == "down" else 0.0
    reach = s.blanket_gap_mm + s.blanket_fold_mm + s.blanket_layers * (s.blanket_mm + 2.0) + 5.0
    back_mm = th.cy + th.cage_half_depth + 9.0 + 0.6 * th.p.muscle_mm + 0.3 * th.p.fat_mm
    drape_y = th.cy + float(rng.uniform(-0.1, 0.4)) * back_mm  # the sheet leaves the body here
    cand = np.flatnonzero((th.torso(x, y, z, -reach, widen) < 1.0) & ~body)
    px, py, pz = x.flat[cand], y.flat[cand], z.flat[cand]
    gap = _folds(rng, px, pz, s.blanket_gap_mm, s.blanket_fold_mm)
    mask = np.zeros(len(cand), dtype=bool)
    for layer in range(s.blanket_layers):
        g = gap + layer * (s.blanket_mm + float(rng.uniform(0.0, 4.0)))
        mask |= _sheet(th, px, py, pz, g, s.blanket_mm, widen) & (py < drape_y)
    out = np.zeros(body.shape, dtype=bool)
    out.flat[cand[mask]] = True
    # Hanging sides: vertical sheets from the drape level down to the back's level.
    half_w = th.torso_half_width_mm(z) + widen + s.blanket_gap_mm
    side = (np.abs(np.abs(x) - half_w - 0.5 * s.blanket_mm) < 0.5 * s.blanket_mm + 0.5) & (y >= drape_y) & (y < back_mm + 20.0)
    out |= side & ~body
    hu[out] = s.blanket_hu
    return out


def _draw_clothing(th: TorsoOutline, hu: np.ndarray, x, y, z, body: np.ndarray, taken: np.ndarray) -> None:
    """A thin garment close to the skin with small folds (not under the back, where it is pressed flat)."""
    s = th.v2.surroundings
    rng = stream(th.seed, "clothing-v2")
    cand = np.flatnonzero((th.torso(x, y, z, -12.0, 0.0) < 1.0) & ~body & ~taken)
    px, py, pz = x.flat[cand], y.flat[cand], z.flat[cand]
    gap = _folds(rng, px, pz, 1.5, 3.0)
    back_mm = th.cy + th.cage_half_depth
    keep = _sheet(th, px, py, pz, gap, CLOTHING_MM, 0.0) & (py < back_mm)
    hu.flat[cand[keep]] = s.clothing_hu


def _draw_cushion_and_table(th: TorsoOutline, hu: np.ndarray, grid: Grid, body: np.ndarray, taken: np.ndarray) -> None:
    """Mattress compressed under the back, curved table below it (scanner frame, same on every slice)."""
    s = th.v2.surroundings
    xs = grid.axis_mm(0)[None, :]
    ys = grid.axis_mm(1)[:, None]
    rows = np.flatnonzero(body.any(axis=(0, 2)))
    if len(rows) == 0:
        return
    contact = float(grid.axis_mm(1)[rows[-1]]) + 0.5 * grid.spacing_mm[1]
    curve = s.table_curve_per_mm * xs**2
    half_w = th.cage_half_width + 30.0
    lift = s.cushion_sag_mm * (1.0 - np.exp(-((xs / (0.6 * half_w)) ** 4)))
    cushion_top = contact - lift - curve
    table_top = contact + s.cushion_mm - curve
    wide = np.abs(xs) < TABLE_HALF_WIDTH_MM
    value = np.full(np.broadcast_shapes(xs.shape, ys.shape), np.nan, dtype=np.float32)
    if s.cushion_mm > 0:
        cushion = wide & (ys >= cushion_top) & (ys < table_top)
        value[cushion] = s.cushion_hu
        value[cushion & (ys < cushion_top + 1.5)] = COVER_HU
    table = wide & (ys >= table_top) & (ys < table_top + s.table_mm)
    value[table] = s.table_core_hu
    shell = table & ((ys < table_top + 2.5) | (ys >= table_top + s.table_mm - 2.5))
    value[shell] = TABLE_SHELL_HU
    draw = ~np.isnan(value)
    free = ~(body | taken)
    for k in range(hu.shape[0]):  # slice by slice: no full-size temporaries
        m = draw & free[k]
        hu[k][m] = value[m]


def draw_surroundings(th: TorsoOutline, hu: np.ndarray, grid: Grid, frame: PatientFrame, body: np.ndarray, x, y, z) -> None:
    """Blanket, clothing, cushion and table, in that order (what is drawn first stays)."""
    s = th.v2.surroundings
    taken = np.zeros(body.shape, dtype=bool)
    if s.blanket:
        taken = _draw_blanket(th, hu, x, y, z, body)
    if s.clothing:
        _draw_clothing(th, hu, x, y, z, body, taken)
    _draw_cushion_and_table(th, hu, grid, body, taken)
