"""The arithmetic of the benchmark reports (the measurements themselves are not tests)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.inference import mean_lobe_iou
from benchmarks.tiling import summarize, to_markdown


def test_mean_lobe_iou_counts_only_lobes_present():
    a = np.zeros((4, 4, 4), np.uint8)
    a[:2] = 1
    b = a.copy()
    b[:1] = 2  # half of lobe 1 became lobe 2
    assert mean_lobe_iou(a, a) == 1.0
    assert mean_lobe_iou(a, b) == pytest.approx((0.5 + 0.0) / 2)


def _row(name, stage2_s, agreement, truth):
    return {"tiling": name, "stage2_s": stage2_s, "tiles": 4, "tile_out_zyx": [44, 44, 44],
            "agreement_iou": agreement, "truth_iou": truth}


def test_tiling_summary_is_relative_to_the_reference_row_of_each_case():
    per_case = [
        [_row("reference", 100.0, 1.0, 0.80), _row("fast", 10.0, 0.98, 0.79)],
        [_row("reference", 60.0, 1.0, 0.70), _row("fast", 10.0, 0.96, 0.72)],
    ]
    reference, fast = summarize(per_case)
    assert reference["speedup"] == pytest.approx(1.0) and reference["truth_iou_diff"] == pytest.approx(0.0)
    assert fast["speedup"] == pytest.approx(80.0 / 10.0)
    assert fast["agreement_iou"] == pytest.approx(0.97) and fast["agreement_iou_min"] == pytest.approx(0.96)
    assert fast["truth_iou_diff"] == pytest.approx(((0.79 - 0.80) + (0.72 - 0.70)) / 2)
    text = to_markdown([reference, fast], {"command": "x", "cases": 2, "case_names": "a … b", "weights": "w",
                                           "device": "cpu", "threads": 2})
    low, high = fast["truth_iou_diff_ci95"]
    # two cases, differences -0.01 and +0.02: sd 0.0212, t(0.975, 1) = 12.706
    assert high - 0.005 == pytest.approx(0.005 - low) == pytest.approx(12.706 * 0.0212132 / 2**0.5, rel=1e-4)
    assert reference["truth_iou_diff_ci95"] is None  # no spread: no interval
    assert f"| fast | 10.00 | 8.0× | 4.0 | 0.9700, 0.9600 | 0.7550 | +0.0050 | {low:+.4f} … {high:+.4f} |" in text


def _border_section(indices: dict, reliable: bool = True) -> dict:
    from algorithm.report.border_index import BORDERS, HIGH_INDEX

    borders = {b.name: {"status": "ok" if indices.get(b.name) is not None else "missing", "index": indices.get(b.name)}
               for b in BORDERS}
    return {"borders": borders, "settings": {"high_index": HIGH_INDEX}, "reliable": reliable,
            "lung_vessel_share": 0.05, "analysed_lung_ml": 2000.0}


def test_real_scan_border_table_puts_two_models_side_by_side(monkeypatch):
    import benchmarks.real_scans as real_scans

    monkeypatch.setattr(real_scans, "SCANS", ("a.mha", "b.mha"))
    good = _border_section({"left_oblique": 0.12, "right_oblique_upper": 0.2, "right_oblique_middle": 0.3})
    bad = _border_section({"left_oblique": 0.9, "horizontal": 1.1}, reliable=False)
    results = {
        "shipped": [{"spacing": (1.5, 1.5, 1.5), "border_vessel_index": good}, {"error": "no lungs"}],
        "runs/x.pt": [{"spacing": (1.5, 1.5, 1.5), "border_vessel_index": bad},
                      {"spacing": (0.7, 0.7, 5.0), "border_vessel_index": good}],
    }
    lines = real_scans.border_table(results)
    body = lines[2:]
    assert [line.split(" | ")[2] for line in body] == ["shipped", "runs/x.pt", "shipped", "runs/x.pt"]
    assert "| 0.12 | 0.20 | 0.30 | missing |" in body[0]
    # over the limit but on a coarse grid: the number, not bold (no warning there)
    assert "(coarse)" in body[1] and "| 0.90 |" in body[1] and "**" not in body[1]
    assert "refused: no lungs" in body[2]
    bold = real_scans.border_cell(_border_section({"left_oblique": 0.9}), "left_oblique")
    assert bold == "**0.90**"


def _share_section(shares: dict) -> dict:
    from algorithm.report.lobe_shares import default_flag_ranges_percent, share_report

    measures = {name: {"share_of_lung_percent": share} for name, share in shares.items()}
    return share_report(measures, default_flag_ranges_percent())


def test_real_scan_share_table_marks_shares_far_from_the_population(monkeypatch):
    import benchmarks.real_scans as real_scans

    monkeypatch.setattr(real_scans, "SCANS", ("a.mha",))
    typical = {"LUL": 23.1, "LLL": 23.2, "RUL": 17.9, "RLL": 26.5, "RML": 9.3}
    no_rml = {**typical, "RML": 1.0, "RLL": 34.8}  # RML 5.2 SD below the mean
    results = {
        "v1": [{"lobe_shares": _share_section(no_rml), "flags": ["lobe_share_implausible(RML)"]}],
        "v2": [{"lobe_shares": _share_section(typical), "flags": ["lobe_at_fov_edge(RUL)"]}],
    }
    lines = real_scans.share_table(results)
    assert "RML 9.3 ± 1.6" in lines[0]
    v1, v2 = lines[2], lines[3]
    assert "| **1.0 (-5.2)** |" in v1 and "| 34.8 (+3.2) |" in v1 and v1.endswith("| yes |")
    assert "**" not in v2 and "| 23.1 (+0.0) |" in v2 and "cut by the field of view" in v2
    pictures = real_scans.picture_table({"v1": [{}], "v2": [{"error": "x"}]}, ["v1", "v2"])
    assert pictures[2] == "| a.mha | ![a.mha v1](real/a.png) | refused |"
    assert real_scans.picture_name("b.nii.gz", 1, "v2") == "b--v2.png"


def _chest_with_cut_lung() -> np.ndarray:
    """A (Z, Y, X) slab: body at 40 HU in air at -1000, a right lung at -850 inside it, and a left
    lung at -850 that the field of view cuts (it reaches the slice's edge)."""
    hu = np.full((6, 40, 40), -1000.0)
    hu[:, 5:35, 5:40] = 40.0  # the body, cut by the field of view on the +x side
    hu[:, 10:30, 8:18] = -850.0  # lung inside the body
    hu[:, 10:30, 25:40] = -850.0  # lung opened to the edge by the field of view
    hu[:, 20, 12] = 40.0  # a vessel
    hu[2:4, 31:33, 20:22] = -1000.0  # gas in the bowel: inside the body, not lung
    return hu


def test_aerated_lung_keeps_lung_the_field_of_view_cuts_and_drops_outside_air():
    from benchmarks.lung_extent import aerated_lung

    hu = _chest_with_cut_lung()
    lung = aerated_lung(hu)
    assert lung[:, 10:30, 8:18].sum() == 6 * 20 * 10 - 6  # the inner lung, vessel excluded
    assert lung[:, 10:30, 25:40].all()  # the cut lung
    assert not lung[hu == -1000.0].any()  # the air around the body and the bowel gas
    hu[:, 10:30, 25:40] = -990.0  # at air density it is indistinguishable from outside air: dropped
    assert not aerated_lung(hu)[:, 10:30, 25:40].any()


def test_dense_lung_is_split_into_rim_and_interior_and_network_share_counts_its_lobe():
    from benchmarks.lung_extent import RIM_MM, phantom_scores

    ref = np.zeros((20, 20, 20), np.uint8)
    ref[2:18, 2:18, 2:18] = 1
    hu = np.where(ref > 0, -850.0, 40.0)
    hu[8:12, 8:12, 8:12] = 20.0  # consolidation deep inside
    hu[2:4, 8:12, 8:12] = 20.0  # consolidation at the pleura (within RIM_MM at 1 mm voxels)
    assert RIM_MM >= 2.0
    network = ref.copy()
    mask = ref.copy()
    mask[2:4] = 0  # the step dropped the pleural layer
    scores = phantom_scores(mask, ref, hu, (1.0, 1.0, 1.0), 0.001, network)
    assert scores["dense_interior_kept_share"] == 1.0
    assert scores["dense_rim_kept_share"] == 0.0
    assert scores["network_dense_kept_share"] == pytest.approx(64 / (64 + 32))
    assert scores["network_dense_interior_kept_share"] == 1.0
    network[8:10] = 0  # the network missed half of the deep consolidation: not counted against the step
    mask[8:12, 8:12, 8:12] = 0
    scores = phantom_scores(mask, ref, hu, (1.0, 1.0, 1.0), 0.001, network)
    assert scores["network_dense_interior_kept_share"] == 0.0
    assert scores["dense_interior_kept_share"] == 0.0
