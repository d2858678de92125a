"""The shipped weights on the real scans of ../shared/data/real (no lobe references there).

    python -m benchmarks.real_scans [--weights PATH [PATH ...]] [--out results/real-scans.md]  (docs/results.md quotes it)

Per scan: the five lobes present, each one connected piece, left lobes on the patient's left
(physical LPS x of the centroids), volumes, quality flags, run time, and the preview picture
(results/real/NAME.png). Plausibility only: these scans have no lobe reference. The border
vessel index (algorithm/report/border_index.py) of each interlobar border is the one number per border
that judges the lobes against the scan itself; with several ``--weights`` (``shipped`` names the
shipped ones) the border table holds every model on every scan, so two models can be compared on
real scans in one table, and the lobe-share table sets each model's shares beside the published
healthy-adult population (algorithm/report/lobe_shares.py). The plausibility table is of the first
model; the pictures of every model stand side by side (``--labels`` names the models).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from scipy import ndimage

from algorithm.errors import InputError
from algorithm.labels import LEFT_LOBES, LOBES, RIGHT_LOBES
from algorithm.report.border_index import BORDERS
from algorithm.report.lobe_shares import POPULATION_SHARES, SOURCE
from algorithm.segmenter import LobeSegmenter
from algorithm.report.preview import render_preview
from algorithm.io.formats import strip_image_suffix
from algorithm.io.reading import read_image
from algorithm.io.writing import write_png
from training.realism.real_scans import REAL_DIR  # one definition of where the real scans live

REPO_ROOT = Path(__file__).resolve().parents[1]
SCANS = (
    "lung-pet-ct-dx-A0001-dicom",
    "lung-pet-ct-dx-A0002-apex-cut-8mm.mha",
    "copdgene-10002K-ct64-dicom",
    "copdgene-10002K-ct64.nrrd",
    "totalseg-heart-crop-partial-lungs.nii.gz",
    "totalseg-chest-cta-1.5mm.nii.gz",
)


def lobe_checks(mask: sitk.Image) -> dict:
    labels = sitk.GetArrayViewFromImage(mask)
    pieces, centroid_x = {}, {}
    for lobe in LOBES:
        region = labels == lobe
        pieces[lobe.name] = int(ndimage.label(region, structure=np.ones((3, 3, 3)))[1]) if region.any() else 0
        if region.any():
            z, y, x = (float(c) for c in ndimage.center_of_mass(region))
            centroid_x[lobe.name] = mask.TransformContinuousIndexToPhysicalPoint((x, y, z))[0]
    left = [centroid_x[l.name] for l in LEFT_LOBES if l.name in centroid_x]
    right = [centroid_x[l.name] for l in RIGHT_LOBES if l.name in centroid_x]
    sides_ok = bool(left and right and min(left) > max(right))  # LPS: +x is the patient's left
    # a lung cut by the field of view can be in several pieces itself; its lobes then are too
    lung_pieces = int(ndimage.label(labels > 0, structure=np.ones((3, 3, 3)))[1])
    return {"pieces": pieces, "lung_pieces": lung_pieces, "sides_correct": sides_ok}


def segment_real_scan(name: str, segmenter: LobeSegmenter):
    """Read and segment one real scan: (loaded, result, seconds), or (None, error row, 0) if refused."""
    loaded = read_image(REAL_DIR / name)
    started = time.perf_counter()
    try:
        result = segmenter(loaded.image)
    except InputError as exc:
        return None, {"name": name, "error": str(exc)}, 0.0
    return loaded, result, time.perf_counter() - started


def picture_name(scan: str, label_index: int, label: str) -> str:
    """The preview's file name: the first model's keeps the plain scan name the docs link to."""
    stem = strip_image_suffix(Path(scan))
    return f"{stem}.png" if label_index == 0 else f"{stem}--{label}.png"


def run_scan(name: str, segmenter: LobeSegmenter, picture: Path | None) -> dict:
    """One scan with one set of weights; the preview picture only when ``picture`` is given."""
    loaded, result, seconds = segment_real_scan(name, segmenter)
    if loaded is None:
        return result
    report = result.report.to_dict()
    if picture is not None:
        write_png(render_preview(loaded.image, result.mask, report), picture)
    return {
        "name": name,
        "size": loaded.image.GetSize(),
        "spacing": tuple(round(s, 2) for s in loaded.image.GetSpacing()),
        "volumes_ml": report["volumes_ml"],
        "flags": [f["code"] + (f"({f['lobe']})" if f.get("lobe") else "") for f in report["quality_flags"]],
        "warnings": loaded.warnings + report["warnings"],
        "seconds": seconds,
        "border_vessel_index": report["border_vessel_index"],
        "lobe_shares": report["lobe_shares"],
        **lobe_checks(result.mask),
    }


def border_cell(section: dict, name: str) -> str:
    """One border's index for the table: the number (bold over the warning limit), or its status."""
    entry = section["borders"][name]
    if entry["index"] is None:
        return entry["status"]
    high = entry["index"] > section["settings"]["high_index"]
    return f"**{entry['index']:.2f}**" if high and section["reliable"] else f"{entry['index']:.2f}"


