"""The report that goes with a lobe mask: one dataclass, built once, never patched afterwards.

Its ``to_dict()`` is the body of ``NAME_lobes.json`` and of the container's
``pulmonary-lobe-volumes.json`` (docs/outputs.md); the front ends put the case name and input
description before it and the run times after it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields

import numpy as np
import SimpleITK as sitk

from algorithm.version import __version__
from algorithm.labels import label_map
from algorithm.laterality import Laterality
from algorithm.dense_lung import DenseLung
from algorithm.lung_extent import LungExtent
from algorithm.report.dense_share import dense_flags, dense_section
from algorithm.report.border_index import border_flags, border_report
from algorithm.report.density import lobe_measures
from algorithm.report.lobe_shares import share_report
from algorithm.report.quality_flags import QualityLimits, assess_quality, fissure_flags
from algorithm.report.volumes import volumes_ml

SOFTWARE = {"name": "ctsunet-lobes", "version": __version__}
LOW_CONFIDENCE_BELOW = 0.5  # winning softmax probability under which a lung voxel counts as unsure
# sections written only when their step did something, so that the JSON of an ordinary scan keeps
# the keys it had (issue 29: a tilted scan's resampling)
OMITTED_WHEN_NONE = frozenset({"axis_alignment"})


@dataclass(frozen=True)
class WeightsInfo:
    """Which weights ran: where from, their sha256, what they were trained on."""

    path: str
    sha256: str
    trained_on: str = "unknown"


@dataclass(frozen=True)
class NetworkRun:
    """How the network ran on a case: its grid, the stage-II tiles and the arithmetic."""

    spacing_mm_zyx: tuple[float, float, float]
    stage2_tiles: int
    stage2_tile_out_zyx: tuple[int, int, int] | None
    precision: str  # "float32", "bfloat16" or "float16"


@dataclass(frozen=True)
class LobeReport:
    """Volumes, per-lobe density measures, quality flags and provenance of one segmentation."""

    label_map: dict
    volumes_ml: dict[str, float]
    input_geometry: dict
    network_grid: NetworkRun
    weights: WeightsInfo
    device: str
    low_confidence_lung_share: float
    outside_air_removed_ml: float
    measures: dict
    quality_flags: list[dict]
    quality_estimates: dict
    border_vessel_index: dict  # the vessel-sparse band along each fissure (report/border_index.py)
    fissures: dict | None = None  # what the fissure step did (fissure_fit/; docs/outputs.md)
    network_unlabelled_lung_share: float = 0.0  # of the air-filled lung, left background by the network
    lung_extent: dict | None = None  # what the lung's extent from the scan found (lung_extent.py)
    lobe_shares: dict | None = None  # each lobe's share beside the published population (lobe_shares.py)
    lungs: dict | None = None  # each lung's side and status from anatomy (laterality.py)
    axis_alignment: dict | None = None  # a tilted scan's axis-aligned grid (preprocessing.AxisAlignedGrid)
    dense_lung: dict | None = None  # dense lung in the lobes, effusion kept out (dense_lung.py, issue 31)
    warnings: list[str] = field(default_factory=list)
    software: dict = field(default_factory=lambda: dict(SOFTWARE))

    def flags_of(self, severity: str) -> list[dict]:
        """The quality flags of one severity ("error" or "warning")."""
        return [flag for flag in self.quality_flags if flag.get("severity") == severity]

    def to_dict(self) -> dict:
        """A JSON-ready copy (the key order of the written JSON: software first)."""
        out = {"software": dict(self.software)}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "software" or (value is None and f.name in OMITTED_WHEN_NONE):
                continue
            if isinstance(value, (NetworkRun, WeightsInfo)):
                value = {k: list(v) if isinstance(v, tuple) else v for k, v in vars(value).items()}
            out[f.name] = copy.deepcopy(value)
        return out


def input_geometry(image: sitk.Image) -> dict:
    return {
        "size_xyz": list(image.GetSize()),
        "spacing_mm_xyz": [float(s) for s in image.GetSpacing()],
        "origin_mm_xyz": [float(s) for s in image.GetOrigin()],
        "direction": [float(d) for d in image.GetDirection()],
    }


def low_confidence_share(labels_zyx: np.ndarray, confidence_zyx: np.ndarray) -> float:
    """Share of the lung voxels (network grid) whose winning probability is below 0.5."""
    lung = labels_zyx > 0
    return float(np.mean(confidence_zyx[lung] < LOW_CONFIDENCE_BELOW)) if lung.any() else 0.0


def build_report(
    image: sitk.Image,
    mask: sitk.Image,
    network: NetworkRun,
    weights: WeightsInfo,
    device: str,
    low_confidence: float,
    outside_air_ml: float = 0.0,
    warnings: list[str] | None = None,
    fissures: dict | None = None,
    extent: LungExtent | None = None,
    axis_alignment: dict | None = None,
    sides: Laterality | None = None,
    dense: DenseLung | None = None,
) -> LobeReport:
    """Measure ``mask`` on ``image`` (both on the input grid) and assess its quality; ``extent``:
    what the lung-extent step found (its share of lung the network missed is flagged);
    ``axis_alignment``: the grid a tilted scan was resampled onto, if it was; ``sides``: each
    lung's side and status from anatomy (its flags join the quality flags)."""
    unlabelled = extent.network_unlabelled_share if extent is not None else 0.0
    measures = lobe_measures(image, mask)
    limits = QualityLimits()
    quality = assess_quality(image, mask, measures, low_confidence, limits=limits, outside_air_ml=outside_air_ml,
                             network_unlabelled_share=unlabelled)
    borders = border_report(image, mask)
    return LobeReport(
        label_map=label_map(),
        volumes_ml=volumes_ml(mask),
        input_geometry=input_geometry(image),
        network_grid=network,
        weights=weights,
        device=device,
        low_confidence_lung_share=round(low_confidence, 4),
        outside_air_removed_ml=round(outside_air_ml, 1),
        measures=measures,
        quality_flags=quality.flags + (sides.flags() if sides is not None else []) + border_flags(borders)
        + fissure_flags(fissures) + dense_flags(measures, dense),
        quality_estimates=quality.estimates,
        border_vessel_index=borders,
        fissures=fissures,
        network_unlabelled_lung_share=round(unlabelled, 4),
        lung_extent=None if extent is None else {
            "aerated_lung_ml": round(extent.aerated_lung_ml, 1),
            "network_unlabelled_lung_share": round(unlabelled, 4),
            "airway_excluded_ml": round(extent.airway_ml, 1),
            "stray_relabelled_ml": round(extent.stray_relabelled_ml, 1),
            "work_block_zyx": list(extent.work_block_zyx),
        },
        lobe_shares=share_report(measures, limits.lobe_share_range_percent),
        lungs=None if sides is None else sides.section(),
        axis_alignment=axis_alignment,
        dense_lung=None if dense is None else dense_section(measures, dense),
        warnings=list(warnings or []),
    )
