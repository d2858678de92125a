"""The fissure step with user points: each marked fissure refitted as a surface through its points,
the others as the fissure mode decides (``fit``: today's fit to the vessel-sparse band; ``network``:
the network's border), and the lobes relabelled by the surfaces (docs/design.md, "Fissure points").

A marked fissure starts from the network's smoothed border and moves by the smoothest displacement
that carries it through the points (``fissure_fit.refit_through_points``): between and beyond the
points it keeps the shape the network (and so the scan) gave it, and the relabelling keeps the
lobe constraints of the fit (only columns where the surface moved change; the RML stays between
the right fissures; the lung's extent never changes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from algorithm.constants import DEFAULT_FISSURES
from algorithm.errors import InputError
from algorithm.fissure_fit import (
    FISSURES,
    NETWORK_SECTION,
    AnchorSettings,
    FissureFit,
    FissureResult,
    FitSettings,
    Surface,
    apply_fit,
    fit_fissures,
    fit_section,
    network_surfaces,
    plane_through_points,
    point_residuals_mm,
    polish_with_evidence,
    refit_through_points,
)
from algorithm.fissure_fit.model import HORIZONTAL, LEFT_OBLIQUE, RIGHT_OBLIQUE
from algorithm.fissure_points.export import final_surfaces, surface_grid_lps
from algorithm.fissure_points.reading import FissurePoints
from algorithm.image_ops import analysis_lattice, vessel_mask
from algorithm.labels import Lobe

LUNG_OF = {LEFT_OBLIQUE: (Lobe.LUL, Lobe.LLL), RIGHT_OBLIQUE: (Lobe.RUL, Lobe.RLL, Lobe.RML), HORIZONTAL: (Lobe.RUL, Lobe.RLL, Lobe.RML)}
POINTS_DEFINITION = (
    "fissures marked by user points are the network's smoothed border moved by the smoothest "
    "displacement through the points (decision 'points'); residual_mm is each point's distance to "
    "the fitted surface along its normal (docs/outputs.md, Fissure points)"
)


def points_in_frame(points: FissurePoints, canonical: sitk.Image, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per marked fissure, its points in the fit's frame ((n, 3) z, y, x mm: ``index * spacing`` of
    the canonical grid). ``InputError`` naming the first point outside the image, outside the lungs
    or in the other lung than its fissure's."""
    spacing = np.array(canonical.GetSpacing()[::-1], float)
    shape = np.array(labels.shape)
    out: dict[str, list] = {}
    for number, point in enumerate(points.points, start=1):
        where = f"fissure point {number} ({point.label}, {point.fissure}, LPS {_mm(point.lps_mm)})"
        index_zyx = np.array(canonical.TransformPhysicalPointToContinuousIndex(point.lps_mm)[::-1])
        if np.any(index_zyx < -0.5) or np.any(index_zyx > shape - 0.5):
            raise InputError(f"{where} lies outside the image (voxel {_mm(index_zyx[::-1])} of {tuple(int(n) for n in shape[::-1])})")
        lobe = _lobe_near(labels, index_zyx)
        if lobe == 0:
            raise InputError(f"{where} lies outside the lungs")
        if lobe not in [int(v) for v in LUNG_OF[point.fissure]]:
            raise InputError(f"{where} lies in the {Lobe(lobe).name}, not in the lung of the {point.fissure} fissure")
        out.setdefault(point.fissure, []).append(index_zyx * spacing)
    return {name: np.array(pts) for name, pts in out.items()}


def _mm(values) -> str:
    return "(" + ", ".join(f"{float(v):.1f}" for v in values) + ")"


def _lobe_near(labels: np.ndarray, index_zyx: np.ndarray) -> int:
    """The lobe at the nearest voxel, else the most common one within one voxel (a point placed on
    the lung's edge counts as inside)."""
    centre = np.clip(np.round(index_zyx).astype(int), 0, np.array(labels.shape) - 1)
    value = int(labels[tuple(centre)])
    if value:
        return value
    box = tuple(slice(max(c - 1, 0), c + 2) for c in centre)
    near = labels[box][labels[box] > 0]
    return int(np.bincount(near).argmax()) if near.size else 0


@dataclass(frozen=True)
class PointsRefinement:
    """The lobes after the fissure step with points, its report section and the final surfaces."""

    labels: np.ndarray  # uint8 (Z, Y, X) on the canonical grid
    section: dict
    surfaces_lps: dict[str, np.ndarray] = field(default_factory=dict)  # fissure -> (n, 3) LPS grid points
    surfaces: dict[str, Surface] = field(default_factory=dict)  # the final surfaces, canonical frame
    starts: dict[str, Surface] = field(default_factory=dict)  # the network's smoothed surfaces


POINT_MODES = ("fit", "network")  # the modes the unmarked fissures may follow


