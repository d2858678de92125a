"""Step 4: the lung's extent from the scan on the scan's own (reoriented) grid, each lung voxel's
lobe from the network (algorithm/lung_extent.py), then the scan-grid clean-up, then each lung's
lobes from its own side of the body (algorithm/laterality.py, issue 29), then the dense lung
between the aerated lung and the chest wall added to its lobe (algorithm/dense_lung.py, issue 31)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from algorithm.dense_lung import DenseLung, recover_dense_lung
from algorithm.inference import NetworkPrediction
from algorithm.laterality import Laterality, laterality
from algorithm.lung_extent import LungExtent, LungExtentSettings, NetworkLobes, lung_extent
from algorithm.pipeline.clean_up import CleanLobes, on_scan_grid
from algorithm.preprocessing import PreprocessedScan


@dataclass(frozen=True)
class ScanLobes:
    """The lobes on the canonical (LPS) input grid, and what the lung step found."""

    labels: np.ndarray  # uint8 (Z, Y, X), cleaned
    extent: LungExtent  # the step's findings (the report's "lung_extent" section)
    sides: Laterality | None = None  # each lung's side from anatomy (the report's "lungs" section)
    dense: DenseLung | None = None  # dense lung added, effusion kept out (the report's "dense_lung" section)


def lung_from_scan(
    scan: PreprocessedScan,
    prediction: NetworkPrediction,
    cleaned: CleanLobes,
    settings: LungExtentSettings | None = None,
) -> ScanLobes:
    """The lung from ``scan.canonical`` (in HU), the lobes from the cleaned network labels and the
    network's probabilities; ``settings`` default to the shipped ``LungExtentSettings()``."""
    hu = sitk.GetArrayViewFromImage(scan.canonical)
    network = NetworkLobes(cleaned.labels, prediction.probabilities)
    extent = lung_extent(hu, scan.canonical_spacing_mm_zyx, network, settings)
    sides = laterality(hu, on_scan_grid(extent.labels, scan), scan.canonical_spacing_mm_zyx, prediction.probabilities)
    dense = recover_dense_lung(hu, sides.labels, scan.canonical_spacing_mm_zyx)
    return ScanLobes(dense.labels, extent, sides, dense)
