"""Left and right from the body, not from the network's guess (issue 29).

The network tells the lobes apart by their look and place; on a chest with one lung (pneumonectomy,
a collapsed or opacified hemithorax, a massive effusion) it split the remaining right lung in two
and labelled 934 mL of it as left lobes, and nothing said so. Here the sides come from anatomy:

- the midline is the left-right position where most bone lies over the lungs' height (the spine,
  with the sternum in front of it; ribs are thin and spread out): the spine stays in place when
  the mediastinum shifts towards an airless side, is still whole in a scan of one hemithorax, and
  bone is found by a threshold whatever the lungs look like;
- each lung is a connected region of the lung mask (``lung_extent``); a region lying for the most
  part on one side of the midline is that side's lung. Lungs that touch (the anterior junction)
  make one region: its axial cross-sections are judged one by one instead, and a cross-section
  that still straddles the midline is left as the network labelled it;
- a lobe label of the other side inside a lung is relabelled to that lung's side, by the
  network's own probabilities among that side's lobes;
- a side with less aerated lung than ``min_lung_ml`` is not a lung the network can divide into
  lobes: every label of that side is removed (no lobes are invented for it) and the side is
  reported as airless (the mirror image of the other lung falls on dense tissue: its volume and
  mean HU) or absent (it falls outside the field of view or on air);
- the network itself, shown a chest with one airless side, destroyed the remaining lung's lobes
  (RUL IoU 0.15 in the issue). ``mirrored_lung_hu`` gives it a second look at a chest whose
  airless side holds the mirror image of the remaining lung (pipeline/one_lung.py); only the
  remaining lung's lobes are kept from it.

Works on the canonical (LPS) grid: +x is the patient's left, axis order (Z, Y, X).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from algorithm.labels import LEFT_LOBES, RIGHT_LOBES, Lobe

SIDES = ("left", "right")
SIDE_LOBES = {"left": LEFT_LOBES, "right": RIGHT_LOBES}
IN_PLANE = np.zeros((3, 3, 3), bool)  # connectivity within one axial slice (8-neighbours)
IN_PLANE[1] = True


# relabelled lobes of the other side below this are the midline's partial-volume voxels, not a
# network that confused the sides (A0001 and the 1.5 mm CTA relabel 1-2 mL on every run)
WRONG_SIDE_FLAG_ML = 5.0


@dataclass(frozen=True)
class LateralitySettings:
    """Thresholds of the sides from anatomy."""

    bone_min_hu: float = 300.0  # cortical and trabecular bone; no lung, fat or muscle is this dense
    spine_width_mm: float = 20.0  # the bone profile is smoothed over this: the width of a vertebra's core
    one_side_share: float = 0.9  # of a lung region on one side of the midline: that side's lung
    min_lung_ml: float = 100.0  # less lung than this on one side: no lung to divide (a collapsed lobe is ~ 50-300 mL)
    dense_min_hu: float = -300.0  # airless lung (collapse, consolidation, fluid, fibrosis) is denser than this
    min_dense_share: float = 0.5  # of the mirrored lung in the field of view: that side is airless
    min_in_view_share: float = 0.5  # of the mirrored lung inside the field of view, else "absent"


@dataclass(frozen=True)
class LungSide:
    """One lung as found: ``present``, ``airless`` (dense where the lung should be) or ``absent``."""

    status: str
    lung_ml: float  # lung (the lung mask) on this side
    dense_ml: float | None = None  # airless: the dense tissue where the other lung's mirror image falls
    dense_mean_hu: float | None = None

    def section(self) -> dict:
        out = {"status": self.status, "lung_ml": round(self.lung_ml, 1)}
        if self.dense_ml is not None:
            out["dense_ml"] = round(self.dense_ml, 1)
            out["dense_mean_hu"] = round(float(self.dense_mean_hu), 1)
        return out


@dataclass(frozen=True)
class Laterality:
    """The lobes with each lung's labels from its own side, and what was found and done."""

    labels: np.ndarray  # uint8 (Z, Y, X), canonical grid
    midline_x_mm: float | None  # from the grid's first voxel centre; None: no skeleton found (nothing changed)
    lungs: dict[str, LungSide]
    relabelled_ml: float  # lobe labels of the other side inside a lung, relabelled
    removed_ml: float  # labels of a missing lung's side, removed

    def section(self) -> dict:
        """The report's ``lungs`` section (docs/outputs.md)."""
        return {
            "midline_x_mm": None if self.midline_x_mm is None else round(self.midline_x_mm, 1),
            **{side: self.lungs[side].section() for side in SIDES},
            "other_side_relabelled_ml": round(self.relabelled_ml, 1),
            "missing_side_removed_ml": round(self.removed_ml, 1),
        }

    def flags(self) -> list[dict]:
        """Plain-sentence quality flags: a missing lung, lobes moved to their own side."""
        out = []
        for side in SIDES:
            lung = self.lungs[side]
            if lung.status == "airless":
                out.append({"code": "lung_airless", "severity": "warning", "side": side, "message": (
                    f"the {side} lung holds no aerated lung ({lung.lung_ml:.0f} mL of lung): where it should be "
                    f"lie {lung.dense_ml:.0f} mL of dense tissue at a mean of {lung.dense_mean_hu:.0f} HU "
                    f"(collapse, consolidation, effusion or pneumonectomy?); no {side} lobes are given")})
            elif lung.status == "absent":
                out.append({"code": "lung_absent", "severity": "warning", "side": side, "message": (
                    f"no {side} lung was found ({lung.lung_ml:.0f} mL of lung on that side, its place outside "
                    f"the field of view or without tissue); no {side} lobes are given")})
        if self.relabelled_ml >= WRONG_SIDE_FLAG_ML:
            out.append({"code": "lobes_on_wrong_side", "severity": "warning", "message": (
                f"the network put {self.relabelled_ml:.0f} mL of lobes of one side into the other lung; "
                "they were relabelled to that lung's own lobes")})
        return out