def refine_with_points(
    canonical: sitk.Image,
    labels: np.ndarray,
    points: FissurePoints,
    mode: str = DEFAULT_FISSURES,
    settings: FitSettings | None = None,
    anchor: AnchorSettings | None = None,
) -> PointsRefinement:
    """The fissure step on a canonical (LPS) scan in HU with the marked fissures through the user's
    points; ``labels`` is the lobes on the scan's grid. The unmarked fissures follow ``mode``
    "fit" or "network"; the global search does not take points yet."""
    if mode not in POINT_MODES:
        raise ValueError(f"fissure points work with the fissure modes {POINT_MODES}, not {mode!r}")
    frame = points_in_frame(points, canonical, labels)
    spacing = tuple(float(s) for s in canonical.GetSpacing()[::-1])
    settings, anchor = settings or FitSettings(), anchor or AnchorSettings()
    lattice = analysis_lattice(spacing)
    labels_s = np.asarray(labels[lattice.sample])
    vessels = None
    if mode == "fit" or anchor.evidence:
        hu_s = np.asarray(sitk.GetArrayViewFromImage(canonical)[lattice.sample])
        vessels = vessel_mask(hu_s, labels_s > 0, lattice.spacing_mm)
    if mode == "fit":
        fit = fit_fissures(labels_s, vessels.vessel, lattice.spacing_mm, region=vessels.domain, settings=settings)
        section = fit_section(fit)
    else:
        fit = FissureFit(labels=labels_s, settings=settings)
        fit.fissures = {name: FissureResult(name, "network", "the network's border (fissure mode network)") for name in FISSURES}
        section = dict(NETWORK_SECTION)
    for name, start in network_surfaces(labels_s, lattice.spacing_mm, settings).items():
        fit.network_surfaces.setdefault(name, start)  # the network mode's, for the export and the RML beside a moved oblique
    movable = network_surfaces(labels_s, lattice.spacing_mm, settings, extrapolate=True)
    for name in points.fissures():
        if name not in movable:
            raise InputError(f"the network found no {name} fissure (a lobe beside it is missing): points cannot move it")
        surface = plane_through_points(movable[name], frame[name], anchor)
        if vessels is not None and anchor.evidence:
            oblique = final_surfaces(fit).get(RIGHT_OBLIQUE)
            surface = polish_with_evidence(surface, name, labels_s, vessels.vessel, vessels.domain, lattice.spacing_mm,
                                           frame[name], settings, anchor, oblique)
        surface = refit_through_points(surface, frame[name], anchor)
        fit.network_surfaces[name], fit.surfaces[name] = movable[name], surface
        fit.fissures[name] = _result(name, movable[name], surface, frame[name], labels_s, lattice.spacing_mm)
    section = _with_points(section, fit, points, frame)
    grids = {
        name: surface_grid_lps(surface, name, labels_s, lattice.spacing_mm, canonical)
        for name, surface in final_surfaces(fit).items()
    }
    return PointsRefinement(apply_fit(labels, spacing, fit), section, grids, final_surfaces(fit), dict(fit.network_surfaces))


def _result(name: str, start, surface, pts_mm: np.ndarray, labels_s: np.ndarray, spacing_s) -> FissureResult:
    """The decision record of a fissure placed by points: its shift over its lung's columns."""
    lung = np.isin(labels_s, [int(v) for v in LUNG_OF[name]]).any(axis=0)
    y_mm, x_mm = (np.arange(n) * s for n, s in zip(labels_s.shape[1:], spacing_s[1:]))
    shift = np.abs(surface.height_mm(y_mm, x_mm) - start.height_mm(y_mm, x_mm))[lung]
    worst = float(np.max(np.abs(point_residuals_mm(surface, pts_mm))))
    reason = f"refitted through {len(pts_mm)} user points (largest residual {worst:.2f} mm)"
    return FissureResult(name, "points", reason, mean_shift_mm=float(shift.mean()), max_shift_mm=float(shift.max()))


def _with_points(section: dict, fit: FissureFit, points: FissurePoints, frame: dict[str, np.ndarray]) -> dict:
    """The fissures section with the user-guided fissures, each point and its residual."""
    report = {name: {**res.as_dict(), "user_guided": name in frame} for name, res in fit.fissures.items()}
    guided = {}
    for name, pts_mm in frame.items():
        residual = point_residuals_mm(fit.surfaces[name], pts_mm)
        guided[name] = {
            "points": [{**p.as_dict(), "residual_mm": round(float(r), 2)} for p, r in zip(points.of(name), residual)],
            "median_residual_mm": round(float(np.median(np.abs(residual))), 2),
            "max_residual_mm": round(float(np.max(np.abs(residual))), 2),
        }
    return {
        **section,
        "fissures": report,
        "user_points": {"source": points.source, "definition": POINTS_DEFINITION, "fissures": guided},
    }
