"""``python -m training evaluate --pred DIR --ref DIR [--vs DIR2 ...] --out REPORT_DIR``

Per case and per lobe IoU and HD95 (mm) on the reference's own grid (paper IV.E), via the
``grand_challenge_metrics`` wrapper of ``training.evaluation.metrics``. Writes to REPORT_DIR:

* ``cases.csv``: case, method, lobe, iou, hd95_mm (one row per case and lobe);
* ``report.md``: mean +- standard deviation per lobe and overall (the per-case mean of the five
  lobes) laid out like Table III; with ``--vs`` (one or more folders), a Wilcoxon signed-rank test
  of ``--pred`` against each, per lobe and metric, Bonferroni-corrected over every test of a metric
  (the lobes and the overall score, times the number of comparisons);
* ``boxplot_iou.png`` (and ``boxplot_hd95.png``): per-lobe box plots like Fig. 2.

Predictions and references pair by file name (mha, nii, nii.gz, nrrd, mhd); a prediction
``NAME_lobes.mha`` (what ``python -m algorithm predict`` writes) pairs with reference ``NAME``. A prediction must
have the reference's size; its spacing is taken from the reference (the original grid).
"""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from algorithm.labels import LOBES
from algorithm.io.atomic import atomic_write_bytes
from training.data.cases import image_files, read_case_csv
from training.data.label_maps import remap_labels
from training.evaluation.metrics import lobe_scores
from training.cli_help import command_parser

LOBE_NAMES = [lobe.name for lobe in LOBES]
COLUMNS = ["Overall", *LOBE_NAMES]
PREDICTION_SUFFIX = "_lobes"  # the mask name suffix of ``python -m algorithm predict``
SIGNIFICANCE = 0.01  # paper: p < 0.01 with Bonferroni correction


def read_labels(path: Path, remap: str) -> tuple[np.ndarray, tuple[float, float, float], sitk.Image]:
    image = sitk.ReadImage(str(path))
    return remap_labels(sitk.GetArrayFromImage(image), remap), tuple(reversed(image.GetSpacing())), image


def references(ref: Path, split: str) -> dict[str, Path]:
    """Reference label files by case name: a folder's files, or the ``split`` cases of a cases
    CSV (import-dataset's cases.csv)."""
    if ref.is_file() and ref.suffix.lower() == ".csv":
        return {c.name: c.label for c in read_case_csv(ref) if c.split == split}
    return image_files(ref)


def evaluate_folder(pred_dir: Path, ref_dir: Path, remap: str = "paper", pred_remap: str = "paper",
                    split: str = "test") -> dict[str, dict[str, dict[str, float]]]:
    """{case: {lobe: {"iou": ..., "hd95_mm": ...}}} for every reference with a prediction
    (``ref_dir``: a folder, or a cases CSV whose ``split`` cases are the references).

    A reference without a prediction is an error: dropping it would flatter the mean.
    """
    refs, preds = references(ref_dir, split), image_files(pred_dir)
    # ``python -m algorithm predict`` writes NAME_lobes.mha: pair it with NAME
    for name, path in list(preds.items()):
        if name.endswith(PREDICTION_SUFFIX) and name[: -len(PREDICTION_SUFFIX)] not in preds:
            preds[name[: -len(PREDICTION_SUFFIX)]] = path
    missing = sorted(set(refs) - set(preds))
    if missing:
        raise FileNotFoundError(f"{len(missing)} reference(s) have no prediction in {pred_dir}, e.g. {missing[0]}")
    results = {}
    for name in sorted(refs):
        ref, spacing, ref_image = read_labels(refs[name], remap)
        pred, _, pred_image = read_labels(preds[name], pred_remap)
        if pred.shape != ref.shape:
            raise ValueError(f"{name}: prediction size {pred_image.GetSize()} differs from reference {ref_image.GetSize()}")
        scores = lobe_scores(pred, ref, spacing)
        results[name] = {lobe: {"iou": s.iou, "hd95_mm": float(s.hd95_mm)} for lobe, s in scores.items()}
    return results


def per_case_table(results: dict) -> dict[str, dict[str, np.ndarray]]:
    """metric -> column (Overall, LUL, ...) -> values per case (case order = sorted names)."""
    cases = sorted(results)
    table: dict[str, dict[str, np.ndarray]] = {}
    for metric in ("iou", "hd95_mm"):
        cols = {lobe: np.array([results[c][lobe][metric] for c in cases]) for lobe in LOBE_NAMES}
        cols["Overall"] = np.mean([cols[lobe] for lobe in LOBE_NAMES], axis=0)
        table[metric] = cols
    return table


def _fmt(values: np.ndarray, digits: int) -> str:
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return f"{np.mean(values):.{digits}f} ± {std:.{digits}f}"


def markdown_table(tables: dict[str, dict]) -> str:
    """Table III layout: Method | Metric | Overall | LUL | LLL | RUL | RLL | RML."""
    lines = ["| Method | Metric | " + " | ".join(COLUMNS) + " |", "|" + "---|" * (len(COLUMNS) + 2)]
    for method, table in tables.items():
        lines.append(f"| {method} | IOU | " + " | ".join(_fmt(table["iou"][c], 3) for c in COLUMNS) + " |")
        lines.append("|  | HD95 (mm) | " + " | ".join(_fmt(table["hd95_mm"][c], 3) for c in COLUMNS) + " |")
    return "\n".join(lines)


