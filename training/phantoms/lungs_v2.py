"""Version 2 lobes: fissures placed from anatomical landmarks, accessory fissures.

Oblique fissure (each lung): a surface through two landmarks in the sagittal plane, from the
posterior lung surface at the level of T4-T5 (the carina's level) down to the diaphragm
anteriorly, bowed and twisted (the "propeller" of the major fissures) and gently undulating.
Horizontal fissure (right): at about the fourth costal cartilage anteriorly (two rib spaces
below the sternal angle, which lies at the T4-T5 level), running back nearly level to meet the
oblique fissure at the height of the right hilum, convex superiorly and highest anterolaterally
(Aziz et al. 2004). The landmark surfaces are then shifted along their normal by at most
``MAX_SHIFT_MM`` towards the case's drawn lobe shares (Yamada et al. 2020, see config_v2), so
the shares follow the population where the landmarks allow, and the landmarks stay within their
anatomical spread.

Accessory fissures (azygos, inferior accessory, superior accessory, left minor; frequencies of
Aziz et al. 2004) are drawn as sheets *inside* one lobe: they look like fissures but separate no
lobes, so the network learns that not every visible fissure is a lobe boundary.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from algorithm.labels import Lobe

from .body import Thorax
from .config_v2 import FissureParams
from .fields import smooth_field
from .grid import Grid
from .lungs import (
    HORIZONTAL,
    LEFT_OBLIQUE,
    RIGHT_OBLIQUE,
    LungModel,
    Sheet,
    _reassign_islands,
    _signed_distance,
    draw_sheets,
)

MAX_SHIFT_MM = {"oblique": 18.0, "horizontal": 20.0}
ACCESSORY_IDS = {"azygos": 4, "inferior_accessory": 5, "superior_accessory": 6, "left_minor": 7}
FOURTH_CARTILAGE_BELOW_CARINA_MM = 35.0  # two anterior rib spaces (~17 mm each) below the sternal angle
# Parenchyma between the v1 drift (whole lung) and the v1 fine texture (two voxels): clusters of
# secondary lobules and regional perfusion, about 2 cm across. Without it healthy v2 lung at 4 mm
# piled up at -900 to -850 HU where real lung spreads from -950 to -800 (docs/realism.md).
LOBULAR_CELL_MM = 20.0
LOBULAR_TEXTURE_HU = 35.0


@dataclass(frozen=True)
class LandmarkSurface:
    """Height field Z = f(X, Y) through landmarks (lateral X ``xl`` mm, normalised Y ``yn``).

    Z runs linearly from ``z_back`` at ``yn_back`` to ``z_front`` at ``yn_front`` (and beyond, as
    the same line), plus a bow between them, a lateral tilt and small waves.
    """

    yn_back: float
    z_back: float
    yn_front: float
    z_front: float
    bow_mm: float
    tilt: float  # dZ/dX about the lung's centre line
    x_centre: float
    dome_mm: float  # rise towards (dome_x, dome_yn) (the minor fissure's convexity)
    dome_x: float
    dome_yn: float
    waves: tuple[tuple[float, float, float, float], ...]
    front_curve: float = 0.0  # the front end follows the dome: z_front + curve * (xl - x_centre)^2
    plunge_mm: float = 0.0  # extra drop per unit t beyond the front landmark

    def height(self, xl: np.ndarray, yn: np.ndarray, half_depth_mm: float) -> np.ndarray:
        t = (self.yn_back - yn) / (self.yn_back - self.yn_front)
        tc = np.clip(t, 0.0, 1.0)
        z_front = self.z_front + self.front_curve * (xl - self.x_centre) ** 2
        f = self.z_back + (z_front - self.z_back) * t + 4.0 * self.bow_mm * tc * (1.0 - tc)
        # In front of its anterior landmark the fissure has met the diaphragm: send it down steeply,
        # so the anterior costophrenic recess stays with the middle lobe or lingula.
        f = f - self.plunge_mm * np.clip(t - 1.0, 0.0, None)
        f = f + self.tilt * (xl - self.x_centre)
        if self.dome_mm:
            r2 = ((xl - self.dome_x) / 60.0) ** 2 + ((yn - self.dome_yn) / 0.7) ** 2
            f = f + self.dome_mm * np.clip(1.0 - r2, 0.0, None)
        for amp, kx, ky, phase in self.waves:
            f = f + amp * np.sin(kx * xl / half_depth_mm + ky * yn + phase)
        return f


def _waves(rng: np.random.Generator, amp_mm: float) -> tuple[tuple[float, float, float, float], ...]:
    return tuple(
        (amp_mm * float(rng.uniform(0.4, 1.0)), float(rng.uniform(-4, 4)), float(rng.uniform(-4, 4)), float(rng.uniform(0, 2 * np.pi)))
        for _ in range(3)
    )


def oblique_surface(th: Thorax, fp: FissureParams, side: int, rng: np.random.Generator) -> LandmarkSurface:
    """From T4-T5 posteriorly to the diaphragm anteriorly (lung of ``side``: +1 left, -1 right)."""
    k = 0 if side > 0 else 1
    p = th.p
    yn_front = -0.7 + fp.oblique_anterior_dy[k]
    x_c = p.lung_center_x_mm
    y_front = np.array(th.cy + yn_front * p.lung_half_depth_mm)
    z_front = float(th.dome(np.array(side * x_c), y_front, side))
    # The diaphragm falls away to the sides (the costophrenic recesses): the fissure's front end
    # follows it, so the anterior recess belongs to the middle lobe or lingula.
    lateral = float(th.dome(np.array(side * (x_c + 0.8 * p.lung_half_width_mm)), y_front, side))
    return LandmarkSurface(
        front_curve=(lateral - z_front) / (0.8 * p.lung_half_width_mm) ** 2,
        plunge_mm=400.0,
        yn_back=1.0,
        z_back=th.carina_z + fp.oblique_posterior_dz_mm[k],
        yn_front=yn_front,
        z_front=z_front,
        bow_mm=fp.oblique_bow_mm[k],
        tilt=fp.oblique_lateral_tilt[k],
        x_centre=x_c,
        dome_mm=0.0,
        dome_x=0.0,
        dome_yn=0.0,
        waves=_waves(rng, fp.wobble_mm[k]),
    )


def horizontal_surface(th: Thorax, fp: FissureParams, oblique: LandmarkSurface, rng: np.random.Generator) -> LandmarkSurface:
    """From the fourth costal cartilage back to where the oblique fissure crosses the hilum's level."""
    p = th.p
    z_hilum = float(th.hilum(-1)[2])
    z_front = th.carina_z - FOURTH_CARTILAGE_BELOW_CARINA_MM + fp.horizontal_dz_mm
    # Where the oblique fissure's landmark line passes the hilum's height.
    t = (z_hilum - oblique.z_back) / (oblique.z_front - oblique.z_back)
    yn_meet = float(np.clip(oblique.yn_back - t * (oblique.yn_back - oblique.yn_front), -0.3, 0.8))
    return LandmarkSurface(
        yn_back=yn_meet,
        z_back=z_hilum,
        yn_front=-1.0,
        z_front=z_front,
        bow_mm=0.0,
        tilt=0.0,
        x_centre=p.lung_center_x_mm,
        dome_mm=fp.horizontal_dome_mm,
        dome_x=p.lung_center_x_mm + 0.5 * p.lung_half_width_mm,  # anterolateral
        dome_yn=-0.6,
        waves=_waves(rng, fp.wobble_mm[2]),
    )


