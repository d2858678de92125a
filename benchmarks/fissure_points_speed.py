"""How long ``refine CT MASK --fissure-points FILE`` takes on a large grid.

    python -m benchmarks.fissure_points_speed --ct CT --mask MASK [--size 512x512x400] [--points 5]
        [--workdir DIR] [--repeat 2]

The CT and its lobe mask (e.g. ``predict``'s NAME_lobes.mha) are resampled onto ``--size`` voxels
over the same extent (linear / nearest; the scans stay outside the repository, under --workdir),
``--points`` points per fissure are taken on the mask's own fissures (the faces between its lobes,
at least 10 mm inside the lung), and the whole command runs in a subprocess (reading, the refit,
the relabelling, writing the mask, the JSON and the markups). Reported: wall time per run (s).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from algorithm.fissure_fit.model import FISSURES
from algorithm.preprocessing import to_canonical
from benchmarks.fissure_points_phantoms import true_fissure_mm


def resampled(image: sitk.Image, size_xyz: tuple[int, int, int], nearest: bool) -> sitk.Image:
    spacing = [s * n / m for s, n, m in zip(image.GetSpacing(), image.GetSize(), size_xyz)]
    return sitk.Resample(image, list(size_xyz), sitk.Transform(), sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear,
                         image.GetOrigin(), spacing, image.GetDirection(), -1024 if not nearest else 0, image.GetPixelID())


def points_on_mask(mask: sitk.Image, per_fissure: int, seed: int = 0) -> dict:
    """A Slicer markups document with points on the mask's own fissures (LPS)."""
    canonical = to_canonical(mask)
    labels = sitk.GetArrayFromImage(canonical)
    spacing = np.array(canonical.GetSpacing()[::-1])
    rng = np.random.default_rng(seed)
    markups = []
    for name in FISSURES:
        faces, inner = true_fissure_mm(labels, name, spacing)
        if inner.sum() < per_fissure:
            continue
        chosen = faces[rng.choice(np.flatnonzero(inner), per_fissure, replace=False)]
        controls = [{"id": str(i), "label": f"{name}-{i}",
                     "position": list(canonical.TransformContinuousIndexToPhysicalPoint(tuple((p / spacing)[::-1])))}
                    for i, p in enumerate(chosen, start=1)]
        markups.append({"type": "Fiducial", "coordinateSystem": "LPS", "name": name, "controlPoints": controls})
    return {"markups": markups}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ct", required=True)
    parser.add_argument("--mask", required=True)
    parser.add_argument("--size", default="512x512x400", help="voxels X x Y x Z")
    parser.add_argument("--points", type=int, default=5, help="points per fissure")
    parser.add_argument("--workdir", default="/tmp/fissure_points_speed")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)
    size = tuple(int(v) for v in args.size.lower().split("x"))
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    ct, mask = resampled(sitk.ReadImage(args.ct), size, False), resampled(sitk.ReadImage(args.mask), size, True)
    sitk.WriteImage(ct, str(work / "ct.mha"), useCompression=True)
    sitk.WriteImage(mask, str(work / "mask.mha"), useCompression=True)
    (work / "points.mrk.json").write_text(json.dumps(points_on_mask(mask, args.points)))
    command = [sys.executable, "-m", "algorithm", "refine", str(work / "ct.mha"), str(work / "mask.mha"),
               "--fissure-points", str(work / "points.mrk.json"), "-o", str(work / "out")]
    times = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    report = json.loads((work / "out" / "ct_lobes.json").read_text())
    guided = report["fissures"]["user_points"]["fissures"]
    print(f"`python -m benchmarks.fissure_points_speed {' '.join(argv if argv is not None else sys.argv[1:])}`")
    print(f"grid {size}, {args.points} points on each of {', '.join(guided)}: "
          f"refine wall {', '.join(f'{t:.1f}' for t in times)} s; largest residual "
          f"{max(v['max_residual_mm'] for v in guided.values()):.2f} mm")
    return 0


if __name__ == "__main__":
    sys.exit(main())