def midline_x_index(hu: np.ndarray, lung: np.ndarray, spacing_x_mm: float,
                    settings: LateralitySettings) -> float | None:
    """The x (in voxels) with the most bone over the lungs' slices, the profile smoothed over a
    vertebra's width: the spine. None without bone there."""
    slices = np.flatnonzero(lung.any(axis=(1, 2)))
    if slices.size == 0:
        return None
    profile = np.count_nonzero(hu[slices[0]:slices[-1] + 1] >= settings.bone_min_hu, axis=(0, 1)).astype(float)
    if not profile.any():
        return None
    smooth = ndimage.uniform_filter1d(profile, max(1, int(round(settings.spine_width_mm / spacing_x_mm))), mode="constant")
    peak = np.flatnonzero(smooth == smooth.max())
    return float(np.mean(peak))


def side_of_regions(lung: np.ndarray, midline_x: float, structure: np.ndarray, share: float) -> np.ndarray:
    """Per voxel of ``lung``: +1 left, -1 right, 0 undecided (its region straddles the midline)."""
    regions, count = ndimage.label(lung, structure=structure)
    left_of = np.zeros(lung.shape, bool)
    left_of[..., int(np.floor(midline_x)) + 1:] = True  # LPS: +x is the patient's left
    sizes = np.bincount(regions.ravel(), minlength=count + 1).astype(float)
    left_counts = np.bincount(regions[left_of], minlength=count + 1).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        left_share = np.where(sizes > 0, left_counts / sizes, 0.5)
    side = np.where(left_share >= share, 1, np.where(left_share <= 1 - share, -1, 0)).astype(np.int8)
    side[0] = 0
    return side[regions]


def lung_sides(lung: np.ndarray, midline_x: float, settings: LateralitySettings) -> np.ndarray:
    """+1 left, -1 right, 0 undecided per voxel: 3D lung regions first, then the undecided ones
    (lungs touching at the anterior junction) by their axial cross-sections."""
    side = side_of_regions(lung, midline_x, np.ones((3, 3, 3), bool), settings.one_side_share)
    undecided = lung & (side == 0)
    if undecided.any():
        side[undecided] = side_of_regions(undecided, midline_x, IN_PLANE, settings.one_side_share)[undecided]
    return side