def border_table(results: dict[str, list[dict]]) -> list[str]:
    """Markdown rows: scan x weights, one column per border."""
    lines = [
        "| scan | voxels (mm) | weights | " + " | ".join(b.name for b in BORDERS) + " | lung vessel share | analysed lung (mL) |",
        "| --- | --- | --- |" + " --- |" * (len(BORDERS) + 2),
    ]
    for i, name in enumerate(SCANS):
        for label, rows in results.items():
            r = rows[i]
            if "error" in r:
                lines.append(f"| {name} | – | {label} | refused: {r['error']} |" + " |" * (len(BORDERS) + 1))
                continue
            section = r["border_vessel_index"]
            voxels = "×".join(f"{s:g}" for s in r["spacing"]) + ("" if section["reliable"] else " (coarse)")
            share = section["lung_vessel_share"]
            lines.append(
                f"| {name} | {voxels} | {label} | " + " | ".join(border_cell(section, b.name) for b in BORDERS)
                + f" | {'–' if share is None else f'{share:.3f}'} | {section['analysed_lung_ml']:.0f} |"
            )
    return lines


def share_cell(entry: dict) -> str:
    """One lobe's share with its z-score against the population; bold outside the flag range."""
    share, z = entry["share_percent"], entry["z_score"]
    if share is None:
        return "–"
    lo, hi = entry["flag_range_percent"]
    text = f"{share:.1f} ({z:+.1f})"
    return text if lo <= share <= hi else f"**{text}**"


def share_table(results: dict[str, list[dict]]) -> list[str]:
    """Markdown rows: scan x weights, each lobe's share of the lungs (%) and its z-score."""
    header = " | ".join(f"{l.name} {POPULATION_SHARES[l.name].mean_percent:g} ± {POPULATION_SHARES[l.name].sd_percent:g}"
                        for l in LOBES)
    lines = [f"| scan | weights | {header} | covers the whole lungs |", "| --- | --- |" + " --- |" * (len(LOBES) + 1)]
    for i, name in enumerate(SCANS):
        for label, rows in results.items():
            r = rows[i]
            if "error" in r:
                lines.append(f"| {name} | {label} | refused |" + " |" * len(LOBES))
                continue
            lobes = r["lobe_shares"]["lobes"]
            cut = any(f.startswith("lobe_at_fov_edge") for f in r["flags"])
            lines.append(f"| {name} | {label} | " + " | ".join(share_cell(lobes[l.name]) for l in LOBES)
                         + f" | {'no (cut by the field of view: shares not comparable)' if cut else 'yes'} |")
    return lines


