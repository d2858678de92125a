"""The global fissure search on the real scans of ../shared/data/real: network vs local fit vs global.

    python -m benchmarks.fissure_search_real [--weights PATH] [--scans NAME ...] [--rows DIR] [--out FILE.md] [--img DIR]

Per scan: the shipped steps up to the fissure step once (``benchmarks.harness.before_fissures``),
then the shipped fissure step (``algorithm.pipeline.fissures.refine_lobes``, what ``LobeSegmenter``
runs) in modes ``network``, ``fit`` and ``global``, each on the input grid; the border vessel index
of every interlobar border and every lobe's share of both lungs (with its z-score against the
published population, algorithm/report/lobe_shares.py) for each, the global search's choice and
runner-up per fissure, its time against the prediction's (steps 1-4 plus the fissure step in
global mode), and a picture per scan (IMG/NAME.png): sagittal slices through the right lung (left
two panels) and the left lung, network borders red, local fit (first panel of a lung) or global
search (second) green, yellow where both agree. Each scan's row is kept in ``--rows`` (JSON), so
scans can run one per call (each a few minutes on CPU) and the last call writes the table of all.
No lobe reference exists for these scans.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from algorithm.errors import InputError
from algorithm.fissure_fit import FISSURES
from algorithm.io.reading import read_image
from algorithm.io.writing import write_png
from algorithm.labels import LOBES
from algorithm.report.border_index import BORDERS, border_report
from algorithm.report.lobe_shares import POPULATION_SHARES
from algorithm.segmenter import LobeSegmenter
from benchmarks.fissure_fit_real import link_to, lung_panels
from benchmarks.harness import before_fissures, fissure_step, on_input_grid, write_report
from benchmarks.real_scans import REAL_DIR, REPO_ROOT, SCANS

MODES = ("network", "fit", "global")


def shares_percent(mask: sitk.Image) -> dict[str, float]:
    """Each lobe's share of both lungs (percent)."""
    labels = sitk.GetArrayViewFromImage(mask)
    counts = np.bincount(labels.ravel(), minlength=6)
    total = float(counts[1:6].sum())
    return {lobe.name: 100.0 * counts[int(lobe)] / total if total else float("nan") for lobe in LOBES}


def picture(image: sitk.Image, masks: dict[str, sitk.Image]) -> np.ndarray:
    """Per lung: network vs fit, network vs global (sagittal, through the lung's median column)."""
    return lung_panels(image, masks["network"], [masks["fit"], masks["global"]])


def run_scan(name: str, segmenter: LobeSegmenter, img_dir: Path) -> dict:
    """One scan's row: steps 1-4 once, the fissure step in every mode, the measures and the picture."""
    image = read_image(REAL_DIR / name).image
    try:
        case = before_fissures(segmenter, image)
    except InputError as exc:
        return {"name": name, "error": str(exc)}
    masks, sections, seconds = {}, {}, {}
    for mode in MODES:
        started = time.perf_counter()
        fitted = fissure_step(case, mode)
        seconds[mode] = time.perf_counter() - started
        masks[mode], sections[mode] = on_input_grid(case, fitted, image), fitted.section
    write_png(picture(image, masks), img_dir / f"{name.split('.')[0]}.png")
    return {
        "name": name,
        "spacing": tuple(round(s, 2) for s in image.GetSpacing()),
        "borders": {m: border_report(image, masks[m]) for m in MODES},
        "shares": {m: shares_percent(masks[m]) for m in MODES},
        "global": sections["global"],
        "seconds": seconds,
        "predict_s": case.network_s + case.lung_s + seconds["global"],  # steps 1-5 in global mode
    }


def _index(section: dict, border: str) -> str:
    entry = section["borders"][border]
    return entry["status"] if entry["index"] is None else f"{entry['index']:.2f}"


def _share(share: float, lobe: str) -> str:
    population = POPULATION_SHARES[lobe]
    return f"{share:.1f} ({population.z_score(share):+.1f})"


