"""The lung's extent from the scan (algorithm/lung_extent.py): before and after, on phantoms with a
reference and on the real scans without one.

    python -m benchmarks.lung_extent phantoms DATA_DIR [--out docs/lung-extent-phantoms.json]
    python -m benchmarks.lung_extent real [--out docs/lung-extent-real.json] [--images docs/img/lung-extent]

Both run the network once per case and derive two masks from the same cleaned network output:
*before* (nearest-neighbour argmax on the input grid, the pipeline until issue 16) and *after*
(``lung_extent``). Phantoms (DATA_DIR as written by ``python -m training phantoms``): lung IoU,
mean lobe IoU and HD95, the dense non-lung taken as lung (mL above -100 HU outside the reference
lung: chest wall, fluid) and the reference's dense lung kept with its lobe (consolidation), per
case and per pathology. Real scans: the lobes' volume against the air-filled lung inside the body
(below -400 HU, not connected within its slice to the slice's edge, in 3D pieces of at least 1 % of
that air: the lungs and the airways joined to them, without stray gas), the share of it the lobes
cover, and a picture before (top) and after (bottom) through the same planes.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from scipy import ndimage

from algorithm.inference import TilingSettings, bbox_margin_voxels, predict_network_grid
from algorithm.io.reading import read_image
from algorithm.io.writing import write_png
from algorithm.labels import LOBES
from algorithm.lung_extent import LungExtent, LungExtentSettings, NetworkLobes, below, lung_extent
from algorithm.network.checkpoint import load_checkpoint
from algorithm.postprocessing import AIR_MAX_HU, air_around_body, canonical_to_input_mask, clean_labels, to_input_mask
from algorithm.preprocessing import preprocess, to_canonical
from algorithm.report.preview import render_preview
from benchmarks.real_scans import REAL_DIR, SCANS

REPO_ROOT = Path(__file__).resolve().parents[1]
# every real scan once (the COPDGene DICOM folder is the same scan as its NRRD file)
REAL_SCANS = tuple(name for name in SCANS if name != "copdgene-10002K-ct64-dicom")
DENSE_HU = -100.0  # above: chest wall, fluid, consolidation; never aerated lung


def before_and_after(
    image: sitk.Image, checkpoint, device, settings: LungExtentSettings | None = None
) -> tuple[sitk.Image, sitk.Image, LungExtent, dict]:
    """The two masks from one network run, the step's findings and the seconds each way took."""
    scan = preprocess(image, checkpoint.settings.inplane_size)
    tiling = TilingSettings()
    tiling.bbox_margin_vox = bbox_margin_voxels(checkpoint.settings.bbox_margin_mm, scan.spacing_mm_zyx)
    prediction = predict_network_grid(checkpoint.model, scan.array, device, tiling)
    labels = clean_labels(prediction.labels, scan.array)
    started = time.perf_counter()
    before = to_input_mask(labels, scan, image)
    middle = time.perf_counter()
    hu = sitk.GetArrayViewFromImage(canonical := to_canonical(image))
    extent = lung_extent(hu, scan.canonical_spacing_mm_zyx, NetworkLobes(labels, prediction.probabilities), settings)
    after = canonical_to_input_mask(extent.labels, scan, image)
    del canonical
    seconds = {"before_s": middle - started, "after_s": time.perf_counter() - middle, **prediction.timings_s}
    return before, after, extent, seconds


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return float(np.count_nonzero(a & b) / union) if union else 1.0


def phantom_scores(mask: np.ndarray, ref: np.ndarray, hu: np.ndarray, spacing_zyx, voxel_ml: float) -> dict:
    from training.metrics import lobe_scores  # benchmarks may use training/; algorithm/ never does

    scores = lobe_scores(mask, ref, spacing_zyx)
    dense = ~below(hu, DENSE_HU)
    ref_dense = dense & (ref > 0)
    return {
        "lung_iou": _iou(mask > 0, ref > 0),
        "lobe_iou": float(np.mean([s.iou for s in scores.values()])),
        "hd95_mm": float(np.mean([s.hd95_mm for s in scores.values()])),
        "dense_non_lung_taken_ml": float(np.count_nonzero(dense & (mask > 0) & (ref == 0)) * voxel_ml),
        "dense_lung_kept_share": float(np.mean(mask[ref_dense] == ref[ref_dense])) if ref_dense.any() else None,
    }


