"""Stage-II tiling: speed against agreement with the paper-faithful path, on phantoms with truth.

    python -m benchmarks.tiling --cases data/testset --n 8 [--threads 2] [--weights PATH]

Valid convolutions make every output voxel independent of the tiling except through the
non-local module, whose criss-cross rows span the whole tile's bridge: bigger tiles are cheaper
per voxel but see more context. For each tiling this reports stage-II time, the speed-up over
the paper-faithful path (116^3 -> 28^3 tiles over the whole scan), the mean lobe IoU between the
two label maps (agreement) and each one's mean lobe IoU against the phantom truth, all on the
network grid after clean-up, with a 95 % interval of the paired difference to the reference (is a
tiling's accuracy change real or tile-phase noise?). The measured data go to results/tiling.json, the
table to docs/tiling.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from scipy import stats

from algorithm.constants import STAGE2_TRAIN_PATCH_IN
from algorithm.preprocessing import preprocess_labels
from algorithm.segmenter import LobeSegmenter
from training.evaluation.metrics import mean_lobe_iou

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Tiling:
    name: str
    options: dict  # LobeSegmenter options


def tilings() -> list[Tiling]:
    """The paper-faithful reference first (float32), then the candidates."""
    fp32 = {"precision": "float32"}
    return [
        Tiling("reference: 28³ tiles, whole scan", {"tile_out": 28, "crop_to_lungs": False, **fp32}),
        Tiling("28³ tiles, lung box", {"tile_out": 28, **fp32}),
        Tiling("44³ tiles (trained size), lung box", {"tile_out": 44, **fp32}),
        Tiling("planned ≤ 116³ in (container, short of memory)", {"max_tile_in_voxels": STAGE2_TRAIN_PATCH_IN**3, **fp32}),
        Tiling("planned ≤ 144³ in (default)", {**fp32}),
        Tiling("planned ≤ 176³ in", {"max_tile_in_voxels": 176**3, **fp32}),
        Tiling("planned ≤ 144³ in, bfloat16 (default on this CPU)", {"precision": "bfloat16"}),
        Tiling("44³ tiles, bfloat16", {"tile_out": 44, "precision": "bfloat16"}),
    ]


def run_case(segmenter: LobeSegmenter, image: sitk.Image, label: sitk.Image) -> list[dict]:
    """Every tiling on one case; masks compared on the network grid (cleaned labels)."""
    rows, reference, truth = [], None, None
    for tiling in tilings():
        result = segmenter.with_options(**tiling.options)(image)
        labels = result.network_labels
        truth = preprocess_labels(label, labels.shape) if truth is None else truth
        reference = labels if reference is None else reference
        grid = result.report.network_grid
        rows.append({
            "tiling": tiling.name,
            "stage2_s": result.timings_s["stage2"],
            "tiles": grid.stage2_tiles,
            "tile_out_zyx": list(grid.stage2_tile_out_zyx),
            "agreement_iou": mean_lobe_iou(labels, reference),
            "truth_iou": mean_lobe_iou(labels, truth),
        })
    return rows


def summarize(per_case: list[list[dict]]) -> list[dict]:
    summary = []
    for i, first in enumerate(per_case[0]):
        rows = [case[i] for case in per_case]
        stage2 = float(np.mean([r["stage2_s"] for r in rows]))
        reference_s = float(np.mean([case[0]["stage2_s"] for case in per_case]))
        summary.append({
            "tiling": first["tiling"],
            "stage2_s": stage2,
            "speedup": reference_s / stage2,
            "tiles": float(np.mean([r["tiles"] for r in rows])),
            "agreement_iou": float(np.mean([r["agreement_iou"] for r in rows])),
            "agreement_iou_min": float(np.min([r["agreement_iou"] for r in rows])),
            "truth_iou": float(np.mean([r["truth_iou"] for r in rows])),
            **_paired_difference([r["truth_iou"] - case[0]["truth_iou"] for r, case in zip(rows, per_case)]),
        })
    return summary


def _paired_difference(diffs: list[float]) -> dict:
    """Mean per-case difference and its 95 % t-interval (None with fewer than two cases)."""
    mean = float(np.mean(diffs))
    if len(diffs) < 2 or np.std(diffs) == 0:
        return {"truth_iou_diff": mean, "truth_iou_diff_ci95": None}
    half = float(stats.t.ppf(0.975, len(diffs) - 1) * np.std(diffs, ddof=1) / np.sqrt(len(diffs)))
    return {"truth_iou_diff": mean, "truth_iou_diff_ci95": [mean - half, mean + half]}


def to_markdown(summary: list[dict], meta: dict) -> str:
    lines = [
        "# Stage-II tiling: speed against agreement",
        "",
        f"Reproduce: `{meta['command']}`",
        "",
        f"{meta['cases']} held-out phantoms ({meta['case_names']}), weights {meta['weights']}, "
        f"device {meta['device']}, {meta['threads']} torch threads. Stage-II time only (stage I, "
        "read and write are the same for every tiling). Agreement: mean lobe IoU between this "
        "tiling's labels and the reference's (1 = identical); truth: mean lobe IoU against the "
        "phantom labels; Δ truth: this tiling's minus the reference's, per case, averaged, with the "
        "95 % t-interval of that paired difference. All on the network grid after clean-up.",
        "",
        "| tiling | stage II (s) | speed-up | tiles | agreement (mean, min) | truth IoU | Δ truth | 95 % interval |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in summary:
        interval = row.get("truth_iou_diff_ci95")
        interval_text = "–" if interval is None else f"{interval[0]:+.4f} … {interval[1]:+.4f}"
        lines.append(
            f"| {row['tiling']} | {row['stage2_s']:.2f} | {row['speedup']:.1f}× | {row['tiles']:.1f} | "
            f"{row['agreement_iou']:.4f}, {row['agreement_iou_min']:.4f} | {row['truth_iou']:.4f} | "
            f"{row['truth_iou_diff']:+.4f} | {interval_text} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tiling", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=Path, default=REPO_ROOT / "data" / "testset", help="folder with images/ and labels/")
    parser.add_argument("--n", type=int, default=8, help="first N cases (the test set cycles pathologies)")
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "results", help="folder for tiling.json")
    parser.add_argument("--markdown", type=Path, default=REPO_ROOT / "docs" / "tiling.md", help="the table as Markdown")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    segmenter = LobeSegmenter(args.weights, device)
    images = sorted((args.cases / "images").glob("*.mha"))[: args.n]
    if not images:
        print(f"error: no images in {args.cases / 'images'} (make results generates the test set)", file=sys.stderr)
        return 2
    per_case = []
    for path in images:
        started = time.perf_counter()
        image, label = sitk.ReadImage(str(path)), sitk.ReadImage(str(args.cases / "labels" / path.name))
        per_case.append(run_case(segmenter, image, label))
        print(f"{path.name}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    summary = summarize(per_case)
    meta = {
        "command": "python -m benchmarks.tiling " + " ".join(sys.argv[1:] if argv is None else argv),
        "cases": len(images),
        "case_names": f"{images[0].stem} … {images[-1].stem}",
        "weights": Path(segmenter.weights.path).name + " sha256 " + segmenter.weights.sha256[:12],
        "device": "cpu",
        "threads": args.threads,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tiling.json").write_text(json.dumps({"meta": meta, "summary": summary, "per_case": per_case}, indent=1))
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    args.markdown.write_text(to_markdown(summary, meta))
    print(to_markdown(summary, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