def picture_table(results: dict[str, list[dict]], labels: list[str]) -> list[str]:
    """The preview pictures of every model side by side, one row per scan."""
    lines = ["| scan | " + " | ".join(labels) + " |", "| --- |" + " --- |" * len(labels)]
    for i, name in enumerate(SCANS):
        cells = []
        for k, (label, rows) in enumerate(zip(labels, results.values())):
            cells.append("refused" if "error" in rows[i] else f"![{name} {label}](real/{picture_name(name, k, label)})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def to_markdown(rows: list[dict], command: str, results: dict[str, list[dict]] | None = None,
                labels: list[str] | None = None) -> str:
    lines = [
        "## Real scans (no lobe reference: plausibility only)",
        "",
        f"Reproduce: `{command}` (reads `../shared/data/real/`).",
        "",
        "| scan | size, spacing (mm) | five lobes | one piece each | lung pieces | sides | LUL | LLL | RUL | RLL | RML | total (mL) | flags | time (s) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['name']} | refused: {r['error']} |" + " |" * 12)
            continue
        v = r["volumes_ml"]
        present = all(v[l.name] > 0 for l in LOBES)
        single = all(n == 1 for n in r["pieces"].values())
        lines.append(
            f"| {r['name']} | {'×'.join(map(str, r['size']))}, {r['spacing']} | {'yes' if present else 'no'} | "
            f"{'yes' if single else r['pieces']} | {r['lung_pieces']} | {'correct' if r['sides_correct'] else 'WRONG'} | "
            + " | ".join(f"{v[l.name]:.0f}" for l in LOBES)
            + f" | {v['total']:.0f} | {', '.join(r['flags']) or '–'} | {r['seconds']:.1f} |"
        )
    lines.append("")
    if results:
        lines += [
            "Border vessel index (vessel share within 4 mm of the border over the share in the analysed lung; about 0: "
            "the border follows a vessel-free fissure band, about 1: it cuts through vessels; **bold**: over the "
            "warning limit; coarse: voxels over 3 mm, no warning, see docs/outputs.md):",
            "",
            *border_table(results),
            "",
            f"Each lobe's share of the lungs in % (z-score against healthy adults; header: population mean ± SD, "
            f"{SOURCE}; **bold**: more than 4 SD away, the `lobe_share_implausible` flag):",
            "",
            *share_table(results),
            "",
        ]
    if results and len(results) > 1:
        lines += picture_table(results, labels or list(results)) + [""]
    else:
        for r in rows:
            if "error" not in r:
                lines.append(f"![{r['name']}](real/{picture_name(r['name'], 0, '')})")
                lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", nargs="+", default=["shipped"],
                        help="checkpoints to run ('shipped': the shipped weights); the first makes the pictures")
    parser.add_argument("--labels", nargs="+", help="short names of the --weights for tables and pictures (e.g. v1 v2)")
    parser.add_argument("--out", default=str(REPO_ROOT / "results" / "real-scans.md"))
    args = parser.parse_args(argv)
    labels = args.labels or [Path(w).stem if w != "shipped" else w for w in args.weights]
    if len(labels) != len(args.weights) or len(set(labels)) != len(labels):
        print("error: --labels must give one distinct name per --weights", file=sys.stderr)
        return 2
    if not REAL_DIR.is_dir():
        print(f"error: {REAL_DIR} not found", file=sys.stderr)
        return 1
    device = torch.device("cpu")
    image_dir = Path(args.out).parent / "real"  # linked as real/NAME.png from the Markdown
    image_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict]] = {}
    for k, (weights, label) in enumerate(zip(args.weights, labels)):
        segmenter = LobeSegmenter(None if weights == "shipped" else weights, device)
        results[label] = [run_scan(name, segmenter, image_dir / picture_name(name, k, label)) for name in SCANS]
    command = "python -m benchmarks.real_scans " + " ".join(argv if argv is not None else sys.argv[1:])
    first = next(iter(results.values()))
    Path(args.out).write_text(to_markdown(first, command.strip(), results, labels) + "\n")
    print(Path(args.out).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
