"""The fissure fit against phantom truth: lobe IoU and HD95 with and without it.

    python -m benchmarks.fissure_fit_phantoms --phantoms DIR --pred PRED_DIR [--out FILE.md] [--csv FILE.csv]

DIR holds ``images/``, ``labels/`` and ``cases.csv`` from ``python -m training phantoms`` (each lobe
there has its own vessel tree that never leaves it; some fissures are incomplete); PRED_DIR the
``NAME_lobes.mha`` of ``python -m algorithm predict DIR/images -o PRED_DIR --fissures network`` (the
paper's path). Each prediction goes through the shipped fissure step
(``algorithm.pipeline.fissures.refine_lobes`` in mode "fit": canonical orientation, the input grid,
the stray-piece merge) and both are scored against the truth:
per lobe IoU and HD95, the decision per fissure, the fit's time. Tables per pathology and for the
cases with an incomplete fissure (a visible share under ``INCOMPLETE`` in cases.csv).
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from algorithm.fissure_fit import FISSURES
from algorithm.labels import LOBES
from algorithm.pipeline.fissures import FittedLobes, refine_lobes
from algorithm.preprocessing import to_canonical
from training.evaluation.metrics import lobe_scores
from benchmarks.harness import phantom_benchmark_parser, phantoms_with_predictions, write_report

INCOMPLETE = 0.95  # a fissure with less of its surface visible counts as incomplete
FISSURE_COLUMNS = {
    "left_oblique": "fissure_left_oblique_complete",
    "right_oblique": "fissure_right_oblique_complete",
    "right_horizontal": "fissure_right_horizontal_complete",
}


def refit(image: sitk.Image, pred: sitk.Image) -> tuple[np.ndarray, FittedLobes, float]:
    """The shipped fissure step on a network-path mask: (its canonical labels, the step's result,
    the step's seconds); the arrays in the canonical (LPS) orientation."""
    network = sitk.GetArrayFromImage(to_canonical(pred))
    start = time.perf_counter()
    fitted = refine_lobes(to_canonical(image), network, "fit")
    return network, fitted, time.perf_counter() - start


def case_rows(name: str, image: sitk.Image, truth: sitk.Image, pred: sitk.Image, meta: dict) -> list[dict]:
    """One row per lobe and variant ("network", "fit") with IoU, HD95 and the case's facts."""
    spacing = tuple(float(s) for s in to_canonical(image).GetSpacing()[::-1])
    ref = sitk.GetArrayFromImage(to_canonical(truth))
    network, step, seconds = refit(image, pred)
    fitted, section = step.labels, step.section
    decisions = {f: section["fissures"][f]["decision"] for f in FISSURES}
    incomplete = [f for f, col in FISSURE_COLUMNS.items() if col in meta and float(meta[col]) < INCOMPLETE]
    rows = []
    for variant, labels in (("network", network), ("fit", fitted)):
        for lobe, score in lobe_scores(labels, ref, spacing).items():
            rows.append({
                "case": name,
                "pathology": meta.get("pathology", ""),
                "incomplete": ";".join(incomplete),
                "variant": variant,
                "lobe": lobe,
                "iou": score.iou,
                "hd95_mm": score.hd95_mm,
                "fit_s": round(seconds, 2),
                **{f"decision_{f}": d for f, d in decisions.items()},
                **{f"index_network_{f}": section["fissures"][f]["index_network"] for f in FISSURES},
                **{f"index_fit_{f}": section["fissures"][f]["index_fit"] for f in FISSURES},
            })
    return rows


def _mean(rows: list[dict], key: str, **match) -> float:
    values = [r[key] for r in rows if all(r[k] == v for k, v in match.items()) and r[key] is not None]
    return float(np.mean(values)) if values else float("nan")


def table(rows: list[dict], title: str) -> list[str]:
    """Markdown: mean IoU and HD95 per lobe, network and fit."""
    n = len({r["case"] for r in rows})
    lines = [f"{title} ({n} case{'s' if n != 1 else ''}):", "", "| | " + " | ".join(l.name for l in LOBES) + " | mean |",
             "| --- |" + " --- |" * (len(LOBES) + 1)]
    for variant in ("network", "fit"):
        for key, label, digits in (("iou", "IoU", 3), ("hd95_mm", "HD95 mm", 1)):
            cells = [_mean(rows, key, variant=variant, lobe=l.name) for l in LOBES]
            lines.append(f"| {variant} {label} | " + " | ".join(f"{c:.{digits}f}" for c in cells) + f" | {np.nanmean(cells):.{digits}f} |")
    return lines + [""]


def decisions_table(rows: list[dict]) -> list[str]:
    lines = ["| case | pathology | incomplete | " + " | ".join(FISSURES) + " | fit s |",
             "| --- | --- | --- |" + " --- |" * (len(FISSURES) + 1)]
    for case in sorted({r["case"] for r in rows}):
        r = next(x for x in rows if x["case"] == case)
        cells = []
        for f in FISSURES:
            a, b = r[f"index_network_{f}"], r[f"index_fit_{f}"]
            index = "" if a is None else f" ({a:.2f}" + ("" if b is None else f" → {b:.2f}") + ")"
            cells.append(r[f"decision_{f}"] + index)
        lines.append(f"| {case} | {r['pathology']} | {r['incomplete'] or '–'} | " + " | ".join(cells) + f" | {r['fit_s']:.1f} |")
    return lines + [""]


def main(argv: list[str] | None = None) -> int:
    parser = phantom_benchmark_parser(__doc__, "folder with images/, labels/ and cases.csv", "folder with NAME_lobes.mha (network path)", "per case, variant and lobe")
    args = parser.parse_args(argv)
    root, pred_dir = Path(args.phantoms), Path(args.pred)
    meta = {}
    if (root / "cases.csv").is_file():
        with open(root / "cases.csv", newline="") as handle:
            meta = {row["name"]: row for row in csv.DictReader(handle)}
    names = phantoms_with_predictions(root, pred_dir)
    if not names:
        return 1
    rows = []
    for name in names:
        read = lambda p: sitk.ReadImage(str(p))  # noqa: E731
        rows += case_rows(name, read(root / "images" / f"{name}.mha"), read(root / "labels" / f"{name}.mha"),
                          read(pred_dir / f"{name}_lobes.mha"), meta.get(name, {}))
        print(f"{name}: done", file=sys.stderr)
    command = "python -m benchmarks.fissure_fit_phantoms " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [f"Reproduce: `{command.strip()}`", ""] + table(rows, "All cases")
    for pathology in sorted({r["pathology"] for r in rows}):
        lines += table([r for r in rows if r["pathology"] == pathology], f"Pathology {pathology}")
    incomplete = [r for r in rows if r["incomplete"]]
    if incomplete:
        lines += table(incomplete, f"Cases with an incomplete fissure (visible share < {INCOMPLETE:g})")
    lines += ["Decision per fissure (band index of the network's border → of the fit):", ""] + decisions_table(rows)
    text = "\n".join(lines)
    write_report(text, rows, args.out, args.csv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