def _shift(d: np.ndarray, share: float, limit_mm: float, among: np.ndarray | None = None) -> np.ndarray:
    """Move the surface towards the share of the points ``among`` (default all) below it, by at
    most ``limit_mm``."""
    ref = d if among is None else d[among]
    if len(ref) == 0:
        return d
    return d - float(np.clip(np.quantile(ref, share), -limit_mm, limit_mm))


def _accessory_sheets(th: Thorax, fp: FissureParams, label: np.ndarray, x, y, z, spacing, rng) -> tuple[list[Sheet], dict[int, float]]:
    """Sheets inside one lobe each; visible over 40-100 % of their extent (often incomplete)."""
    p = th.p
    sheets, wanted = [], {}
    specs = {
        # (lobe, side, surface builder): all as height fields or, for the vertical ones, as x = const.
        "azygos": (Lobe.RUL, -1),
        "inferior_accessory": (Lobe.RLL, -1),
        "superior_accessory": (Lobe.RLL, -1),
        "left_minor": (Lobe.LUL, +1),
    }
    for name in fp.accessory:
        lobe, side = specs[name]
        idx = np.flatnonzero(label == lobe)
        if len(idx) == 0:
            continue
        px, py, pz = x.flat[idx], y.flat[idx], z.flat[idx]
        xl = side * px
        yn = (py - th.cy) / p.lung_half_depth_mm
        if name in ("azygos", "inferior_accessory"):  # near-sagittal sheets, medial in the lobe
            frac = 0.55 if name == "azygos" else 0.35
            x0 = p.lung_center_x_mm - frac * p.lung_half_width_mm + float(rng.uniform(-5, 5))
            d = xl - x0 - 0.15 * (pz - th.carina_z)
            ext = np.full(len(idx), spacing[0], dtype=np.float32)
            keep = (pz > th.carina_z + 10) if name == "azygos" else (pz < th.carina_z - 40)
        else:  # near-horizontal sheets
            z0 = th.carina_z - (40.0 if name == "superior_accessory" else 25.0) + float(rng.uniform(-8, 8))
            d = pz - z0 - 0.2 * p.lung_half_depth_mm * yn
            ext = np.full(len(idx), spacing[2], dtype=np.float32)
            keep = (yn > 0.2) if name == "superior_accessory" else (yn < 0.1)
        fid = ACCESSORY_IDS[name]
        score = np.where(keep, xl / 100.0, -10.0).astype(np.float32)  # only the kept part can show
        sheets.append((fid, idx, d.astype(np.float32), ext, score))
        wanted[fid] = float(rng.uniform(0.4, 1.0)) * float(np.mean(keep))
    return sheets, wanted


