"""User points against phantom truth: a fissure misplaced by 20 mm, corrected with 3, 5 and 10 points.

    python -m benchmarks.fissure_points_phantoms --phantoms DIR [--points 3,5,10] [--shift-mm 20]
        [--fissures left_oblique,right_oblique] [--seed 0] [--evidence] [--out FILE.md] [--csv FILE.csv]

DIR holds ``images/`` and ``labels/`` from ``python -m training phantoms``. For each case and
fissure, the truth's lower lobe is grown upwards by ``--shift-mm`` (the fissure placed that much too
high, the other fissures left true); N points are drawn (seeded) on the true fissure in columns at
least 10 mm inside the lung, and ``refine_with_points`` (mode network: only the marked
fissure moves) corrects the mask. Reported per fissure and N: the IoU of the two lobes beside the
fissure before and after, and the surface error: the distance of the true fissure (the midpoints of
the faces between its two sides' voxels) to the fitted surface along its normal, median and 90th
percentile (mm), and the largest residual at the points.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from algorithm.fissure_fit import AnchorSettings, point_residuals_mm
from algorithm.fissure_fit.model import FISSURES, HORIZONTAL, LEFT_OBLIQUE, RIGHT_OBLIQUE
from algorithm.fissure_points.fit import refine_with_points
from algorithm.fissure_points.reading import FissurePoint, FissurePoints
from algorithm.labels import Lobe
from algorithm.preprocessing import to_canonical
from benchmarks.harness import write_report

# (lower lobe, upper lobes) of each fissure
SIDES = {
    LEFT_OBLIQUE: (Lobe.LLL, (Lobe.LUL,)),
    RIGHT_OBLIQUE: (Lobe.RLL, (Lobe.RUL, Lobe.RML)),
    HORIZONTAL: (Lobe.RML, (Lobe.RUL,)),
}
INSET_MM = 10.0  # points are drawn this far inside the fissure's extent (a user marks where it is visible)


def misplaced(truth: np.ndarray, fissure: str, shift_vox: int) -> np.ndarray:
    """``truth`` with the fissure's lower lobe grown ``shift_vox`` slices upwards (z superior)."""
    lower, upper = SIDES[fissure]
    is_lower = truth == lower
    grown = is_lower.copy()
    grown[shift_vox:] |= is_lower[:-shift_vox]
    out = truth.copy()
    out[grown & np.isin(truth, [int(v) for v in upper])] = lower
    return out


