"""The two fixed phantoms of the shipped-weights regression test, shared by the test and by the
script that records its expected values (``python -m tests.shipped_weights_cases``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import SimpleITK as sitk

from algorithm.network.checkpoint import DEFAULT_WEIGHTS
from algorithm.segmenter import LobeSegmenter
from training.evaluation.metrics import mean_lobe_iou

EXPECTED_PATH = Path(__file__).resolve().parent / "data" / "shipped_weights_expected.json"
# Cases of the held-out test set (make results): seed i has pathology PATHOLOGIES[i % 4].
PATHOLOGIES = ("none", "copd", "covid", "effusion")
CASE_SEEDS = (0, 2)  # a healthy and a COVID-19 phantom


def phantom(seed: int):
    from training.phantoms import PhantomOptions, generate_case

    # The shipped weights were measured on the v1 test set (docs/results.md): keep generating v1.
    options = PhantomOptions(size_xyz=(96, 96, 80), pathology=PATHOLOGIES[seed % len(PATHOLOGIES)], version=1)
    return generate_case(seed, options)


def measure(weights: Path = DEFAULT_WEIGHTS) -> dict:
    segmenter = LobeSegmenter(weights, "cpu")
    ious = {}
    for seed in CASE_SEEDS:
        case = phantom(seed)
        result = segmenter(case.image)
        ious[str(seed)] = round(mean_lobe_iou(sitk.GetArrayViewFromImage(result.mask), sitk.GetArrayViewFromImage(case.label)), 4)
    return {"sha256": segmenter.weights.sha256, "mean_iou_per_case": ious}


if __name__ == "__main__":
    record = measure()
    EXPECTED_PATH.write_text(json.dumps(record, indent=2) + "\n")
    json.dump(record, sys.stdout, indent=2)
