"""The fissure fit's entry points: ``fit_fissures`` (labels and vessels on one grid),
``refine_fissures`` (a canonical scan and its lobes: the vessel mask on the analysis lattice, the
fit there, the full grid relabelled) and ``refine_mask`` (the same on SimpleITK images). The
pipeline's step (algorithm/pipeline/fissures.py) runs ``refine_fissures``."""

from __future__ import annotations

from typing import Callable

import numpy as np
import SimpleITK as sitk

from algorithm.constants import DEFAULT_FISSURES, FISSURE_MODES
from algorithm.fissure_fit.evidence import _lung, Problem
from algorithm.fissure_fit.model import (
    FISSURES,
    HORIZONTAL,
    LEFT_OBLIQUE,
    RIGHT_OBLIQUE,
    FissureFit,
    FissureResult,
    FitSettings,
)
from algorithm.fissure_fit.optimiser import Fitted, fit_one, share_limits
from algorithm.fissure_fit.relabel import apply_fit
from algorithm.image_ops import analysis_lattice, vessel_mask
from algorithm.labels import Lobe
from algorithm.preprocessing import CANONICAL_ORIENTATION, orientation_of, to_canonical


Fitter = Callable[[str, Problem, float], Fitted]  # (fissure, its problem, voxel volume in mL) -> outcome


def fit_fissures(
    labels: np.ndarray,
    vessel: np.ndarray,
    spacing_mm_zyx: tuple[float, float, float],
    region: np.ndarray | None = None,
    settings: FitSettings | None = None,
) -> FissureFit:
    """Fit the three fissures to the vessel-sparse bands and relabel the lobes where the fit wins.

    labels: uint8 lobe labels (``Lobe`` values), [z, y, x] in the LPS frame (z superior).
    vessel: boolean vessel mask on the same grid.
    region: where the band index counts (the lung away from pleura and hilum); default the lobes.
    spacing_mm_zyx: the grid's spacing; heights are ``index * spacing`` (mm), so a sub-lattice
        ``a[::k]`` with spacing ``k * s`` shares the frame of the full grid (see ``apply_fit``).
    Returns new labels (a copy; lung extent unchanged), the decisions and the surfaces.
    """
    settings = settings or FitSettings()
    out = FissureFit(labels=labels, settings=settings)
    return fit_each_fissure(labels, vessel, spacing_mm_zyx, region, fit_one, out)


def fit_each_fissure(
    labels: np.ndarray,
    vessel: np.ndarray,
    spacing_mm_zyx: tuple[float, float, float],
    region: np.ndarray | None,
    fitter: Fitter,
    out: FissureFit,
) -> FissureFit:
    """The three fissures' problems, each solved by ``fitter``, recorded in ``out`` (whose
    ``settings`` they use), and the lobes relabelled: the left oblique fissure, the right oblique
    one, then the horizontal one above the right oblique surface that ``fitter`` chose. The local
    fit (``fit_one``) and the global search (algorithm/fissure_search) share this order and these
    constraints. Arguments as ``fit_fissures``; returns ``out``.
    """
    settings = out.settings
    spacing = tuple(float(s) for s in spacing_mm_zyx)
    region = labels > 0 if region is None else region
    voxel_ml = float(np.prod(spacing)) / 1000.0
    if max(spacing[1:]) > settings.max_inplane_mm:
        # vessels are resolved in plane; on a coarse in-plane grid the band is one voxel wide and
        # the index of a smooth surface no longer agrees with the border index of the labels
        reason = f"in-plane voxels of {max(spacing[1:]):.1f} mm (over {settings.max_inplane_mm:g} mm): too coarse for the band"
        out.fissures = {name: FissureResult(name, "network", reason) for name in FISSURES}
        return out
    left = _lung(labels, (Lobe.LUL, Lobe.LLL), vessel, region, spacing, settings)
    if left is None or min(left.total(f"lobe{int(Lobe.LUL)}").sum(), left.total(f"lobe{int(Lobe.LLL)}").sum()) == 0:
        out.fissures[LEFT_OBLIQUE] = FissureResult(LEFT_OBLIQUE, "network", "a left lobe is missing")
    else:
        net_share = left.total(f"lobe{int(Lobe.LLL)}").sum() / left.total("lung").sum()
        limits = share_limits(net_share, settings.lower_lobe_share)
        fitted = fitter(LEFT_OBLIQUE, Problem(left, (Lobe.LLL,), (Lobe.LUL,), settings, share_limits=limits), voxel_ml)
        _record(out, LEFT_OBLIQUE, fitted)
    _fit_right(labels, vessel, region, spacing, fitter, voxel_ml, out)
    out.labels = apply_fit(labels, spacing, out)
    return out


