"""The fitted fissure surfaces as 3D Slicer markups: one point list per fissure, a grid of control
points on the surface where it runs through its lung, in LPS mm (``NAME_fissures.mrk.json``).

Opened next to the scan in Slicer, a surface can be checked against the CT; points moved or added
there and saved come back through ``reading.read_points`` (the markup's name is the fissure's).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from algorithm.fissure_fit import FissureFit, Surface
from algorithm.fissure_fit.model import FISSURES, HORIZONTAL, LEFT_OBLIQUE, RIGHT_OBLIQUE
from algorithm.io.writing import write_json
from algorithm.labels import Lobe

MARKUPS_SCHEMA = (
    "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/Schema/"
    "markups-schema-v1.0.3.json#"
)
GRID_STEP_MM = 15.0  # spacing of the exported control points: a fissure at the fit's smoothness
# where a fissure's surface point must lie for it to be shown: the lobes it separates
SIDES = {LEFT_OBLIQUE: (Lobe.LUL, Lobe.LLL), RIGHT_OBLIQUE: (Lobe.RUL, Lobe.RLL, Lobe.RML), HORIZONTAL: (Lobe.RUL, Lobe.RML)}


def final_surfaces(fit: FissureFit) -> dict[str, Surface]:
    """The surface that bounds the lobes, per fissure: the accepted one, else the network's."""
    out = {}
    for name in FISSURES:
        surface = fit.surfaces.get(name) if fit.accepted(name) else fit.network_surfaces.get(name)
        if surface is not None:
            out[name] = surface
    return out


def surface_grid_lps(
    surface: Surface,
    fissure: str,
    labels: np.ndarray,
    spacing_mm_zyx: tuple[float, float, float],
    canonical: sitk.Image,
    step_mm: float = GRID_STEP_MM,
) -> np.ndarray:
    """(n, 3) LPS points of ``surface`` on a ``step_mm`` grid over the axial plane, kept where the
    surface passes through the fissure's lobes in ``labels`` (a grid whose voxel i lies at
    ``i * spacing`` mm of the canonical image's frame)."""
    spacing = np.array(spacing_mm_zyx, float)
    y_mm = np.arange(0.0, labels.shape[1] * spacing[1], step_mm)
    x_mm = np.arange(0.0, labels.shape[2] * spacing[2], step_mm)
    heights = surface.height_mm(y_mm, x_mm)
    yy, xx = np.meshgrid(y_mm, x_mm, indexing="ij")
    frame = np.stack([heights.ravel(), yy.ravel(), xx.ravel()], axis=1)
    index = np.round(frame / spacing).astype(int)
    inside = np.all((index >= 0) & (index < np.array(labels.shape)), axis=1)
    index, frame = index[inside], frame[inside]
    keep = np.isin(labels[tuple(index.T)], [int(v) for v in SIDES[fissure]])
    full_spacing = np.array(canonical.GetSpacing()[::-1], float)
    return np.array(
        [canonical.TransformContinuousIndexToPhysicalPoint(tuple((p / full_spacing)[::-1])) for p in frame[keep]]
    ).reshape(-1, 3)


def fissure_markups(grids_lps: dict[str, np.ndarray]) -> dict:
    """A Slicer Markups JSON document: one point list per fissure, named after it, LPS mm."""
    markups = []
    for name, points in grids_lps.items():
        controls = [
            {"id": str(i), "label": f"{name}-{i}", "position": [round(float(v), 3) for v in p], "locked": True,
             "selected": True, "visibility": True, "positionStatus": "defined"}
            for i, p in enumerate(points, start=1)
        ]
        markups.append({
            "type": "Fiducial", "coordinateSystem": "LPS", "coordinateUnits": "mm", "name": name,
            "locked": True, "labelFormat": "%N-%d", "controlPoints": controls,
            "display": {"pointLabelsVisibility": False, "glyphScale": 1.0},
        })
    return {"@schema": MARKUPS_SCHEMA, "markups": markups}


def write_fissure_markups(grids_lps: dict[str, np.ndarray], path: Path) -> None:
    """Write ``fissure_markups`` atomically."""
    write_json(fissure_markups(grids_lps), path)
