"""Fit each fissure to the scan: smooth height fields through the vessel-sparse bands.

Vessels and bronchi do not cross the fissures, so on CT a band along a correct fissure holds few
vessels even where the fissure itself is too thin to see (the border vessel index). This module
moves the network's fissures to where that band is emptiest, as little as the evidence requires.

Model (docs/design.md, "Fissure fit"): each fissure is a height field z = f(y, x) in the LPS frame
(z superior, y posterior, x to the patient's left; all in mm, ``index * spacing``), a uniform
cubic B-spline on a coarse control grid, as the phantom generator models fissures. A lung voxel
lies above or below each surface; the lobes follow:

- left lung: LUL above the left oblique fissure, LLL below;
- right lung: RLL below the right oblique fissure; above it, RML below the horizontal fissure and
  RUL above it. The RML is thus always bounded by both right fissures and lies below the RUL; the
  optimiser also keeps it anterior to the RLL and its share plausible.

Cost of a surface (lower is better), evaluated on working columns (``column_spacing_mm`` in plane,
``slice_spacing_mm`` along z) from per-column cumulative counts, so one evaluation costs
O(columns):

    J = band index + move_weight * share of the lung relabelled + bend_weight * bending

The band index is the vessel share within ``band_half_width_mm`` (measured along the surface
normal) of the surface, over the vessel share of the whole lung (issue 20's border vessel index
restricted to the caller's ``region``). The optimiser is deterministic: the smooth least-squares
height field through the network's border, then a grid search over planes added to it (level and
two tilts), then coordinate descent on the control points with halving steps.

Decision: a fitted fissure replaces the network's only when its index is clearly lower
(``accept_ratio`` and ``min_index_drop``) and the band holds enough vessels to judge
(``min_band_vessel_ml``); otherwise the network's border stands, with the reason reported.

The package, by what a change touches (docs/design.md, "Layout of algorithm/"):

- ``model``: the fissures, ``FitSettings``, the B-spline height field ``Surface`` and the results;
- ``evidence``: one lung's per-column cumulative counts and a surface's band, relabelling and
  feasibility (``Problem``);
- ``optimiser``: the cost, the start through the network's border, the search, the decision;
- ``relabel``: the labels by the accepted surfaces on any grid of the frame;
- ``api``: ``fit_fissures``, ``refine_fissures`` (what the pipeline's fissure step runs) and
  ``refine_mask``; ``fit_each_fissure`` and ``fit_on_lattice`` run another fitter of one fissure
  (the global search, algorithm/fissure_search) in the same order, constraints and lattice.
- ``anchored``: public hooks for user points (algorithm/fissure_points/): the network's smoothed
  fissures alone (``network_surfaces``) and one height field refitted through anchor points.

Every name is importable from ``algorithm.fissure_fit`` itself; modules built on the fit
(algorithm/fissure_search) use only the public ones (``Problem``, ``Fitted``, ``network_start``,
``local_search``, ``band_evidence``, ``fit_each_fissure``, ``fit_on_lattice``, ...).
"""

from algorithm.fissure_fit.model import (  # noqa: F401
    FISSURES,
    FissureFit,
    FissureResult,
    FitSettings,
    ACCEPTED_DECISIONS,
    HORIZONTAL,
    LEFT_OBLIQUE,
    RIGHT_OBLIQUE,
    Surface,
    _basis,
    _bspline3,
    _knots,
)
from algorithm.fissure_fit.evidence import (  # noqa: F401
    Evaluation,
    _Lung,
    Problem,
    _Stack,
    _block_sum,
    _lung,
)
from algorithm.fissure_fit.optimiser import (  # noqa: F401
    LEAST_SQUARES_SMOOTHING,
    Fitted,
    _active_points,
    _anchored_cost,
    _bending,
    _cost,
    _descend,
    band_evidence,
    band_excess,
    fit_one,
    network_start,
    _interp_rows,
    _least_squares,
    _network_targets,
    _plane_search,
    local_search,
    share_limits,
)
from algorithm.fissure_fit.relabel import (  # noqa: F401
    apply_fit,
    _column_heights,
    _fissure_columns,
    _relabel_right,
    _set,
    _slabs,
    _voxels_between,
)
from algorithm.fissure_fit.api import (  # noqa: F401
    NETWORK_SECTION,
    Fitter,
    LatticeFitter,
    fit_each_fissure,
    fit_fissures,
    fit_section,
    fit_on_lattice,
    refine_fissures,
    refine_mask,
    _check_mode,
    _fit_right,
    _record,
)
# what the single module imported and callers may have taken from it
from algorithm.image_ops import lattice_steps, vessel_mask  # noqa: F401,E402
from algorithm.fissure_fit.anchored import (  # noqa: F401,E402
    AnchorSettings,
    network_surfaces,
    plane_through_points,
    point_residuals_mm,
    polish_with_evidence,
    refit_through_points,
)
