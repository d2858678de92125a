#!/usr/bin/env python3
"""Compare a container's /output with the expected outputs kept in tests/container/expected/<contract>/.

    python compare_outputs.py EXPECTED_DIR ACTUAL_DIR [--volume-tolerance 0.005] [--min-iou 0.99]

Masks: same file names, size, spacing, origin and direction, same label set, and per-label
IoU >= --min-iou. Volumes (pulmonary-lobe-volumes.json, or each results.json entry): within the
relative tolerance (0.5 %), with a 0.5 mL floor for tiny lobes. Needs only numpy and SimpleITK
(the runtime requirements), so it also runs inside the algorithm image. Exit 0 = pass.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

VOLUME_FLOOR_ML = 0.5
MASK_SUFFIXES = (".mha", ".tif", ".tiff")


def compare_masks(expected: Path, actual: Path, min_iou: float) -> list[str]:
    problems = []
    a, b = sitk.ReadImage(str(expected)), sitk.ReadImage(str(actual))
    if a.GetSize() != b.GetSize():
        return [f"{actual.name}: size {b.GetSize()} != expected {a.GetSize()}"]
    for what in ("GetSpacing", "GetOrigin", "GetDirection"):
        if not np.allclose(getattr(a, what)(), getattr(b, what)(), atol=1e-4):
            problems.append(f"{actual.name}: {what[3:].lower()} {getattr(b, what)()} != {getattr(a, what)()}")
    ea, eb = sitk.GetArrayViewFromImage(a), sitk.GetArrayViewFromImage(b)
    labels_a, labels_b = set(np.unique(ea).tolist()), set(np.unique(eb).tolist())
    if labels_a != labels_b:
        problems.append(f"{actual.name}: labels {sorted(labels_b)} != expected {sorted(labels_a)}")
    for label in sorted(labels_a - {0}):
        inter = np.count_nonzero((ea == label) & (eb == label))
        union = np.count_nonzero((ea == label) | (eb == label))
        iou = inter / union if union else 1.0
        if iou < min_iou:
            problems.append(f"{actual.name}: label {label} IoU {iou:.4f} < {min_iou}")
    return problems


def compare_volumes(expected: dict, actual: dict, tolerance: float, where: str) -> list[str]:
    problems = []
    if expected.get("label_map") != actual.get("label_map"):
        problems.append(f"{where}: label_map differs")
    for key, value in (expected.get("volumes_ml") or {}).items():
        got = (actual.get("volumes_ml") or {}).get(key)
        if value is None or got is None:
            if value != got:
                problems.append(f"{where}: {key} {got} != expected {value}")
            continue
        if abs(got - value) > max(tolerance * abs(value), VOLUME_FLOOR_ML):
            problems.append(f"{where}: {key} {got:.2f} mL vs expected {value:.2f} mL (> {100 * tolerance:.1f} %)")
    return problems


def compare_results_json(expected: list, actual: list, tolerance: float) -> list[str]:
    if len(expected) != len(actual):
        return [f"results.json: {len(actual)} entries != expected {len(expected)}"]
    problems = []
    for e, a in zip(expected, actual):
        where = f"results.json[{e['inputs'][0]['filename']}]"
        if e["inputs"] != a["inputs"] or e["outputs"] != a["outputs"]:
            problems.append(f"{where}: inputs/outputs differ")
        if bool(e["error_messages"]) != bool(a["error_messages"]):
            problems.append(f"{where}: error_messages {a['error_messages']} vs expected {e['error_messages']}")
        if "pulmonary_lobe_volumes" in e:
            problems += compare_volumes(e["pulmonary_lobe_volumes"], a.get("pulmonary_lobe_volumes", {}), tolerance, where)
    return problems


def compare(expected_dir: Path, actual_dir: Path, tolerance: float, min_iou: float) -> list[str]:
    problems = []
    expected_files = sorted(p.relative_to(expected_dir) for p in expected_dir.rglob("*") if p.is_file())
    actual_files = sorted(p.relative_to(actual_dir) for p in actual_dir.rglob("*") if p.is_file())
    if expected_files != actual_files:
        problems.append(f"files {[str(p) for p in actual_files]} != expected {[str(p) for p in expected_files]}")
    for rel in expected_files:
        exp, act = expected_dir / rel, actual_dir / rel
        if not act.is_file():
            continue
        if rel.name.lower().endswith(MASK_SUFFIXES):
            problems += compare_masks(exp, act, min_iou)
        elif rel.name == "results.json":
            problems += compare_results_json(json.loads(exp.read_text()), json.loads(act.read_text()), tolerance)
        elif rel.suffix == ".json":
            problems += compare_volumes(json.loads(exp.read_text()), json.loads(act.read_text()), tolerance, str(rel))
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("expected", type=Path)
    parser.add_argument("actual", type=Path)
    parser.add_argument("--volume-tolerance", type=float, default=0.005, help="relative (default 0.005 = 0.5 %%)")
    parser.add_argument("--min-iou", type=float, default=0.99)
    args = parser.parse_args()
    if not args.expected.is_dir():
        print(f"FAIL: no expected outputs in {args.expected}: run tests/container/make_expected.sh", file=sys.stderr)
        return 1
    problems = compare(args.expected, args.actual, args.volume_tolerance, args.min_iou)
    for problem in problems:
        print(f"  mismatch: {problem}")
    print(f"{'FAIL' if problems else 'PASS'}: {args.actual} vs {args.expected}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
