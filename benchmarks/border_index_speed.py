"""What the border vessel index adds to a prediction: its time against the whole predict.

    python -m benchmarks.border_index_speed CT [--repeats 3] [--threads 2]

Runs the whole pipeline once on CT (shipped weights, CPU; the index included, as in
``python -m algorithm predict``), then times ``border_report`` alone on that scan and the mask
just made (best of ``--repeats``), and prints both and the share. docs/performance.md quotes it
for a 512 x 512 x 400 phantom (``python -m training phantoms --out DIR --n 1 --seed 3 --size 512x512x400``).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from algorithm.report.border_index import border_report
from algorithm.segmenter import LobeSegmenter
from algorithm.io.reading import read_image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ct")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    segmenter = LobeSegmenter(None, device)
    image = read_image(args.ct).image
    started = time.perf_counter()
    result = segmenter(image)
    predict_s = time.perf_counter() - started
    times = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        section = border_report(image, result.mask)
        times.append(time.perf_counter() - started)
    best = min(times)
    print(f"scan {'x'.join(map(str, image.GetSize()))}, lattice step {section['lattice_step_mm']} mm")
    print(f"segment (index included): {predict_s:.2f} s; border index alone: best {best:.2f} s of {args.repeats} "
          f"({', '.join(f'{t:.2f}' for t in times)}); share of the prediction: {100 * best / predict_s:.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