def build_lobes_v2(
    th: Thorax, fp: FissureParams, grid: Grid, x, y, z, lungs: dict[int, np.ndarray], rng: np.random.Generator
) -> LungModel:
    """Split the lungs into lobes at the landmark fissures and draw all fissure sheets."""
    spacing = np.array(grid.spacing_mm)
    label = np.zeros(grid.shape_zyx, dtype=np.uint8)
    score_field = smooth_field(rng, grid.shape_zyx, 6)
    sheets: list[Sheet] = []
    shares = fp.shares
    for side in (+1, -1):
        idx = np.flatnonzero(lungs[side])
        if len(idx) == 0:
            continue
        px, py, pz = x.flat[idx], y.flat[idx], z.flat[idx]
        obl = oblique_surface(th, fp, side, rng)
        d_obl, ext_obl = _signed_distance(obl, px, py, pz, side, th, spacing)
        lower_name = "LLL" if side > 0 else "RLL"
        lung_share = (shares["LUL"] + shares["LLL"]) if side > 0 else (shares["RUL"] + shares["RML"] + shares["RLL"])
        d_obl = _shift(d_obl, shares[lower_name] / lung_share, MAX_SHIFT_MM["oblique"])
        lower = d_obl < 0
        lateral = side * px / th.cage_half_width + 0.5 * score_field.flat[idx]
        if side > 0:
            label.flat[idx] = np.where(lower, Lobe.LLL, Lobe.LUL)
            sheets.append((LEFT_OBLIQUE, idx, d_obl, ext_obl, lateral))
            continue
        hor = horizontal_surface(th, fp, obl, rng)
        d_hor, ext_hor = _signed_distance(hor, px, py, pz, side, th, spacing)
        upper = ~lower
        d_hor = _shift(d_hor, shares["RML"] / (shares["RML"] + shares["RUL"]), MAX_SHIFT_MM["horizontal"], upper)
        label.flat[idx] = np.where(lower, Lobe.RLL, np.where(d_hor < 0, Lobe.RML, Lobe.RUL))
        sheets.append((RIGHT_OBLIQUE, idx, d_obl, ext_obl, lateral))
        sheets.append((HORIZONTAL, idx[upper], d_hor[upper], ext_hor[upper], lateral[upper]))
    cleaned = _reassign_islands(label, lungs[+1] | lungs[-1])
    wanted = {LEFT_OBLIQUE: fp.visible[0], RIGHT_OBLIQUE: fp.visible[1], HORIZONTAL: fp.visible[2]}
    extra, extra_wanted = _accessory_sheets(th, fp, cleaned, x, y, z, spacing, rng)
    wanted.update(extra_wanted)
    return draw_sheets(label, cleaned, sheets + extra, wanted)


def lobular_texture_hu(grid: Grid, idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """HU offsets at the lung voxels ``idx`` (flat indices of ``grid``): a 2 cm mottle."""
    cells = tuple(max(2, int(n * s / LOBULAR_CELL_MM)) for n, s in zip(grid.shape_zyx, grid.spacing_mm[::-1]))
    return (LOBULAR_TEXTURE_HU * smooth_field(rng, grid.shape_zyx, cells).flat[idx]).astype(np.float32)