def _record(out: FissureFit, name: str, fitted: Fitted) -> None:
    out.fissures[name] = fitted.result
    out.surfaces[name] = fitted.fit
    out.network_surfaces[name] = fitted.start
    if fitted.details:
        out.details[name] = fitted.details


def _fit_right(labels, vessel, region, spacing, fitter: Fitter, voxel_ml: float, out: FissureFit) -> None:
    settings = out.settings
    right = _lung(labels, (Lobe.RUL, Lobe.RLL, Lobe.RML), vessel, region, spacing, settings)
    counts = {} if right is None else {v: right.total(f"lobe{int(v)}").sum() for v in (Lobe.RUL, Lobe.RLL, Lobe.RML)}
    if right is None or counts[Lobe.RLL] == 0 or counts[Lobe.RUL] + counts[Lobe.RML] == 0:
        out.fissures[RIGHT_OBLIQUE] = FissureResult(RIGHT_OBLIQUE, "network", "a right lobe is missing")
        out.fissures[HORIZONTAL] = FissureResult(HORIZONTAL, "network", "a right lobe is missing")
        return
    total = right.total("lung").sum()
    limits = share_limits(counts[Lobe.RLL] / total, settings.lower_lobe_share)
    oblique = fitter(
        RIGHT_OBLIQUE,
        Problem(right, (Lobe.RLL,), (Lobe.RUL, Lobe.RML), settings, share_limits=limits, keep=(Lobe.RML, settings.rml_keep)),
        voxel_ml,
    )
    _record(out, RIGHT_OBLIQUE, oblique)
    if counts[Lobe.RML] == 0 or counts[Lobe.RUL] == 0:
        out.fissures[HORIZONTAL] = FissureResult(HORIZONTAL, "network", "the RML or the RUL is missing")
        return
    obl = oblique.chosen
    obl_grid = obl.height_mm(right.axis_mm(1), right.axis_mm(2))
    obl_mm = obl_grid.ravel()[right.columns]
    floor_u = right.u(obl_mm)
    rll = right.at("lung", floor_u)  # right-lung voxels below the oblique fissure, per column
    # the horizontal fissure's band stays out of the oblique fissure's (along its normal)
    slope2 = obl.slope_squared(right.axis_mm(1), right.axis_mm(2))
    band_floor = right.u(obl_mm + settings.band_half_width_mm * np.sqrt(1.0 + slope2.ravel()[right.columns]))
    limits = share_limits(counts[Lobe.RML] / total, settings.rml_share)
    problem = Problem(right, (Lobe.RML,), (Lobe.RUL,), settings, floor_u, band_floor, share_limits=limits, anterior_of=rll)
    _record(out, HORIZONTAL, fitter(HORIZONTAL, problem, voxel_ml))


# ---------------------------------------------------------------------------------------------
# The pipeline's step


NETWORK_SECTION = {"mode": "network", "fissures": None}  # the report when the network's borders stand


def _check_mode(mode: str) -> str:
    if mode not in FISSURE_MODES:
        raise ValueError(f"fissure mode must be one of {FISSURE_MODES}, not {mode!r}")
    return mode


