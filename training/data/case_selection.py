"""Which labelled scans are fit to train on, and why the others are left out.

A case is kept when
1. all five lobes are labelled (a scan of the abdomen or the neck holds none or some of them);
2. the lungs are not cut by the field of view: on each of the six faces of the image, the lung
   voxels lying on that face cover at most ``max_edge_percent`` (5 %) of the largest lung
   cross-section parallel to it. A complete scan may graze a face with the tip of an apex or of a
   costophrenic recess (a few per cent on thick slices); a scan range that stops inside the lung
   leaves a face crossing a large part of it (the cut apex of a phantom with ``range_cut``:
   over 40 %). The in-plane faces catch a reconstruction field of view narrower than the chest.
3. the image is in HU (``algorithm.report.quality_flags``'s air-peak test), since training clamps HU.
The reason of a left-out case is one line naming the rule and the number behind it. Every case
also gets the quality flags of ``algorithm.report.quality_flags`` (lobe volumes and shares outside their usual
range, thick slices, noise...), recorded for the user to filter on, not used to leave cases out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from algorithm.labels import LOBES
from algorithm.report.quality_flags import _AXIS_ENDS, _axis_letters, assess_quality


@dataclass(frozen=True)
class SelectionRules:
    """Where a case is left out (recorded in every case's record)."""

    max_edge_percent: float = 5.0  # lung on one image face / largest lung cross-section parallel to it


@dataclass
class Selection:
    keep: bool
    reason: str  # empty when kept
    volumes_ml: dict[str, float]  # per lobe (LUL ... RML) and "lungs"
    edge_percent: dict[str, float]  # face name ("superior edge" ...) -> lung share of the face
    flags: list[str] = field(default_factory=list)  # quality flag codes, ":LOBE" where they concern one


def lobe_volumes_ml(labels_zyx: np.ndarray, voxel_ml: float) -> dict[str, float]:
    """Volume of each lobe and of both lungs (mL)."""
    # one comparison per lobe: bincount would first widen 512 x 512 x 300 uint8 labels to int64 (2 s)
    volumes = {lobe.name: round(float(np.count_nonzero(labels_zyx == lobe)) * voxel_ml, 2) for lobe in LOBES}
    volumes["lungs"] = round(sum(volumes[lobe.name] for lobe in LOBES), 2)
    return volumes


def edge_percent(image: sitk.Image, lung_zyx: np.ndarray) -> dict[str, float]:
    """For each image face, the lung voxels on it as a percentage of the largest lung cross-section
    parallel to it (0 where the lungs do not touch it)."""
    letters = _axis_letters(image)  # orientation of index axes x, y, z
    shares = {}
    for array_axis in range(3):
        other = tuple(a for a in range(3) if a != array_axis)
        area = lung_zyx.sum(axis=other)
        largest = max(int(area.max(initial=0)), 1)
        low, high = _AXIS_ENDS[letters[2 - array_axis]]
        shares[f"{low} edge"] = round(100.0 * int(area[0]) / largest, 2)
        shares[f"{high} edge"] = round(100.0 * int(area[-1]) / largest, 2)
    return shares


def _quality_flags(image: sitk.Image, labels_zyx: np.ndarray, volumes: dict[str, float]) -> list[dict]:
    lungs = volumes["lungs"]
    measures = {
        lobe.name: {
            "volume_ml": volumes[lobe.name],
            "share_of_lung_percent": round(100.0 * volumes[lobe.name] / lungs, 2) if lungs else None,
        }
        for lobe in LOBES
    }
    mask = sitk.GetImageFromArray(labels_zyx)
    mask.CopyInformation(image)
    return assess_quality(image, mask, measures).flags


def select_case(image: sitk.Image, labels_zyx: np.ndarray, rules: SelectionRules) -> Selection:
    """Keep or leave out one case (labels already in the paper's values, on the image grid)."""
    voxel_ml = float(np.prod(image.GetSpacing())) / 1000.0
    volumes = lobe_volumes_ml(labels_zyx, voxel_ml)
    edges = edge_percent(image, labels_zyx > 0)
    selection = Selection(True, "", volumes, edges)
    missing = [lobe.name for lobe in LOBES if volumes[lobe.name] == 0]
    if len(missing) == len(LOBES):
        return _leave_out(selection, "no lobe labelled (not a chest scan?)")
    if missing:
        return _leave_out(selection, f"missing lobe(s): {', '.join(missing)}")
    flags = _quality_flags(image, labels_zyx, volumes)
    selection.flags = [f"{f['code']}:{f['lobe']}" if "lobe" in f else f["code"] for f in flags]
    face, worst = max(edges.items(), key=lambda item: item[1])
    if worst > rules.max_edge_percent:
        return _leave_out(
            selection,
            f"lungs cut by the field of view: the {face} crosses {worst:.1f} % of the largest lung "
            f"cross-section (limit {rules.max_edge_percent:g} %)",
        )
    not_hu = next((f for f in flags if f["code"] == "intensity_not_hu"), None)
    if not_hu is not None:
        return _leave_out(selection, f"image not in HU: {not_hu['message']}")
    return selection


def _leave_out(selection: Selection, reason: str) -> Selection:
    selection.keep, selection.reason = False, reason
    return selection