def true_fissure_mm(truth: np.ndarray, fissure: str, spacing_zyx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the true fissure's points (z, y, x) mm, mask of those at least INSET_MM inside the lung).

    The points are the midpoints of every face between a lower-lobe voxel and an upper-lobe voxel
    (along any axis): the interface itself, wherever its shape."""
    lower, upper = SIDES[fissure]
    is_lower, is_upper = truth == lower, np.isin(truth, [int(v) for v in upper])
    points = []
    for axis in range(3):
        head = [slice(None)] * 3
        tail = [slice(None)] * 3
        head[axis], tail[axis] = slice(None, -1), slice(1, None)
        faces = (is_lower[tuple(head)] & is_upper[tuple(tail)]) | (is_upper[tuple(head)] & is_lower[tuple(tail)])
        idx = np.argwhere(faces).astype(float)
        idx[:, axis] += 0.5
        points.append(idx)
    idx = np.concatenate(points)
    depth_mm = ndimage.distance_transform_edt(truth > 0, sampling=spacing_zyx)
    inner = depth_mm[tuple(np.round(idx).astype(int).T)] >= INSET_MM
    return idx * spacing_zyx, inner


def one_case(image: sitk.Image, label: sitk.Image, fissure: str, counts: list[int], shift_mm: float, seed: int,
             anchor: AnchorSettings) -> list[dict]:
    canonical, truth_img = to_canonical(image), to_canonical(label)
    truth = sitk.GetArrayFromImage(truth_img)
    spacing = np.array(canonical.GetSpacing()[::-1], float)
    wrong = misplaced(truth, fissure, int(round(shift_mm / spacing[0])))
    surface_mm, inner = true_fissure_mm(truth, fissure, spacing)
    rows = []
    rng = np.random.default_rng(seed)
    for n in counts:
        chosen = surface_mm[rng.choice(np.flatnonzero(inner), size=n, replace=False)]
        points = FissurePoints(tuple(
            FissurePoint(fissure, canonical.TransformContinuousIndexToPhysicalPoint(tuple((p / spacing)[::-1])), f"p{i}")
            for i, p in enumerate(chosen, start=1)
        ), "phantom truth")
        started = time.perf_counter()
        result = refine_with_points(canonical, wrong, points, mode="network", anchor=anchor)
        seconds = time.perf_counter() - started
        error = np.abs(point_residuals_mm(result.surfaces[fissure], surface_mm))
        before = np.abs(point_residuals_mm(result.starts[fissure], surface_mm))
        lower, upper = SIDES[fissure]
        rows.append({
            "fissure": fissure, "points": n,
            "iou_before": _iou(wrong, truth, lower, upper), "iou_after": _iou(result.labels, truth, lower, upper),
            "median_error_before_mm": float(np.median(before)), "median_error_mm": float(np.median(error)),
            "p90_error_mm": float(np.percentile(error, 90)),
            "max_residual_mm": result.section["user_points"]["fissures"][fissure]["max_residual_mm"],
            "time_s": seconds,
        })
    return rows


def _iou(labels: np.ndarray, truth: np.ndarray, lower: Lobe, upper: tuple[Lobe, ...]) -> float:
    """Mean IoU of the lobes beside the fissure (the upper lobes counted together)."""
    out = []
    for group in ((lower,), upper):
        a, b = np.isin(labels, [int(v) for v in group]), np.isin(truth, [int(v) for v in group])
        out.append(float((a & b).sum() / max((a | b).sum(), 1)))
    return float(np.mean(out))


def table(rows: list[dict], command: str, cases: int) -> str:
    lines = [
        f"{cases} phantoms; `{command}`", "",
        "| fissure | points | lobe IoU before | after | median error before (mm) | median error after (mm) | 90th pct (mm) | largest point residual (mm) | time (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(r["fissure"], r["points"]) for r in rows}, key=lambda k: (FISSURES.index(k[0]), k[1]))
    for fissure, n in keys:
        mine = [r for r in rows if r["fissure"] == fissure and r["points"] == n]
        m = {k: float(np.mean([r[k] for r in mine])) for k in mine[0] if k not in ("case", "fissure", "points")}
        lines.append(
            f"| {fissure} | {n} | {m['iou_before']:.3f} | {m['iou_after']:.3f} | {m['median_error_before_mm']:.1f} | "
            f"{m['median_error_mm']:.2f} | {m['p90_error_mm']:.2f} | {m['max_residual_mm']:.2f} | {m['time_s']:.2f} |"
        )
    lines.append("")
    lines.append("Means over the phantoms; errors are distances of the true fissure to the fitted surface along its normal.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phantoms", required=True, help="folder with images/ and labels/")
    parser.add_argument("--points", default="3,5,10", help="point counts, comma-separated")
    parser.add_argument("--shift-mm", type=float, default=20.0, help="how far the fissure is misplaced upwards")
    parser.add_argument("--fissures", default=f"{LEFT_OBLIQUE},{RIGHT_OBLIQUE}", help="fissures to misplace, one at a time")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--evidence", action="store_true", help="polish between the points by the vessel-sparse band")
    parser.add_argument("--out", default=None, help="Markdown file to write (default: print only)")
    parser.add_argument("--csv", default=None, help="per case, fissure and point count")
    args = parser.parse_args(argv)
    root = Path(args.phantoms)
    names = sorted(p.name for p in (root / "images").glob("*.mha") if (root / "labels" / p.name).is_file())
    if not names:
        print(f"error: no phantom with a label in {root}", file=sys.stderr)
        return 1
    counts = [int(v) for v in args.points.split(",")]
    rows = []
    for i, name in enumerate(names):
        image, label = sitk.ReadImage(str(root / "images" / name)), sitk.ReadImage(str(root / "labels" / name))
        for fissure in args.fissures.split(","):
            anchor = AnchorSettings(evidence=args.evidence)
            for row in one_case(image, label, fissure, counts, args.shift_mm, args.seed + i, anchor):
                rows.append({"case": name, **row})
    command = "python -m benchmarks.fissure_points_phantoms " + " ".join(argv if argv is not None else sys.argv[1:])
    write_report(table(rows, command, len(names)), rows, args.out, args.csv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
