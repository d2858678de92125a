"""The fissure fit on the real scans of ../shared/data/real: border vessel index before and after.

    python -m benchmarks.fissure_fit_real [--weights PATH] [--out FILE.md] [--img DIR]

Per scan: the shipped steps up to the fissure step once, then the fissure step
(``algorithm.pipeline.fissures.refine_lobes``, what ``LobeSegmenter`` runs) with the network's borders
(mode "network", the paper's path) and refitted (mode "fit", the default), each on the input grid
(``benchmarks.harness.fissure_variants``); the border vessel index (``algorithm.report.border_index``) of every interlobar border of both, the decision
per fissure, the fit's time against the whole prediction's, and a picture per scan (IMG/NAME.png):
a sagittal slice through each lung in the lung window, the network's interlobar borders in red,
the fit's in green (yellow where both agree). No lobe reference exists for these scans: the index
is the number that judges a border against the scan itself.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from skimage.transform import resize

from algorithm.errors import InputError
from algorithm.fissure_fit import FISSURES
from algorithm.io.reading import read_image
from algorithm.io.writing import write_png
from algorithm.labels import Lobe
from algorithm.report.border_index import BORDERS, border_report
from algorithm.segmenter import LobeSegmenter
from benchmarks.harness import fissure_variants
from benchmarks.real_scans import REAL_DIR, REPO_ROOT, SCANS

LUNG_WINDOW_HU = (-1350.0, 150.0)
PANEL_PX = 320
NETWORK_RGB, FIT_RGB, BOTH_RGB = (255, 40, 40), (40, 230, 40), (255, 230, 0)


def _interlobar(labels: np.ndarray) -> np.ndarray:
    """Pixels of a 2-D label plane with a 4-neighbour in another lobe."""
    edge = np.zeros(labels.shape, bool)
    for axis in (0, 1):
        a = np.moveaxis(labels, axis, 0)
        e = np.moveaxis(edge, axis, 0)
        differ = (a[1:] != a[:-1]) & (a[1:] > 0) & (a[:-1] > 0)
        e[1:] |= differ
        e[:-1] |= differ
    return edge


def sagittal_panel(hu: np.ndarray, network: np.ndarray, fit: np.ndarray, spacing_zyx, x: int) -> np.ndarray:
    """One sagittal panel (superior up, anterior left) of LPS arrays at column ``x``."""
    dz, dy, _ = spacing_zyx
    planes = [hu[::-1, :, x].astype(np.float32), network[::-1, :, x], fit[::-1, :, x]]
    h_mm, w_mm = planes[0].shape[0] * dz, planes[0].shape[1] * dy
    scale = PANEL_PX / max(h_mm, w_mm)
    shape = (max(1, round(h_mm * scale)), max(1, round(w_mm * scale)))
    grey = resize(planes[0], shape, order=1, preserve_range=True, anti_aliasing=False)
    lo, hi = LUNG_WINDOW_HU
    rgb = np.repeat((np.clip((grey - lo) / (hi - lo), 0, 1) * 255)[..., None], 3, axis=2).astype(np.uint8)
    edges = [_interlobar(np.rint(resize(p.astype(np.float32), shape, order=0, preserve_range=True, anti_aliasing=False)).astype(np.uint8))
             for p in planes[1:]]
    rgb[edges[0]] = NETWORK_RGB
    rgb[edges[1]] = FIT_RGB
    rgb[edges[0] & edges[1]] = BOTH_RGB
    panel = np.zeros((PANEL_PX, PANEL_PX, 3), np.uint8)
    panel[: rgb.shape[0], : rgb.shape[1]] = rgb[:PANEL_PX, :PANEL_PX]
    return panel


def link_to(folder: Path, out: str | None) -> str:
    """``folder`` as a link from the Markdown's folder (without ``out``: docs/, where
    docs/results.md quotes the table)."""
    text_dir = Path(out).resolve().parent if out else REPO_ROOT / "docs"
    return os.path.relpath(folder.resolve(), text_dir)


def picture(image: sitk.Image, network: sitk.Image, fit: sitk.Image) -> np.ndarray:
    """Sagittal panels through the middle of the right and of the left lung, side by side."""
    return lung_panels(image, network, [fit])


def lung_panels(image: sitk.Image, network: sitk.Image, others: list[sitk.Image]) -> np.ndarray:
    """Per lung (right, then left), one sagittal panel through its median column for each mask of
    ``others`` against the network's, side by side."""
    hu, net, *rest = (sitk.GetArrayFromImage(sitk.DICOMOrient(i, "LPS")) for i in (image, network, *others))
    spacing = sitk.DICOMOrient(image, "LPS").GetSpacing()[::-1]
    panels = []
    for lobes in ((Lobe.RUL, Lobe.RLL, Lobe.RML), (Lobe.LUL, Lobe.LLL)):
        cols = np.flatnonzero(np.isin(net, [int(v) for v in lobes]).any(axis=(0, 1)))
        x = int(np.median(cols)) if len(cols) else hu.shape[2] // 2
        panels += [sagittal_panel(hu, net, other, spacing, x) for other in rest]
    return np.concatenate(panels, axis=1)