def relabel_to_own_side(labels: np.ndarray, side: np.ndarray, probabilities: np.ndarray | None) -> np.ndarray:
    """Labels of the other side inside a sided lung -> the most probable lobe of the lung's side
    (the network's probabilities, nearest network voxel; without them the side's first lobe)."""
    out = labels.copy()
    for name, sign in (("left", 1), ("right", -1)):
        own = np.array([int(lobe) for lobe in SIDE_LOBES[name]])
        wrong = (side == sign) & (labels > 0) & ~np.isin(labels, own)
        if not wrong.any():
            continue
        if probabilities is None:
            out[wrong] = own[0]
            continue
        index = np.nonzero(wrong)
        network = tuple((np.asarray(i) * n // s).astype(np.intp) for i, n, s in
                        zip(index, probabilities.shape[1:], labels.shape))  # same extent: index scaling
        out[index] = own[np.argmax(probabilities[(own[:, None],) + tuple(n[None] for n in network)], axis=0)]
    return out


def missing_lung(hu: np.ndarray, lung: np.ndarray, present: np.ndarray, midline_x: float, voxel_ml: float,
                 settings: LateralitySettings) -> LungSide:
    """A side without enough lung: airless where the mirror image of the ``present`` lung falls on
    dense tissue in the field of view, otherwise absent."""
    z, y, x = np.nonzero(present)
    mirrored_x = np.round(2 * midline_x - x).astype(np.intp)
    inside = (mirrored_x >= 0) & (mirrored_x < hu.shape[2])
    lung_ml = float(np.count_nonzero(lung)) * voxel_ml
    if x.size == 0 or np.mean(inside) < settings.min_in_view_share:
        return LungSide("absent", lung_ml)
    values = hu[z[inside], y[inside], mirrored_x[inside]].astype(np.float32)
    dense = values[values > settings.dense_min_hu]
    if dense.size < settings.min_dense_share * values.size:
        return LungSide("absent", lung_ml)
    return LungSide("airless", lung_ml, float(dense.size) * voxel_ml, float(dense.mean()))


def laterality(
    hu: np.ndarray,
    labels: np.ndarray,
    spacing_mm_zyx: tuple[float, float, float],
    probabilities: np.ndarray | None = None,
    settings: LateralitySettings | None = None,
) -> Laterality:
    """Each lung's lobes from its own side; a missing lung found and its side's labels removed.

    ``hu`` and ``labels``: (Z, Y, X) on the canonical (LPS) grid; ``probabilities``: the network's
    (6, Z', Y', X') softmax over the same extent (None: relabel to the side's first lobe)."""
    settings = settings or LateralitySettings()
    voxel_ml = float(np.prod(spacing_mm_zyx)) / 1000.0
    lung = labels > 0
    midline = midline_x_index(hu, lung, spacing_mm_zyx[2], settings)
    if midline is None:  # no skeleton in the lungs' slices (a crop): nothing to judge the sides by
        empty = {side: LungSide("present", 0.0) for side in SIDES}
        return Laterality(labels, None, empty, 0.0, 0.0)
    side = lung_sides(lung, midline, settings)
    sided = relabel_to_own_side(labels, side, probabilities)
    relabelled_ml = float(np.count_nonzero(sided != labels)) * voxel_ml
    sign = {"left": 1, "right": -1}
    on_side = {name: lung & (side == sign[name]) for name in SIDES}
    lungs, removed = {}, 0
    for name, other in (("left", "right"), ("right", "left")):
        if np.count_nonzero(on_side[name]) * voxel_ml >= settings.min_lung_ml:
            lungs[name] = LungSide("present", float(np.count_nonzero(on_side[name])) * voxel_ml)
            continue
        lungs[name] = missing_lung(hu, on_side[name], on_side[other], midline, voxel_ml, settings)
        drop = np.isin(sided, [int(lobe) for lobe in SIDE_LOBES[name]])
        removed += int(np.count_nonzero(drop))
        sided[drop] = Lobe.BACKGROUND
    return Laterality(sided, float(midline) * spacing_mm_zyx[2], lungs, relabelled_ml, removed * voxel_ml)


def needs_second_look(sides: Laterality) -> str | None:
    """The side whose lung is airless while the other is present (the network's second look
    mirrors the present lung there), or None."""
    status = {side: sides.lungs[side].status for side in SIDES}
    for side, other in (("left", "right"), ("right", "left")):
        if status[side] == "airless" and status[other] == "present":
            return side
    return None


def mirrored_lung_hu(hu: np.ndarray, labels: np.ndarray, missing_side: str, midline_x_mm: float,
                     spacing_x_mm: float, grow_mm: float = 6.0) -> np.ndarray:
    """A copy of ``hu`` (Z, Y, X) whose ``missing_side`` holds the mirror image (about the midline)
    of the other lung, grown by ``grow_mm`` to take its pleura and chest wall edge along."""
    present = np.isin(labels, [int(lobe) for lobe in SIDE_LOBES["right" if missing_side == "left" else "left"]])
    grow = max(1, int(round(grow_mm / spacing_x_mm)))
    present = ndimage.binary_dilation(present, np.ones((3, 3, 3), bool), iterations=grow)
    midline = midline_x_mm / spacing_x_mm
    z, y, x = np.nonzero(present)
    mirrored_x = np.round(2 * midline - x).astype(np.intp)
    keep = (mirrored_x >= 0) & (mirrored_x < hu.shape[2])
    keep &= (mirrored_x > midline) if missing_side == "left" else (mirrored_x < midline)
    out = hu.copy()
    out[z[keep], y[keep], mirrored_x[keep]] = hu[z[keep], y[keep], x[keep]]
    return out