def run_phantoms(data: Path, checkpoint, device, settings: LungExtentSettings | None = None) -> list[dict]:
    with open(data / "cases.csv") as handle:
        cases = {row["name"]: row for row in csv.DictReader(handle)}
    rows = []
    for name, meta in sorted(cases.items()):
        image = sitk.ReadImage(str(next((data / "images").glob(f"{name}.*"))))
        ref = sitk.GetArrayFromImage(sitk.ReadImage(str(next((data / "labels").glob(f"{name}.*")))))
        before, after, extent, seconds = before_and_after(image, checkpoint, device, settings)
        hu = sitk.GetArrayViewFromImage(image)
        spacing = tuple(reversed(image.GetSpacing()))
        voxel_ml = float(np.prod(spacing)) / 1000.0
        row = {"name": name, "pathology": meta["pathology"], "size": list(image.GetSize()),
               "spacing_mm": [round(s, 3) for s in image.GetSpacing()], **seconds,
               "network_unlabelled_share": extent.network_unlabelled_share}
        for when, mask in (("before", before), ("after", after)):
            scores = phantom_scores(sitk.GetArrayViewFromImage(mask), ref, hu, spacing, voxel_ml)
            row.update({f"{key}_{when}": value for key, value in scores.items()})
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def aerated_lung(hu: np.ndarray) -> np.ndarray:
    """Air inside the body in large pieces: a threshold reference of the air-filled lung that owes
    nothing to the network or to lung_extent (it includes the trachea and main bronchi)."""
    air = below(hu, AIR_MAX_HU)
    inside = air & ~air_around_body(air)
    pieces, count = ndimage.label(inside)
    if count == 0:
        return inside
    size = np.bincount(pieces.ravel())
    size[0] = 0
    return (size >= 0.01 * size.sum())[pieces]


def run_real(checkpoint, device, image_dir: Path) -> list[dict]:
    rows = []
    image_dir.mkdir(parents=True, exist_ok=True)
    for name in REAL_SCANS:
        image = read_image(REAL_DIR / name).image
        before, after, extent, seconds = before_and_after(image, checkpoint, device)
        hu = sitk.GetArrayViewFromImage(image)
        reference = aerated_lung(hu)
        voxel_ml = float(np.prod(image.GetSpacing())) / 1000.0
        row = {"name": name, "size": list(image.GetSize()), "spacing_mm": [round(s, 3) for s in image.GetSpacing()],
               "aerated_lung_ml": float(reference.sum() * voxel_ml), **seconds,
               "network_unlabelled_share": extent.network_unlabelled_share, "airway_ml": extent.airway_ml}
        for when, mask in (("before", before), ("after", after)):
            labels = sitk.GetArrayViewFromImage(mask)
            row[f"lobes_ml_{when}"] = float(np.count_nonzero(labels) * voxel_ml)
            row[f"covered_{when}"] = float(np.count_nonzero(reference & (labels > 0)) / max(1, reference.sum()))
            row[f"lobe_ml_{when}"] = {lobe.name: float(np.count_nonzero(labels == lobe) * voxel_ml) for lobe in LOBES}
        picture = np.concatenate([render_preview(image, before, planes_from=after), render_preview(image, after)], axis=0)
        write_png(picture, image_dir / f"{name.split('.')[0]}.png")
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("phantoms", "real"))
    parser.add_argument("data", nargs="?", type=Path, help="phantom folder (images/, labels/, cases.csv)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--images", type=Path, default=REPO_ROOT / "docs" / "img" / "lung-extent")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dense-thick-blocks", type=int, default=LungExtentSettings.dense_thick_blocks,
                        help="phantoms: LungExtentSettings.dense_thick_blocks (99: the rim rule before it existed)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    checkpoint = load_checkpoint(None, device)
    if args.what == "phantoms":
        if args.data is None or not (args.data / "cases.csv").is_file():
            print("error: give a phantom folder with cases.csv, images/ and labels/", file=sys.stderr)
            return 1
        rows = run_phantoms(args.data, checkpoint, device, LungExtentSettings(dense_thick_blocks=args.dense_thick_blocks))
    else:
        if not REAL_DIR.is_dir():
            print(f"error: {REAL_DIR} not found", file=sys.stderr)
            return 1
        rows = run_real(checkpoint, device, args.images)
    out = args.out or REPO_ROOT / "docs" / f"lung-extent-{args.what}.json"
    out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
