"""Regression: the shipped weights on two fixed phantoms keep the accuracy recorded with them.

A change that breaks preprocessing, the network, tiling, clean-up or the weights moves these
numbers. New weights: record new values with ``python -m tests.shipped_weights_cases``.
"""

from __future__ import annotations

import json

import pytest

from algorithm.network.checkpoint import DEFAULT_WEIGHTS, load_checkpoint

pytest.importorskip("training.phantoms")

from shipped_weights_cases import EXPECTED_PATH, measure  # noqa: E402


def test_shipped_weights_reach_their_recorded_accuracy():
    if not DEFAULT_WEIGHTS.exists():
        pytest.fail(f"no shipped weights at {DEFAULT_WEIGHTS}")
    expected = json.loads(EXPECTED_PATH.read_text())
    assert load_checkpoint(DEFAULT_WEIGHTS).sha256 == expected["sha256"], (
        "the shipped weights changed: record their values with python -m tests.shipped_weights_cases"
    )
    measured = measure()
    for seed, iou in expected["mean_iou_per_case"].items():
        assert measured["mean_iou_per_case"][seed] == pytest.approx(iou, abs=0.02), seed
