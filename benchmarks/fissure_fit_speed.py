"""What the fissure fit adds to a prediction: its time against the whole predict.

    python -m benchmarks.fissure_fit_speed CT [--repeats 3] [--threads 2]

Runs the whole pipeline once on CT with the network's borders (shipped weights, CPU), then times
the fissure step (``refine_mask``, as ``LobeSegmenter`` runs it) on that scan and mask, best of
``--repeats``, and prints both, the share and the decisions. docs/results.md quotes it for a
512 x 512 x 400 phantom (``python -m training phantoms --out DIR --n 1 --seed 3 --size 512x512x400``).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from algorithm.fissure_fit import FISSURES, refine_mask
from algorithm.io.reading import read_image
from algorithm.segmenter import LobeSegmenter


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ct")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    segmenter = LobeSegmenter(None, torch.device("cpu"), fissures="network")
    image = read_image(args.ct).image
    started = time.perf_counter()
    result = segmenter(image)
    predict_s = time.perf_counter() - started
    times = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        _, section = refine_mask(image, result.mask, "fit")
        times.append(time.perf_counter() - started)
    best = min(times)
    decisions = ", ".join(f"{f} {section['fissures'][f]['decision']}" for f in FISSURES)
    print(f"scan {'x'.join(map(str, image.GetSize()))}: segment (network borders) {predict_s:.2f} s; fissure fit "
          f"best {best:.2f} s of {args.repeats} ({', '.join(f'{t:.2f}' for t in times)}); share of the prediction "
          f"with it: {100 * best / (predict_s + best):.1f} %; {decisions}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