def refine_fissures(
    hu: np.ndarray,
    labels: np.ndarray,
    spacing_mm_zyx: tuple[float, float, float],
    lung: np.ndarray | None = None,
    mode: str = DEFAULT_FISSURES,
    settings: FitSettings | None = None,
) -> tuple[np.ndarray, dict]:
    """The fissure step of the pipeline: (lobe labels, report section) for a canonical (LPS) scan.

    hu, labels (and ``lung``, the scan's lung, default the lobes) share one grid. The vessels are
    issue 20's (``border_index.vessel_mask``: lung above -500 HU away from pleura and hilum) on
    the border index's sub-lattice (every k-th voxel, at most 2.5 mm); the surfaces are fitted
    there and the full grid is relabelled by them. ``mode="network"`` returns the labels as they
    are (the paper's path) and says so.
    """
    if _check_mode(mode) == "network":
        return labels, NETWORK_SECTION
    if mode != "fit":
        raise ValueError(f"refine_fissures runs the local fit only, not {mode!r} (algorithm/pipeline/fissures.py runs every mode)")
    fit = fit_on_lattice(
        hu, labels, spacing_mm_zyx, lung,
        lambda labels_s, vessel, spacing_s, region: fit_fissures(labels_s, vessel, spacing_s, region=region, settings=settings),
    )
    return apply_fit(labels, tuple(float(s) for s in spacing_mm_zyx), fit), fit_section(fit)


LatticeFitter = Callable[[np.ndarray, np.ndarray, tuple[float, float, float], np.ndarray], FissureFit]


def fit_on_lattice(
    hu: np.ndarray,
    labels: np.ndarray,
    spacing_mm_zyx: tuple[float, float, float],
    lung: np.ndarray | None,
    fitter: LatticeFitter,
) -> FissureFit:
    """``fitter(labels, vessel, spacing_mm_zyx, region)`` on the border index's sub-lattice of a
    canonical scan (every k-th voxel, at most 2.5 mm): the vessels there are issue 20's
    (``image_ops.vessel_mask``), the region their domain. ``apply_fit`` relabels the full grid."""
    spacing = tuple(float(s) for s in spacing_mm_zyx)
    lattice = analysis_lattice(spacing)
    labels_s = np.asarray(labels[lattice.sample])
    lung_s = labels_s > 0 if lung is None else np.asarray(lung[lattice.sample], dtype=bool)
    vessels = vessel_mask(np.asarray(hu[lattice.sample]), lung_s, lattice.spacing_mm)
    return fitter(labels_s, vessels.vessel, lattice.spacing_mm, vessels.domain)


FIT_DEFINITION = (
    "each fissure is a smooth height field fitted to the vessel-sparse band from the network's "
    "border; 'fit' where its band index is clearly lower than the network's, else the network's "
    "border stands (docs/design.md, Fissure fit)"
)


def fit_section(fit: FissureFit) -> dict:
    """The report's "fissures" section of a fit."""
    return {"mode": "fit", "definition": FIT_DEFINITION, "fissures": fit.report()}


def refine_mask(image: sitk.Image, mask: sitk.Image, mode: str = DEFAULT_FISSURES) -> tuple[sitk.Image, dict]:
    """``refine_fissures`` on a CT and its lobe mask (SimpleITK images, same grid, any orientation).

    The surfaces are height fields over the patient's axial plane, so the arrays are taken in the
    canonical LPS orientation (an exact axis permutation, a copy only when the scan is not LPS
    already) and the relabelled mask goes back to the input's orientation and geometry. The fit
    alone: the pipeline's fissure step (algorithm/pipeline/fissures.py) also merges the stray
    pieces the refitted borders cut off, so measurements of the shipped step call that one.
    """
    if _check_mode(mode) == "network":
        return mask, NETWORK_SECTION
    canonical = orientation_of(image) == CANONICAL_ORIENTATION
    image_c = image if canonical else to_canonical(image)
    mask_c = mask if canonical else to_canonical(mask)
    spacing = tuple(float(s) for s in image_c.GetSpacing()[::-1])
    labels = sitk.GetArrayViewFromImage(mask_c)
    out, section = refine_fissures(sitk.GetArrayViewFromImage(image_c), labels, spacing, mode=mode)
    if out is labels:
        return mask, section
    refined = sitk.GetImageFromArray(out)
    refined.CopyInformation(mask_c)
    for key in mask.GetMetaDataKeys():
        refined.SetMetaData(key, mask.GetMetaData(key))
    if not canonical:
        refined = sitk.DICOMOrient(refined, orientation_of(mask))
    return refined, section