def run_scan(name: str, segmenter: LobeSegmenter, img_dir: Path) -> dict:
    image = read_image(REAL_DIR / name).image
    try:
        masks = fissure_variants(segmenter, image)
    except InputError as exc:
        return {"name": name, "error": str(exc)}
    write_png(picture(image, masks.network, masks.fit), img_dir / f"{name.split('.')[0]}.png")
    return {
        "name": name,
        "spacing": tuple(round(s, 2) for s in image.GetSpacing()),
        "before": border_report(image, masks.network),
        "after": border_report(image, masks.fit),
        "fissures": masks.section["fissures"],
        "predict_s": masks.before_s,
        "fit_s": masks.fit_s,
    }


def _index(section: dict, border: str) -> str:
    entry = section["borders"][border]
    return entry["status"] if entry["index"] is None else f"{entry['index']:.2f}"


def to_markdown(rows: list[dict], command: str, img_rel: str) -> str:
    lines = [
        f"Reproduce: `{command}` (reads `../shared/data/real/`).",
        "",
        "Border vessel index, network → fit (about 0: the border follows a vessel-free band; about 1: it cuts "
        "through vessels; voxels over 3 mm: coarse, see docs/outputs.md):",
        "",
        "| scan | voxels (mm) | " + " | ".join(b.name for b in BORDERS) + " | decisions (LO, RO, H) | fit s | steps 1-4 s |",
        "| --- | --- |" + " --- |" * (len(BORDERS) + 3),
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['name']} | refused: {r['error']} |" + " |" * (len(BORDERS) + 3))
            continue
        voxels = "×".join(f"{s:g}" for s in r["spacing"]) + ("" if r["before"]["reliable"] else " (coarse)")
        cells = [f"{_index(r['before'], b.name)} → {_index(r['after'], b.name)}" for b in BORDERS]
        decisions = ", ".join(r["fissures"][f]["decision"] for f in FISSURES)
        lines.append(f"| {r['name']} | {voxels} | " + " | ".join(cells) + f" | {decisions} | {r['fit_s']:.1f} | {r['predict_s']:.1f} |")
    lines += ["", "Why each fissure went as it did:", ""]
    for r in rows:
        if "error" not in r:
            lines.append(f"- {r['name']}: " + "; ".join(f"{f}: {r['fissures'][f]['decision']} ({r['fissures'][f]['reason']})" for f in FISSURES))
    lines += ["", "Sagittal slices through the right (left panel) and left lung; network borders red, fit green, both yellow:", ""]
    for r in rows:
        if "error" not in r:
            stem = r["name"].split(".")[0]
            lines += [f"![{stem}]({img_rel}/{stem}.png)", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=None, help="checkpoint (default: the shipped weights)")
    parser.add_argument("--out", default=None, help="Markdown file to write (default: print only)")
    parser.add_argument("--img", default=str(REPO_ROOT / "results" / "fissure-fit"), help="folder for the pictures")
    args = parser.parse_args(argv)
    if not REAL_DIR.is_dir():
        print(f"error: {REAL_DIR} not found", file=sys.stderr)
        return 1
    segmenter = LobeSegmenter(args.weights, "cpu")
    img_dir = Path(args.img)
    img_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in SCANS:
        rows.append(run_scan(name, segmenter, img_dir))
        print(f"{name}: done", file=sys.stderr)
    command = "python -m benchmarks.fissure_fit_real " + " ".join(argv if argv is not None else sys.argv[1:])
    text = to_markdown(rows, command.strip(), link_to(Path(args.img), args.out))
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
