"""The evidence a fissure is fitted to: per working column of one lung, cumulative counts along z
of each lobe, of the analysed lung and of its vessels, and what a surface does with them (band
counts, relabelled voxels, feasibility) in O(columns) per evaluation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from algorithm.boxes import bounding_box
from algorithm.fissure_fit.model import FitSettings, _basis, _knots
from algorithm.labels import Lobe


@dataclass
class _Lung:
    """One lung on the working grid: columns (y, x) and cumulative counts along z (fine voxels)."""

    box: tuple[slice, slice, slice]  # fine-grid box (multiples of the block factor from its start)
    factor: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]  # fine grid (z, y, x)
    shape_w: tuple[int, int]  # working (ny, nx)
    columns: np.ndarray  # flat indices of the working columns that hold lung
    cum: dict[str, np.ndarray]  # name -> (ncol, nzw + 1)
    vessel_share: float  # vessel voxels / region voxels in this lung

    @property
    def dz_mm(self) -> float:
        return self.factor[0] * self.spacing_mm[0]

    @property
    def edge0_mm(self) -> float:
        return (self.box[0].start - 0.5) * self.spacing_mm[0]

    def axis_mm(self, axis: int) -> np.ndarray:
        """Working column centres along y (1) or x (2), in mm."""
        k, s, n = self.factor[axis], self.spacing_mm[axis], self.shape_w[axis - 1]
        return (self.box[axis].start + k * np.arange(n) + (k - 1) / 2.0) * s

    def u(self, z_mm: np.ndarray) -> np.ndarray:
        """Fractional position along the cumulative arrays of a height (mm)."""
        return np.clip((z_mm - self.edge0_mm) / self.dz_mm, 0.0, self.cum["lung"].shape[1] - 1)

    def at(self, name: str, u: np.ndarray) -> np.ndarray:
        """Cumulative count of ``name`` below fractional position ``u`` in each column."""
        cum = self.cum[name]
        i = np.minimum(u.astype(np.int64), cum.shape[1] - 2)
        rows = np.arange(cum.shape[0])
        lo = cum[rows, i]
        return lo + (u - i) * (cum[rows, i + 1] - lo)

    def total(self, name: str) -> np.ndarray:
        return self.cum[name][:, -1]


def _block_sum(mask: np.ndarray, factor: tuple[int, int, int]) -> np.ndarray:
    """Counts of True per block (one axis at a time; the array is padded to whole blocks)."""
    pad = [(0, (-n) % k) for n, k in zip(mask.shape, factor)]
    a = np.pad(mask, pad) if any(p[1] for p in pad) else mask
    nz, ny, nx = a.shape
    kz, ky, kx = factor
    a = a.reshape(nz // kz, kz, ny, nx).sum(axis=1, dtype=np.uint16)
    a = a.reshape(nz // kz, ny // ky, ky, nx).sum(axis=2, dtype=np.uint16)
    return a.reshape(nz // kz, ny // ky, nx // kx, kx).sum(axis=3, dtype=np.uint16)


def _lung(
    labels: np.ndarray,
    lobes: tuple[Lobe, ...],
    vessel: np.ndarray,
    region: np.ndarray,
    spacing_mm: tuple[float, float, float],
    settings: FitSettings,
) -> _Lung | None:
    side = np.isin(labels, [int(v) for v in lobes])
    box = bounding_box(side)
    if box is None:
        return None
    wanted = (settings.slice_spacing_mm, settings.column_spacing_mm, settings.column_spacing_mm)
    factor = tuple(max(1, int(round(w / s))) for w, s in zip(wanted, spacing_mm))
    lab = labels[box]
    side_box = side[box]
    counts = {f"lobe{int(v)}": _block_sum(lab == int(v), factor) for v in lobes}
    counts["lung"] = sum(counts.values())
    in_region = region[box] & side_box
    counts["region"] = _block_sum(in_region, factor)
    counts["vessel"] = _block_sum(in_region & vessel[box], factor)
    nzw, nyw, nxw = counts["lung"].shape
    columns = np.flatnonzero(counts["lung"].reshape(nzw, -1).sum(axis=0) > 0)
    cum = {}
    for name, c in counts.items():
        per_col = c.reshape(nzw, -1)[:, columns].T.astype(np.float64)
        cum[name] = np.concatenate([np.zeros((len(columns), 1)), np.cumsum(per_col, axis=1)], axis=1)
    n_region = cum["region"][:, -1].sum()
    share = float(cum["vessel"][:, -1].sum() / n_region) if n_region > 0 else 0.0
    return _Lung(box, factor, spacing_mm, (nyw, nxw), columns, cum, share)


# ---------------------------------------------------------------------------------------------
# One fissure's cost


class _Stack:
    """Several cumulative counts of one lung stacked, read together at fractional positions."""

    def __init__(self, channels: list[np.ndarray]) -> None:
        self.n = channels[0].shape[1]  # nzw + 1
        self.flat = np.stack([c.ravel() for c in channels])  # (channels, ncol * n): take() is fast
        self.base = np.arange(channels[0].shape[0]) * self.n

    def at(self, u: np.ndarray) -> np.ndarray:
        """(channels, ncol) cumulative counts below ``u`` (linear inside a working voxel)."""
        i = u.astype(np.int64)
        np.minimum(i, self.n - 2, out=i)
        idx = self.base + i
        lo = self.flat.take(idx, axis=1)
        return lo + (u - i) * (self.flat.take(idx + 1, axis=1) - lo)


@dataclass
class Evaluation:
    """What one surface does: band counts, relabelled voxels, lower-class volume per column."""

    vessels: float
    region: float
    changed: float
    lower_volume: np.ndarray
    u: np.ndarray
    f_mm: np.ndarray  # surface height per column
    slope2: np.ndarray  # squared slope per column
    outer_vessels: float = 0.0  # the same counts in the band twice as wide
    outer_region: float = 0.0
    changed_beyond: float = 0.0  # relabelled voxels in the columns where the network has one lobe only


class Problem:
    """One fissure on one lung: the network's classes below (``lower``) and above (``upper``) it.

    ``floor_u`` (per column, fractional working index) is where the surface's domain starts: 0 for
    the oblique fissures, the oblique fissure for the horizontal one; ``band_floor_u`` keeps the
    horizontal fissure's band out of the oblique fissure's band.
    """

    def __init__(
        self,
        lung: _Lung,
        lower: tuple[Lobe, ...],
        upper: tuple[Lobe, ...],
        settings: FitSettings,
        floor_u: np.ndarray | None = None,
        band_floor_u: np.ndarray | None = None,
        share_limits: tuple[float, float] = (0.0, 1.0),
        anterior_of: np.ndarray | None = None,
        keep: tuple[Lobe, float] | None = None,
    ) -> None:
        self.lung, self.settings, self.share_limits = lung, settings, share_limits
        zeros = np.zeros(len(lung.columns))
        self.floor_u = zeros if floor_u is None else floor_u
        self.band_floor_u = zeros if band_floor_u is None else band_floor_u
        y_mm, x_mm = lung.axis_mm(1), lung.axis_mm(2)
        self.knots_y = _knots(float(y_mm[0]), float(y_mm[-1]), settings.control_spacing_mm)
        self.knots_x = _knots(float(x_mm[0]), float(x_mm[-1]), settings.control_spacing_mm)
        self.by, self.bx = _basis(y_mm, self.knots_y), _basis(x_mm, self.knots_x)
        self.dby, self.dbx = _basis(y_mm, self.knots_y, 1), _basis(x_mm, self.knots_x, 1)
        self.ddby, self.ddbx = _basis(y_mm, self.knots_y, 2), _basis(x_mm, self.knots_x, 2)
        cum = lung.cum
        self.lower_cum = sum((cum[f"lobe{int(v)}"] for v in lower), np.zeros_like(cum["lung"]))
        self.upper_cum = sum((cum[f"lobe{int(v)}"] for v in upper), np.zeros_like(cum["lung"]))
        self.band_stack = _Stack([cum["vessel"], cum["region"]])
        self.class_stack = _Stack([cum["lung"], self.upper_cum, self.lower_cum])
        self.at_floor = self.class_stack.at(self.floor_u)
        self.lung_total = float(cum["lung"][:, -1].sum())
        self.lower_total = float(self.lower_cum[:, -1].sum())
        self.y_columns = np.repeat(y_mm, len(x_mm))[lung.columns]
        self.anterior_of = anterior_of
        # (lobe above the surface, share of its network voxels that must stay above it)
        self.keep = None
        if keep is not None:
            kept_cum = cum[f"lobe{int(keep[0])}"]
            stack = _Stack([kept_cum])
            total = float(kept_cum[:, -1].sum())
            self.keep = (stack, stack.at(self.floor_u)[0], total, keep[1] * total)
        self.fissure_columns = np.ones(len(lung.columns), bool)  # set from the network's targets
        if anterior_of is not None and anterior_of.sum() > 0:
            self.anterior_y = float((anterior_of * self.y_columns).sum() / anterior_of.sum())
        else:
            self.anterior_y = None

    def heights(self, coef: np.ndarray) -> np.ndarray:
        return self.by @ coef @ self.bx.T

    def evaluate(self, coef: np.ndarray) -> Evaluation:
        lung = self.lung
        f = self.heights(coef)
        slope2 = (self.dby @ coef @ self.bx.T) ** 2 + (self.by @ coef @ self.dbx.T) ** 2
        f_c = f.ravel()[lung.columns]
        # the band is measured along the normal: its vertical half height grows with the slope
        half = self.settings.band_half_width_mm * np.sqrt(1.0 + slope2.ravel()[lung.columns])
        band = self._band(f_c, half)
        outer = self._band(f_c, 2.0 * half) if self.settings.outer_band_weight > 0 else (0.0, 0.0)
        u = lung.u(f_c)
        top = self.class_stack.at(np.maximum(u, self.floor_u)) - self.at_floor
        # relabelled per column: network upper voxels now below the surface + lower voxels above it
        changed = top[1] + self.lower_cum[:, -1] - (self.at_floor[2] + top[2])
        return Evaluation(
            band[0], band[1], float(changed.sum()), top[0], u, f_c, slope2.ravel()[lung.columns], outer[0], outer[1],
            float(changed[~self.fissure_columns].sum()),
        )

    def _band(self, f_c: np.ndarray, half_mm: np.ndarray) -> tuple[float, float]:
        """(vessel, region) voxels within ``half_mm`` (vertical, per column) of the surface."""
        lo = np.maximum(self.lung.u(f_c - half_mm), self.band_floor_u)
        hi = np.maximum(self.lung.u(f_c + half_mm), lo)
        band = (self.band_stack.at(hi) - self.band_stack.at(lo)).sum(axis=1)
        return float(band[0]), float(band[1])

    def index(self, ev: Evaluation) -> float:
        if ev.region <= 0 or self.lung.vessel_share <= 0:
            return float("nan")
        return ev.vessels / ev.region / self.lung.vessel_share

    def feasible(self, ev: Evaluation) -> bool:
        lo, hi = self.share_limits
        total = ev.lower_volume.sum()
        if not lo <= total / self.lung_total <= hi:
            return False
        if self.keep is not None:
            stack, at_floor, total, least = self.keep
            if total - float((stack.at(np.maximum(ev.u, self.floor_u))[0] - at_floor).sum()) < least:
                return False
        if self.anterior_y is None or total <= 0:
            return True
        return float((ev.lower_volume * self.y_columns).sum() / total) < self.anterior_y