def wilcoxon_tests(a: dict, b: dict, comparisons: int = 1) -> list[dict]:
    """Paired Wilcoxon signed-rank per metric and column, Bonferroni over the columns times
    ``comparisons`` (the number of methods ``a`` is compared with)."""
    from scipy.stats import wilcoxon

    rows = []
    for metric in ("iou", "hd95_mm"):
        for column in COLUMNS:
            x, y = a[metric][column], b[metric][column]
            if np.allclose(x, y):
                p = 1.0  # identical pairs: no evidence of a difference (scipy would raise)
            else:
                p = float(wilcoxon(x, y, zero_method="wilcox", alternative="two-sided").pvalue)
            corrected = min(1.0, p * len(COLUMNS) * comparisons)
            rows.append(
                {"metric": metric, "column": column, "median_diff": float(np.median(x - y)), "p": p,
                 "p_bonferroni": corrected, "significant": corrected < SIGNIFICANCE}
            )
    return rows


def box_plot(tables: dict[str, dict], metric: str, path: Path) -> None:
    """Per-lobe boxes, one colour per method (Fig. 2)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(tables)
    fig, ax = plt.subplots(figsize=(1.6 * len(LOBE_NAMES) * max(1, len(methods)) ** 0.5 + 2, 4))
    width = 0.8 / len(methods)
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    for m, method in enumerate(methods):
        positions = [i + (m - (len(methods) - 1) / 2) * width for i in range(len(LOBE_NAMES))]
        parts = ax.boxplot(
            [tables[method][metric][lobe] for lobe in LOBE_NAMES], positions=positions, widths=width * 0.9,
            patch_artist=True, showfliers=True,
        )
        for box in parts["boxes"]:
            box.set_facecolor(colours[m % len(colours)])
            box.set_alpha(0.6)
        ax.plot([], [], color=colours[m % len(colours)], lw=8, alpha=0.6, label=method)
    ax.set_xticks(range(len(LOBE_NAMES)))
    ax.set_xticklabels(LOBE_NAMES)
    ax.set_ylabel("IOU" if metric == "iou" else "HD95 (mm)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_cases_csv(all_results: dict[str, dict], path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["case", "method", "lobe", "iou", "hd95_mm"])
    for method, results in all_results.items():
        for case in sorted(results):
            for lobe in LOBE_NAMES:
                r = results[case][lobe]
                writer.writerow([case, method, lobe, f"{r['iou']:.6f}", f"{r['hd95_mm']:.4f}"])
    atomic_write_bytes(path, buffer.getvalue().encode())


def report(all_results: dict[str, dict], out_dir: Path) -> str:
    """Write cases.csv, report.md and the box plots; returns the markdown."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = {method: per_case_table(results) for method, results in all_results.items()}
    write_cases_csv(all_results, out_dir / "cases.csv")
    n = len(next(iter(all_results.values())))
    md = [f"# Lobe segmentation evaluation ({n} cases)", "", markdown_table(tables), "",
          "IOU and HD95 (mm) as mean ± standard deviation over cases; Overall: per-case mean of the five lobes.",
          "A lobe missing from a prediction scores IOU 0 and HD95 = image diagonal."]
    methods = list(tables)
    for other in methods[1:]:
        rows = wilcoxon_tests(tables[methods[0]], tables[other], comparisons=len(methods) - 1)
        md += ["", f"## Wilcoxon signed-rank: {methods[0]} vs {other}", "",
               f"Median difference {methods[0]} − {other}; Bonferroni over {len(COLUMNS) * (len(methods) - 1)} "
               f"tests per metric; significant at corrected p < {SIGNIFICANCE}.", "",
               "| Metric | Column | median diff | p | p (Bonferroni) | significant |", "|---|---|---|---|---|---|"]
        for r in rows:
            md.append(f"| {r['metric']} | {r['column']} | {r['median_diff']:+.4f} | {r['p']:.3g} | {r['p_bonferroni']:.3g} | {'yes' if r['significant'] else 'no'} |")
    text = "\n".join(md) + "\n"
    atomic_write_bytes(out_dir / "report.md", text.encode())
    box_plot(tables, "iou", out_dir / "boxplot_iou.png")
    box_plot(tables, "hd95_mm", out_dir / "boxplot_hd95.png")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("python -m training evaluate", __doc__)
    parser.add_argument("--pred", required=True, type=Path, help="folder of predicted lobe masks")
    parser.add_argument("--ref", required=True, type=Path, help="folder of reference lobe masks (same names), or a cases CSV")
    parser.add_argument("--split", default="test", help="with a cases CSV as --ref: the split to score (default test)")
    parser.add_argument("--vs", type=Path, nargs="+", default=[], help="other prediction folders: paired Wilcoxon tests of --pred against each")
    parser.add_argument("--out", required=True, type=Path, help="report folder")
    parser.add_argument("--ref-remap", default="paper", help="label convention of the references (a name of training.data.label_maps: paper, lungmask, lola11, totalsegmentator_v1/_v2; or a .yaml file)")
    parser.add_argument("--names", nargs="+", default=None, metavar="NAME", help="method names in the report: --pred's, then each --vs's")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    folders = [args.pred, *args.vs]
    names = args.names or [folder.name or f"method {i + 1}" for i, folder in enumerate(folders)]
    if len(names) != len(folders):
        parser.error(f"--names needs {len(folders)} names (--pred and each --vs), got {len(names)}")
    if len(set(names)) != len(names):
        names = [f"{name} ({i + 1})" for i, name in enumerate(names)]
    all_results = {name: evaluate_folder(folder, args.ref, args.ref_remap, split=args.split) for name, folder in zip(names, folders)}
    print(report(all_results, args.out))
    return 0
