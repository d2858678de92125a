"""The shipped weights on the real scans of ../shared/data/real (no lobe references there).

    python -m benchmarks.real_scans [--weights PATH] [--out docs/real-scans.md]  (docs/results.md quotes it)

Per scan: the five lobes present, each one connected piece, left lobes on the patient's left
(physical LPS x of the centroids), volumes, quality flags, run time, and the preview picture
(docs/img/real/NAME.png). Plausibility only: these scans have no lobe reference.
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

from algorithm.network.checkpoint import load_checkpoint
from algorithm.errors import InputError
from algorithm.labels import LEFT_LOBES, LOBES, RIGHT_LOBES
from algorithm.pipeline import segment
from algorithm.report.preview import render_preview
from algorithm.io.reading import read_image
from algorithm.io.writing import write_png

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_DIR = REPO_ROOT.parent / "shared" / "data" / "real"
SCANS = (
    "lung-pet-ct-dx-A0001-dicom",
    "lung-pet-ct-dx-A0002-apex-cut-8mm.mha",
    "copdgene-10002K-ct64-dicom",
    "copdgene-10002K-ct64.nrrd",
    "totalseg-heart-crop-partial-lungs.nii.gz",
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


def run_scan(name: str, checkpoint, device, image_dir: Path) -> dict:
    loaded = read_image(REAL_DIR / name)
    started = time.perf_counter()
    try:
        result = segment(loaded.image, checkpoint, device)
    except InputError as exc:
        return {"name": name, "error": str(exc)}
    seconds = time.perf_counter() - started
    preview = render_preview(loaded.image, result.mask, result.report)
    write_png(preview, image_dir / f"{name.split('.')[0]}.png")
    return {
        "name": name,
        "size": loaded.image.GetSize(),
        "spacing": tuple(round(s, 2) for s in loaded.image.GetSpacing()),
        "volumes_ml": result.report["volumes_ml"],
        "flags": [f["code"] + (f"({f['lobe']})" if f.get("lobe") else "") for f in result.report.get("quality_flags", [])],
        "warnings": loaded.warnings + result.report.get("warnings", []),
        "seconds": seconds,
        **lobe_checks(result.mask),
    }


def to_markdown(rows: list[dict], command: str) -> str:
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
    for r in rows:
        if "error" not in r:
            lines.append(f"![{r['name']}](img/real/{r['name'].split('.')[0]}.png)")
            lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=None)
    parser.add_argument("--out", default=str(REPO_ROOT / "docs" / "real-scans.md"))
    args = parser.parse_args(argv)
    if not REAL_DIR.is_dir():
        print(f"error: {REAL_DIR} not found", file=sys.stderr)
        return 1
    device = torch.device("cpu")
    checkpoint = load_checkpoint(args.weights, device)
    image_dir = Path(args.out).parent / "img" / "real"
    image_dir.mkdir(parents=True, exist_ok=True)
    rows = [run_scan(name, checkpoint, device, image_dir) for name in SCANS]
    command = "python -m benchmarks.real_scans " + " ".join(argv if argv is not None else sys.argv[1:])
    Path(args.out).write_text(to_markdown(rows, command.strip()) + "\n")
    print(Path(args.out).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
