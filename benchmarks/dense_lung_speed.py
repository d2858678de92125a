"""What the dense-lung step (issue 31) costs: its time against the whole prediction.

    python -m benchmarks.dense_lung_speed CT [--repeats 3] [--threads 2]

Segments CT once (shipped weights, CPU), runs the shipped steps up to the fissure step
(``benchmarks.harness.before_fissures``), then times ``algorithm.dense_lung.recover_dense_lung``
alone on what the lung step handed it (the lobes after laterality, on the canonical grid), best of
``--repeats``; prints both and the share (issue 31's budget: at most 10 % of predict).
"""

from __future__ import annotations

import sys
import time

import numpy as np
import SimpleITK as sitk
import torch

from algorithm.dense_lung import recover_dense_lung
from algorithm.io.reading import read_image
from algorithm.segmenter import LobeSegmenter
from benchmarks.harness import before_fissures, step_cost_parser


def main(argv: list[str] | None = None) -> int:
    args = step_cost_parser(__doc__).parse_args(argv)
    torch.set_num_threads(args.threads)
    segmenter = LobeSegmenter(None, torch.device("cpu"))
    image = read_image(args.ct).image
    started = time.perf_counter()
    segmenter(image)
    predict_s = time.perf_counter() - started
    case = before_fissures(segmenter, image)
    hu = sitk.GetArrayViewFromImage(case.scan.canonical)
    labels = case.lobes.sides.labels  # the dense step's input (pipeline/lung.py)
    times = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        found = recover_dense_lung(np.asarray(hu), labels, case.scan.canonical_spacing_mm_zyx)
        times.append(time.perf_counter() - started)
    best_s = min(times)
    print(f"scan {'x'.join(map(str, image.GetSize()))}: predict {predict_s:.2f} s; dense-lung step best {best_s:.2f} s "
          f"of {args.repeats} ({', '.join(f'{t:.2f}' for t in times)}): {100 * best_s / predict_s:.1f} % of predict; "
          f"added {sum(found.recovered_ml.values()):.1f} mL, effusion {found.effusion_ml}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
