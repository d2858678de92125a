"""Border vessel index against phantom truth: true, predicted and shifted borders.

    python -m benchmarks.border_index_phantoms --phantoms DIR --pred PRED_DIR [--out docs/border-index-phantoms.md]

DIR holds ``images/`` and ``labels/`` from ``python -m training phantoms`` (each lobe there has its
own vessel tree that never leaves it); PRED_DIR the ``NAME_lobes.mha`` of ``python -m algorithm
predict DIR/images -o PRED_DIR``. Per case and border: the index of the true border, of the
predicted border, and of the true border shifted by 5, 10 and 20 mm into either lobe (one border
moved at a time: the voxels of one lobe within that distance of the other change sides); each
with its distance error, the mean symmetric surface distance (mm) to the true border. Prints and
writes a Markdown table and the rank correlation between index and distance error.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage, stats

from algorithm.boxes import bounding_box
from algorithm.report.border_index import BORDERS, analysis_lattice, border_indices, border_interface, vessel_mask
from benchmarks.harness import phantom_benchmark_parser, phantoms_with_predictions, write_report

SHIFTS_MM = (5.0, 10.0, 20.0)


def surface_distance_mm(true_iface: np.ndarray, other_iface: np.ndarray, spacing_mm) -> float | None:
    """Mean symmetric distance (mm) between two interface voxel sets; None when either is empty."""
    box = bounding_box(true_iface | other_iface)
    if box is None or not true_iface.any() or not other_iface.any():
        return None
    t, o = true_iface[box], other_iface[box]  # nearest points of either set lie in their joint box
    to_true = ndimage.distance_transform_edt(~t, sampling=spacing_mm)
    to_other = ndimage.distance_transform_edt(~o, sampling=spacing_mm)
    return float((to_true[o].mean() + to_other[t].mean()) / 2.0)


def shifted(labels: np.ndarray, grow: int, into: int, distance_mm: float, spacing_mm) -> np.ndarray:
    """``labels`` with the voxels of lobe ``into`` within ``distance_mm`` of lobe ``grow`` given to ``grow``."""
    out = labels.copy()
    box = bounding_box((labels == grow) | (labels == into))
    if box is None:
        return out
    part = labels[box]
    near = ndimage.distance_transform_edt(part != grow, sampling=spacing_mm) <= distance_mm
    out[box][near & (part == into)] = grow
    return out


def case_rows(name: str, image: sitk.Image, truth: np.ndarray, pred: np.ndarray) -> list[dict]:
    """Every border of one case in every variant. The vessel mask depends on the lung only, the
    same for all variants of the truth, so it is computed once on the analysis lattice."""
    spacing = image.GetSpacing()[::-1]
    lattice = analysis_lattice(spacing)
    hu = sitk.GetArrayViewFromImage(image)[lattice.sample]
    true_vessels = vessel_mask(hu, truth[lattice.sample] > 0, lattice.spacing_mm)
    pred_vessels = vessel_mask(hu, pred[lattice.sample] > 0, lattice.spacing_mm)
    rows = []
    for border in BORDERS:
        a, b = int(border.lobe_a), int(border.lobe_b)
        cases = {"true": (truth, true_vessels), "predicted": (pred, pred_vessels)}
        for d in SHIFTS_MM:
            cases[f"shift {d:g} mm into {border.lobe_b.name}"] = (shifted(truth, a, b, d, spacing), true_vessels)
            cases[f"shift {d:g} mm into {border.lobe_a.name}"] = (shifted(truth, b, a, d, spacing), true_vessels)
        true_iface = border_interface(truth, a, b)
        for variant, (labels, vessels) in cases.items():
            result = border_indices(vessels, labels[lattice.sample], lattice.spacing_mm)[border.name]
            rows.append({
                "case": name,
                "border": border.name,
                "variant": variant,
                "index": None if result.index is None else round(result.index, 3),
                "status": result.status,
                "error_mm": surface_distance_mm(true_iface, border_interface(labels, a, b), spacing),
            })
    return rows


def summary(rows: list[dict]) -> tuple[list[str], dict]:
    """Markdown lines: mean index per variant kind and border, and the correlations."""
    kinds = ["true", "predicted"] + [f"shift {d:g} mm" for d in SHIFTS_MM]

    def kind(variant: str) -> str:
        return variant if not variant.startswith("shift") else " ".join(variant.split()[:3])

    lines = ["| border | " + " | ".join(kinds) + " |", "| --- |" + " --- |" * len(kinds)]
    for border in BORDERS:
        cells = []
        for k in kinds:
            values = [r["index"] for r in rows if r["border"] == border.name and kind(r["variant"]) == k and r["index"] is not None]
            cells.append(f"{np.mean(values):.2f} ({min(values):.2f}–{max(values):.2f})" if values else "–")
        lines.append(f"| {border.name} | " + " | ".join(cells) + " |")
    pairs = [(r["index"], r["error_mm"]) for r in rows if r["index"] is not None and r["error_mm"] is not None]
    index, error = np.array(pairs).T
    rho = stats.spearmanr(index, error)
    r = stats.pearsonr(index, error)
    predicted = [(r_["index"], r_["error_mm"]) for r_ in rows if r_["variant"] == "predicted" and r_["index"] is not None and r_["error_mm"] is not None]
    corr = {"n": len(pairs), "spearman": float(rho.statistic), "pearson": float(r.statistic)}
    if len(predicted) > 2:
        pi, pe = np.array(predicted).T
        corr.update({"n_predicted": len(predicted), "spearman_predicted": float(stats.spearmanr(pi, pe).statistic)})
    return lines, corr


def main(argv: list[str] | None = None) -> int:
    parser = phantom_benchmark_parser(__doc__, "folder with images/ and labels/", "folder with NAME_lobes.mha", "per case, border and variant")
    args = parser.parse_args(argv)
    root, pred_dir = Path(args.phantoms), Path(args.pred)
    names = phantoms_with_predictions(root, pred_dir)
    if not names:
        return 1
    rows = []
    for name in names:
        image = sitk.ReadImage(str(root / "images" / f"{name}.mha"))
        truth = sitk.GetArrayFromImage(sitk.ReadImage(str(root / "labels" / f"{name}.mha")))
        pred = sitk.GetArrayFromImage(sitk.ReadImage(str(pred_dir / f"{name}_lobes.mha")))
        rows += case_rows(name, image, truth, pred)
        print(f"{name}: done", file=sys.stderr)
    lines, corr = summary(rows)
    command = "python -m benchmarks.border_index_phantoms " + " ".join(argv if argv is not None else sys.argv[1:])
    text = "\n".join([
        f"Border vessel index on {len(names)} phantoms (mean, min–max over cases; shifts in both directions pooled).",
        "", f"Reproduce: `{command.strip()}`", "", *lines, "",
        f"Rank correlation of index and distance error over all {corr['n']} border variants: Spearman "
        f"{corr['spearman']:.2f} (Pearson {corr['pearson']:.2f})"
        + (f"; over the predicted borders alone ({corr['n_predicted']}): Spearman {corr['spearman_predicted']:.2f}." if "n_predicted" in corr else "."),
    ])
    write_report(text, rows, args.out, args.csv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
