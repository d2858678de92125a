"""Step 4b: a second look of the network at a chest with one airless lung (issue 29).

Shown a chest whose one side is airless, the network divided the remaining lung into the lobes
of both sides and lost its fissures (the issue's scan: RUL IoU 0.15). When the lung step finds one
lung airless and the other present (algorithm/laterality.py), the network runs once more on the
scan with the mirror image of the present lung on the airless side; the lung's extent still comes
from the real scan, so the mirrored lung is dense there and none of its lobes is kept. Every other
scan passes through unchanged, at no cost.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import SimpleITK as sitk

from algorithm.inference import NetworkPrediction
from algorithm.laterality import laterality, mirrored_lung_hu, needs_second_look
from algorithm.lung_extent import LungExtentSettings
from algorithm.pipeline.clean_up import CleanLobes, clean_up
from algorithm.pipeline.lung import ScanLobes, lung_from_scan
from algorithm.pipeline.network import Predict, Progress, run_network
from algorithm.preprocessing import PreprocessedScan, network_array


@dataclass(frozen=True)
class LungsLook:
    """What the network step, the clean-up and the lung step handed on, after the second look if any."""

    prediction: NetworkPrediction
    cleaned: CleanLobes
    lobes: ScanLobes


def second_look(scan: PreprocessedScan, first: LungsLook, predict: Predict, progress: Progress,
                lung_settings: LungExtentSettings | None = None) -> LungsLook:
    """``first`` unless one lung is airless beside a present one; then the network's answer on the
    scan completed with the mirrored lung, cleaned and placed on the real scan's lung."""
    sides = first.lobes.sides
    missing = needs_second_look(sides) if sides is not None else None
    if missing is None:
        return first
    hu = sitk.GetArrayViewFromImage(scan.canonical)
    spacing_x_mm = scan.canonical_spacing_mm_zyx[2]
    completed = mirrored_lung_hu(np.asarray(hu), first.lobes.labels, missing, sides.midline_x_mm, spacing_x_mm)
    shown = replace(scan, array=network_array(completed, scan.array.shape))
    prediction = run_network(shown, predict, progress)
    cleaned = clean_up(prediction, scan)  # the clean-up and the lung's extent read the real scan
    second = lung_from_scan(scan, prediction, cleaned, lung_settings)
    # only the first look's lung: the lung step may keep dense tissue the network labelled (the
    # mirrored lung); the sides are judged again on what is kept, so the airless side stays so
    within = np.where(first.lobes.labels > 0, second.labels, 0).astype(np.uint8)
    sides_again = laterality(np.asarray(hu), within, scan.canonical_spacing_mm_zyx, prediction.probabilities)
    return LungsLook(prediction, cleaned, ScanLobes(sides_again.labels, second.extent, sides_again, second.dense))