def to_markdown(rows: list[dict], command: str, img_rel: str) -> str:
    lines = [f"Reproduce: `{command}` (reads `../shared/data/real/`).", "",
             "Border vessel index per border, network / fit / global:", "",
             "| scan | voxels (mm) | " + " | ".join(b.name for b in BORDERS) + " | fit s | global s | predict s (global) | global share |",
             "| --- | --- |" + " --- |" * (len(BORDERS) + 4)]
    for r in rows:
        if "error" in r:
            continue
        voxels = "×".join(f"{s:g}" for s in r["spacing"]) + ("" if r["borders"]["network"]["reliable"] else " (coarse)")
        cells = [" / ".join(_index(r["borders"][m], b.name) for m in MODES) for b in BORDERS]
        sec = r["seconds"]
        lines.append(f"| {r['name']} | {voxels} | " + " | ".join(cells)
                     + f" | {sec['fit']:.1f} | {sec['global']:.1f} | {r['predict_s']:.1f} | {100 * sec['global'] / r['predict_s']:.0f} % |")
    lines += ["", "Lobe share of both lungs, percent (z against Yamada 2020), network / fit / global:", "",
              "| scan | " + " | ".join(lobe.name for lobe in LOBES) + " |", "| --- |" + " --- |" * len(LOBES)]
    for r in rows:
        if "error" not in r:
            lines.append(f"| {r['name']} | " + " | ".join(" / ".join(_share(r["shares"][m][lobe.name], lobe.name) for m in MODES)
                                                       for lobe in LOBES) + " |")
    lines += ["", "Global search per fissure (decision; chosen and runner-up: origin, score, band index):", ""]
    for r in rows:
        if "error" in r:
            continue
        parts = []
        for f in FISSURES:
            e = r["global"]["fissures"][f]
            ch, ru = e.get("chosen"), e.get("runner_up")
            text = f"{f}: {e['decision']}"
            if ch:
                text += f", chosen {ch['origin']} {ch['score']} ({ch['band_index']})"
            if ru:
                text += f", runner-up {ru['origin']} {ru['score']} ({ru['band_index']}) {e['runner_up_distance_mm']} mm away"
            parts.append(text)
        lines.append(f"- {r['name']}: " + "; ".join(parts) + ("; WARN " + " | ".join(r["global"]["warnings"]) if r["global"]["warnings"] else ""))
    lines += ["", "Sagittal slices, right lung (network vs fit, network vs global), then left lung; network red, mode green, both yellow:", ""]
    lines += [f"![{r['name']}]({img_rel}/{r['name'].split('.')[0]}.png)" for r in rows if "error" not in r]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=None, help="checkpoint (default: the shipped weights)")
    parser.add_argument("--rows", default="/tmp/fissure-search-rows", help="folder keeping each scan's row (JSON)")
    parser.add_argument("--out", default=None, help="Markdown file to write (default: print only)")
    parser.add_argument("--img", default=str(REPO_ROOT / "results" / "fissure-search"), help="folder for the pictures")
    parser.add_argument("--scans", nargs="*", default=list(SCANS), help="scans to run now (default: all; none: only the table)")
    args = parser.parse_args(argv)
    if not REAL_DIR.is_dir():
        print(f"error: {REAL_DIR} not found", file=sys.stderr)
        return 1
    unknown = sorted(set(args.scans) - set(SCANS))
    if unknown:
        print(f"error: unknown scans {unknown}; known: {', '.join(SCANS)}", file=sys.stderr)
        return 1
    rows_dir, img_dir = Path(args.rows), Path(args.img)
    rows_dir.mkdir(parents=True, exist_ok=True)
    img_dir.mkdir(parents=True, exist_ok=True)
    segmenter = LobeSegmenter(args.weights, "cpu") if args.scans else None
    for name in args.scans:
        row = run_scan(name, segmenter, img_dir)
        (rows_dir / f"{name.split('.')[0]}.json").write_text(json.dumps(row, indent=1))
        print(f"{name}: done", file=sys.stderr)
    rows = [json.loads((rows_dir / f"{n.split('.')[0]}.json").read_text()) for n in SCANS
            if (rows_dir / f"{n.split('.')[0]}.json").exists()]
    command = "python -m benchmarks.fissure_search_real --scans NAME (once per scan), then --scans with no name"
    write_report(to_markdown(rows, command, link_to(img_dir, args.out)), [], args.out, None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
