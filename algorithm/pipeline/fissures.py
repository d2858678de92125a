"""Step 5: each fissure refitted to the vessel-sparse band of the scan where the evidence is clear
(algorithm/fissure_fit/, after the lung's extent is settled), then the stray pieces the refitted
borders cut off merged (``clean_up.merge_strays``). ``mode="network"`` keeps the network's
borders (the paper's path); ``mode="global"`` searches each fissure over its anatomical range
(algorithm/fissure_search, issue 30); the merge runs in every mode."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from algorithm.constants import DEFAULT_FISSURES
from algorithm.fissure_fit import refine_fissures
from algorithm.fissure_points.fit import refine_with_points
from algorithm.fissure_points.reading import FissurePoints
from algorithm.fissure_search import GLOBAL_MODE, refine_global
from algorithm.pipeline.clean_up import merge_strays


@dataclass(frozen=True)
class FittedLobes:
    """The lobes after the fissure step, and what it did (the report's "fissures" section)."""

    labels: np.ndarray  # uint8 (Z, Y, X) on the canonical grid
    section: dict
    surfaces_lps: dict[str, np.ndarray] = field(default_factory=dict)  # with user points: the fissures' grids


def refine_lobes(
    canonical: sitk.Image, labels: np.ndarray, mode: str = DEFAULT_FISSURES, points: FissurePoints | None = None
) -> FittedLobes:
    """The fissure step on a canonical (LPS) scan in HU and its lobes on the same grid; with user
    ``points`` the marked fissures pass through them (algorithm/fissure_points/)."""
    surfaces: dict[str, np.ndarray] = {}
    hu = sitk.GetArrayViewFromImage(canonical)
    spacing_mm_zyx = tuple(float(s) for s in reversed(canonical.GetSpacing()))
    if points is not None:
        guided = refine_with_points(canonical, labels, points, mode)
        refined, section, surfaces = guided.labels, guided.section, guided.surfaces_lps
    elif mode == GLOBAL_MODE:
        refined, section = refine_global(hu, labels, spacing_mm_zyx)
    else:
        refined, section = refine_fissures(hu, labels, spacing_mm_zyx, mode=mode)
    if refined is labels:  # nothing was refitted: the merge works on a copy, never on its input
        refined = labels.copy()
    merge_strays(refined)
    return FittedLobes(refined, section, surfaces)
