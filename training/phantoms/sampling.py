"""All parameters of one phantom case: the v1 draws of ``config`` and, for version 2, the
draws of ``config_v2`` on top.

Apart from ``config`` so that ``config_v2`` (which builds on ``config``'s parameter classes) and
``config`` do not import each other: the one place that knows both versions is this module.
"""

from __future__ import annotations

from .config_v2 import adjust_body, adjust_lungs, adjust_scan, hyperinflate, sample_v2
from .config import CaseParams, PhantomOptions, fit_to_fov, sample_body, sample_lungs, sample_pathology, sample_scan


def sample_case(seed: int, options: PhantomOptions) -> CaseParams:
    """All parameters of case ``seed`` (version 2 adds its own draws, see ``config_v2``)."""
    body = sample_body(seed)
    lungs = sample_lungs(seed)
    pathology = sample_pathology(seed, options)
    v2 = None
    if options.version == 2:
        v2 = sample_v2(seed, pathology)
        body = adjust_body(seed, body, v2.anatomy)
        body = hyperinflate(body, v2.hyperinflation)
        lungs = adjust_lungs(seed, lungs, v2.anatomy)
    scan = sample_scan(seed, options, body)
    if v2 is not None:
        scan = adjust_scan(seed, scan, body)
    fov_x_mm, fov_y_mm = scan.size_xyz[0] * scan.spacing_mm[0], scan.size_xyz[1] * scan.spacing_mm[1]
    if options.version == 1:
        body = fit_to_fov(body, min(fov_x_mm, fov_y_mm))
    else:  # v2 (changed in issue 17): width against the L-R side, depth against the A-P side
        body = fit_to_fov(body, fov_x_mm, fov_y_mm)
    return CaseParams(
        seed=int(seed),
        body=body,
        lungs=lungs,
        scan=scan,
        pathology=pathology,
        version=options.version,
        v2=v2,
    )
