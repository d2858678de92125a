"""The lung's extent from the scan (algorithm/lung_extent.py): before and after, on phantoms with a
reference and on the real scans without one.

    python -m benchmarks.lung_extent phantoms DATA_DIR [--out results/lung-extent/phantoms.json]
    python -m benchmarks.lung_extent real [--out results/lung-extent/real.json] [--images results/lung-extent]

Both run the shipped steps once per case up to the lung step (``benchmarks.harness.before_fissures``)
and derive two masks from the same cleaned network output: *before* (nearest-neighbour argmax on the
input grid, the pipeline until issue 16) and *after* (the lung step, ``lung_extent``). Phantoms (DATA_DIR as written by ``python -m training phantoms``): lung IoU,
mean lobe IoU and HD95, the dense non-lung taken as lung (mL above -100 HU outside the reference
lung: chest wall, fluid) and the reference's dense lung kept with its lobe (consolidation), per
case and per pathology. Real scans: the lobes' volume against the air-filled lung inside the body
(below -400 HU in 3D pieces of at least 1 % of that air, each either not connected within its slice
to the slice's edge, or of lung density where a field of view cuts through the lungs: the lungs and
the airways joined to them, without stray gas), the share of it the lobes cover, and a picture
before (top) and after (bottom) through the same planes.

The phantoms' dense lung (consolidation, vessels) is split by its depth in the reference lung: the
rim within ``RIM_MM`` of the reference pleura, where the reference's own partial-volume pleura
(drawn on the generator's ~1.7-2 mm model grid) cannot be told from chest wall, and the interior
beyond it. ``network_dense_kept_share`` asks the issue's question directly: of the dense reference
lung the network gave a lobe, how much keeps that lobe after the step.
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

from algorithm.io.reading import read_image
from algorithm.io.writing import write_png
from algorithm.labels import LOBES
from algorithm.lung_extent import LungExtent, LungExtentSettings, below
from algorithm.pipeline.clean_up import on_scan_grid
from algorithm.pipeline.input_grid import to_input_grid
from algorithm.postprocessing import AIR_MAX_HU, air_around_body
from algorithm.preprocessing import labels_to_canonical
from algorithm.report.preview import render_preview
from algorithm.segmenter import LobeSegmenter
from benchmarks.harness import before_fissures
from benchmarks.real_scans import REAL_DIR, SCANS

REPO_ROOT = Path(__file__).resolve().parents[1]
# every real scan once (the COPDGene DICOM folder is the same scan as its NRRD file)
REAL_SCANS = tuple(name for name in SCANS if name != "copdgene-10002K-ct64-dicom")
DENSE_HU = -100.0  # above: chest wall, fluid, consolidation; never aerated lung
# Deeper than this the phantom reference's pleura is unambiguous: about 1.5 of its model-grid voxels.
RIM_MM = 3.0
# Outside air lies at -930 to -1000 HU on the real scans (table, blankets, partial volume included);
# lung parenchyma at -800 to -920: an air piece at the field of view's edge with a median above this
# is lung that the field of view cuts (the heart crop), not air around the body.
EDGE_LUNG_MEDIAN_HU = -900.0
# Gas in the stomach and bowel (the heart crop's 47 mL at -962 HU) is inside the body but not lung:
# a small piece at nearly air density. Lung, even emphysematous (COPDGene: -918), holds vessels and
# walls that lift its median, and a whole lung is never this small a share of the lungs' air.
GAS_MEDIAN_HU = -950.0
GAS_MAX_SHARE = 0.05


def before_and_after(
    image: sitk.Image, segmenter: LobeSegmenter, settings: LungExtentSettings | None = None
) -> tuple[sitk.Image, sitk.Image, LungExtent, dict]:
    """The two masks from one run of the shipped steps up to the lung step
    (``benchmarks.harness.before_fissures``), the step's findings and the seconds each way took.

    *after*: the lung step's lobes on the input grid; *before*: the cleaned network lobes, nearest
    neighbour on the input grid (with the shipped scan-grid clean-up where that grid is coarser)."""
    case = before_fissures(segmenter, image, settings)
    started = time.perf_counter()
    nearest = on_scan_grid(labels_to_canonical(case.cleaned.labels, case.scan), case.scan)
    before = to_input_grid(nearest, case.scan, image).mask
    middle = time.perf_counter()
    after = to_input_grid(case.lobes.labels, case.scan, image).mask
    seconds = {"before_s": middle - started, "after_s": case.lung_s + time.perf_counter() - middle,
               **case.prediction.timings_s}
    return before, after, case.lobes.extent, seconds


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return float(np.count_nonzero(a & b) / union) if union else 1.0


def phantom_scores(
    mask: np.ndarray, ref: np.ndarray, hu: np.ndarray, spacing_zyx, voxel_ml: float, network: np.ndarray | None = None
) -> dict:
    """Lung and lobe agreement with the reference; dense lung kept in the reference's rim and
    interior; with ``network`` (the nearest-neighbour argmax), the share of the dense lung it gave a
    lobe that ``mask`` keeps with that lobe."""
    from training.evaluation.metrics import lobe_scores  # benchmarks may use training/; algorithm/ never does

    scores = lobe_scores(mask, ref, spacing_zyx)
    dense = ~below(hu, DENSE_HU)
    ref_dense = dense & (ref > 0)
    depth_mm = ndimage.distance_transform_edt(ref > 0, sampling=spacing_zyx)
    interior = ref_dense & (depth_mm > RIM_MM)
    rim = ref_dense & ~interior
    result = {
        "lung_iou": _iou(mask > 0, ref > 0),
        "lobe_iou": float(np.mean([s.iou for s in scores.values()])),
        "hd95_mm": float(np.mean([s.hd95_mm for s in scores.values()])),
        "dense_non_lung_taken_ml": float(np.count_nonzero(dense & (mask > 0) & (ref == 0)) * voxel_ml),
        "dense_lung_kept_share": _kept_share(mask, ref, ref_dense),
        "dense_interior_kept_share": _kept_share(mask, ref, interior),
        "dense_rim_kept_share": _kept_share(mask, ref, rim),
        "dense_interior_ml": float(np.count_nonzero(interior) * voxel_ml),
        "dense_rim_ml": float(np.count_nonzero(rim) * voxel_ml),
    }
    if network is not None:
        given = ref_dense & (network == ref)
        result["network_dense_kept_share"] = _kept_share(mask, ref, given)
        result["network_dense_interior_kept_share"] = _kept_share(mask, ref, given & interior)
    return result


def _kept_share(mask: np.ndarray, ref: np.ndarray, where: np.ndarray) -> float | None:
    """The share of ``where`` that ``mask`` labels as the reference does (None where it is empty)."""
    return float(np.mean(mask[where] == ref[where])) if where.any() else None


def run_phantoms(data: Path, segmenter: LobeSegmenter, settings: LungExtentSettings | None = None) -> list[dict]:
    with open(data / "cases.csv") as handle:
        cases = {row["name"]: row for row in csv.DictReader(handle)}
    rows = []
    for name, meta in sorted(cases.items()):
        image = sitk.ReadImage(str(next((data / "images").glob(f"{name}.*"))))
        ref = sitk.GetArrayFromImage(sitk.ReadImage(str(next((data / "labels").glob(f"{name}.*")))))
        before, after, extent, seconds = before_and_after(image, segmenter, settings)
        hu = sitk.GetArrayViewFromImage(image)
        spacing = tuple(reversed(image.GetSpacing()))
        voxel_ml = float(np.prod(spacing)) / 1000.0
        row = {"name": name, "pathology": meta["pathology"], "size": list(image.GetSize()),
               "spacing_mm": [round(s, 3) for s in image.GetSpacing()], **seconds,
               "network_unlabelled_share": extent.network_unlabelled_share}
        network = sitk.GetArrayViewFromImage(before)
        for when, mask in (("before", before), ("after", after)):
            scores = phantom_scores(sitk.GetArrayViewFromImage(mask), ref, hu, spacing, voxel_ml, network)
            row.update({f"{key}_{when}": value for key, value in scores.items()})
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def aerated_lung(hu: np.ndarray) -> np.ndarray:
    """Air inside the body in large pieces: a threshold reference of the air-filled lung that owes
    nothing to the network or to lung_extent (it includes the trachea and main bronchi).

    Air not connected within its slice to the slice's edge counts in 3D pieces of at least 1 % of
    that air (whole chests). Air that is connected to the edge counts where its 3D piece is of lung
    density (median above ``EDGE_LUNG_MEDIAN_HU``, at least 1 % of all air): a field of view that
    cuts through the lungs opens them to the edge, and the in-slice rule alone calls them outside air.
    Small pieces at nearly air density (stomach and bowel gas) are left out.
    """
    air = below(hu, AIR_MAX_HU)
    at_edge = air_around_body(air)
    lung = _large_pieces(air & ~at_edge, 0.01)
    min_edge_piece = 0.01 * np.count_nonzero(air)
    edge_pieces, _ = ndimage.label(at_edge)
    for index, box in enumerate(ndimage.find_objects(edge_pieces), start=1):
        piece = edge_pieces[box] == index
        if piece.sum() >= min_edge_piece and np.median(hu[box][piece]) > EDGE_LUNG_MEDIAN_HU:
            lung[box] |= piece
    pieces, _ = ndimage.label(lung)
    total = np.count_nonzero(lung)
    for index, box in enumerate(ndimage.find_objects(pieces), start=1):
        piece = pieces[box] == index
        if piece.sum() < GAS_MAX_SHARE * total and np.median(hu[box][piece]) < GAS_MEDIAN_HU:
            lung[box] &= ~piece
    return lung


def _large_pieces(mask: np.ndarray, min_share: float) -> np.ndarray:
    """The 3D pieces of ``mask`` holding at least ``min_share`` of its voxels."""
    pieces, count = ndimage.label(mask)
    if count == 0:
        return mask
    size = np.bincount(pieces.ravel())
    size[0] = 0
    return (size >= min_share * size.sum())[pieces]


def run_real(segmenter: LobeSegmenter, image_dir: Path) -> list[dict]:
    rows = []
    image_dir.mkdir(parents=True, exist_ok=True)
    for name in REAL_SCANS:
        image = read_image(REAL_DIR / name).image
        before, after, extent, seconds = before_and_after(image, segmenter)
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
    parser.add_argument("--images", type=Path, default=REPO_ROOT / "results" / "lung-extent")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dense-thick-blocks", type=int, default=LungExtentSettings.dense_thick_blocks,
                        help="phantoms: LungExtentSettings.dense_thick_blocks (99: the rim rule before it existed)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    segmenter = LobeSegmenter(None, torch.device("cpu"))
    if args.what == "phantoms":
        if args.data is None or not (args.data / "cases.csv").is_file():
            print("error: give a phantom folder with cases.csv, images/ and labels/", file=sys.stderr)
            return 1
        rows = run_phantoms(args.data, segmenter, LungExtentSettings(dense_thick_blocks=args.dense_thick_blocks))
    else:
        if not REAL_DIR.is_dir():
            print(f"error: {REAL_DIR} not found", file=sys.stderr)
            return 1
        rows = run_real(segmenter, args.images)
    out = args.out or REPO_ROOT / "results" / "lung-extent" / f"{args.what}.json"
    out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
