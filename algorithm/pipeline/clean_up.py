"""Step 3: the clean-up of the lobes. Every rule is in algorithm/postprocessing.py; this module is
where the pipeline applies them:

- ``clean_up``, on the network grid after the network: one piece per lobe, islands and holes to
  the nearest lobe, air outside the body dropped (and its volume, for the report);
- ``on_scan_grid``, called by the lung step: the same rules once more on the scan's grid where
  that grid is coarser than the network's on some axis (thick slices), because nearest-neighbour
  resampling can cut a thin lobe tip off there;
- ``merge_strays``, called by the fissure step: lung cut off its lobe's main body by the refitted
  borders joins the lobe around it (the lung step's own ``lung_extent`` applies the same rule to
  the lung it adds).

The three run at these three points, not once at the end: each later step reads the lobes the
earlier clean-up left (moving them would change the masks).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from algorithm.inference import NetworkPrediction
from algorithm.postprocessing import clean_labels, merge_stray_pieces, outside_air
from algorithm.preprocessing import PreprocessedScan, skips_network_voxels


@dataclass(frozen=True)
class CleanLobes:
    """The cleaned lobes on the network grid."""

    labels: np.ndarray  # uint8 (Z, Y, X)
    outside_air_removed_ml: float  # network lung in the air around the body that the clean-up removed


def clean_up(prediction: NetworkPrediction, scan: PreprocessedScan) -> CleanLobes:
    """The network's argmax cleaned on its own grid, given the scan it was predicted from."""
    labels = clean_labels(prediction.labels, scan.array)
    return CleanLobes(labels, outside_air_removed_ml(prediction.labels, labels, scan))


def outside_air_removed_ml(predicted: np.ndarray, cleaned: np.ndarray, scan: PreprocessedScan) -> float:
    """Volume of the network's lung labels that the clean-up removed from the air around the body."""
    removed = (predicted > 0) & (cleaned == 0) & outside_air(scan.array)
    return float(removed.sum() * np.prod(scan.spacing_mm_zyx) / 1000.0)


def on_scan_grid(labels: np.ndarray, scan: PreprocessedScan) -> np.ndarray:
    """Lobes on the scan's (reoriented) grid, cleaned again where that grid is coarser than the
    network's (a new array then; else ``labels`` itself)."""
    return clean_labels(labels) if skips_network_voxels(scan) else labels


def merge_strays(labels: np.ndarray) -> None:
    """In place: stray lung pieces join the lobe around them (``postprocessing.merge_stray_pieces``)."""
    merge_stray_pieces(labels)
