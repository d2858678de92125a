"""One-lung versions of a scan: the remaining lung's lobes against its two-lung result (issue 29).

The scan is segmented as it is; then one lung (its lobes in that result, grown by ``--grow-mm``
to take in the pleura) is filled with soft tissue (``--fill-hu``, +35 HU: an airless, collapsed or
opacified lung; noise ``--noise-hu`` so the fill is not flat) and segmented again. Per side filled:
the remaining lung's per-lobe IoU against the two-lung result (issue 29's target: each >= 0.90),
the voxels of the filled side's lobes anywhere in the mask (target: none), and the flags raised.

    python -m benchmarks.one_lung samples/ct/sample-healthy.mha [more scans] [--sides left,right] \
        [--fill-hu 35] [--weights PATH] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from algorithm import LobeSegmenter
from algorithm.io.reading import read_image
from algorithm.labels import LOBES
from algorithm.laterality import SIDE_LOBES, SIDES
from benchmarks.tilt_real import per_lobe_iou, publish


def filled_lung(image: sitk.Image, mask: np.ndarray, side: str, fill_hu: float, noise_hu: float,
                grow_mm: float, seed: int = 0) -> sitk.Image:
    """``image`` with the lobes of ``side`` in ``mask`` (grown by ``grow_mm``) set to ``fill_hu`` plus noise."""
    lung = np.isin(mask, [int(lobe) for lobe in SIDE_LOBES[side]])
    spacing_zyx = np.asarray(image.GetSpacing()[::-1])
    grown = ndimage.distance_transform_edt(~lung, sampling=spacing_zyx) <= grow_mm
    hu = sitk.GetArrayFromImage(image).astype(np.float32)
    rng = np.random.default_rng(seed)
    hu[grown] = fill_hu + rng.normal(0.0, noise_hu, int(np.count_nonzero(grown)))
    out = sitk.GetImageFromArray(hu.astype(sitk.GetArrayViewFromImage(image).dtype))
    out.CopyInformation(image)
    return out


def scan_rows(segmenter: LobeSegmenter, path: Path, sides: tuple[str, ...], fill_hu: float, noise_hu: float,
              grow_mm: float) -> list[dict]:
    image = read_image(path).image
    two_lungs = sitk.GetArrayFromImage(segmenter(image).mask)
    rows = []
    for side in sides:
        result = segmenter(filled_lung(image, two_lungs, side, fill_hu, noise_hu, grow_mm))
        mask = sitk.GetArrayFromImage(result.mask)
        other = next(s for s in SIDES if s != side)
        scores = per_lobe_iou(mask, two_lungs)
        kept = {lobe.name: scores[lobe.name] for lobe in SIDE_LOBES[other]}
        missing_voxels = int(np.count_nonzero(np.isin(mask, [int(lobe) for lobe in SIDE_LOBES[side]])))
        flags = [f["code"] + (f":{f['side']}" if "side" in f else "") for f in result.report.quality_flags]
        rows.append({"scan": path.name, "filled": side, "remaining_lobe_iou": kept,
                     "min": round(min(v for v in kept.values() if v is not None), 4),
                     "filled_side_voxels": missing_voxels, "flags": flags, "lungs": result.report.lungs})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def to_markdown(rows: list[dict]) -> str:
    """The table for docs/robustness.md."""
    lines = ["| scan | filled lung | remaining lobes' IoU vs two-lung result | min | filled side's lobe voxels | flags |",
             "| --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        ious = ", ".join(f"{k} {v:.3f}" for k, v in row["remaining_lobe_iou"].items() if v is not None)
        flags = ", ".join(f for f in row["flags"] if f.startswith(("lung_", "lobes_on"))) or "none"
        lines.append(f"| {row['scan']} | {row['filled']} | {ious} | {row['min']:.3f} | {row['filled_side_voxels']} | {flags} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scans", type=Path, nargs="+", help="CT scans (any readable format)")
    parser.add_argument("--sides", default="left,right", help="which lungs to fill, one run each")
    parser.add_argument("--fill-hu", type=float, default=35.0)
    parser.add_argument("--noise-hu", type=float, default=15.0)
    parser.add_argument("--grow-mm", type=float, default=3.0)
    parser.add_argument("--weights", default=None, help="checkpoint (default: the shipped weights)")
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON")
    args = parser.parse_args(argv)
    sides = tuple(s for s in args.sides.split(",") if s)
    if not sides or any(s not in SIDES for s in sides):
        parser.error("--sides takes left, right or left,right")
    segmenter = LobeSegmenter(args.weights, device="cpu", precision="float32")
    rows = [row for path in args.scans for row in
            scan_rows(segmenter, path, sides, args.fill_hu, args.noise_hu, args.grow_mm)]
    publish(to_markdown(rows), rows, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
