"""The report's dense-lung section and its flags (algorithm/report/dense_share.py, issue 31)."""

from __future__ import annotations

import numpy as np

from algorithm.dense_lung import DenseLung
from algorithm.labels import LOBES, Lobe
from algorithm.report.dense_share import DENSE_LOBE_PERCENT, EFFUSION_FLAG_ML, dense_flags, dense_section


def _measures(consolidation_percent: dict[str, float]) -> dict:
    return {Lobe(v).name: {"volume_ml": 1000.0, "consolidation_percent": consolidation_percent.get(Lobe(v).name, 0.0)}
            for v in LOBES}


def _dense(recovered: dict[str, float], effusion: dict[str, float]) -> DenseLung:
    return DenseLung(np.zeros((1, 1, 1), np.uint8), recovered, effusion)


def test_section_gives_dense_and_inferred_volumes_per_lobe():
    section = dense_section(_measures({"RLL": 12.5}), _dense({"RLL": 40.0}, {"left": 0.0, "right": 80.0}))
    rll = section["lobes"]["RLL"]
    assert rll == {"dense_ml": 125.0, "dense_percent": 12.5, "inferred_ml": 40.0, "inferred_percent": 4.0}
    assert section["effusion_ml"] == {"left": 0.0, "right": 80.0}
    assert set(section["lobes"]) == {Lobe(v).name for v in LOBES}


def test_flags_a_dense_lobe_and_a_large_effusion_only():
    measures = _measures({"LLL": DENSE_LOBE_PERCENT + 1.0, "RLL": DENSE_LOBE_PERCENT - 1.0})
    flags = dense_flags(measures, _dense({}, {"left": EFFUSION_FLAG_ML - 1.0, "right": EFFUSION_FLAG_ML + 20.0}))
    assert [(f["code"], f.get("lobe") or f.get("side")) for f in flags] == [("dense_lobe", "LLL"), ("pleural_effusion", "right")]
    assert all(f["severity"] == "warning" for f in flags)
    assert dense_flags(measures, None) == []


def test_a_missing_lobe_has_no_dense_share():
    measures = _measures({})
    measures["RML"] = {"volume_ml": 0.0, "consolidation_percent": None}
    entry = dense_section(measures, _dense({"RML": 0.0}, {"left": 0.0, "right": 0.0}))["lobes"]["RML"]
    assert entry["dense_ml"] is None and entry["inferred_percent"] is None
