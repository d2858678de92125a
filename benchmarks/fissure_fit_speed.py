"""What the fissure fit adds to a prediction: its time against the steps before it.

    python -m benchmarks.fissure_fit_speed CT [--repeats 3] [--threads 2] [--mode fit|global]

Runs the shipped steps up to the fissure step once on CT (shipped weights, CPU;
``benchmarks.harness.before_fissures``), then times the shipped fissure step
(``algorithm.pipeline.fissures.refine_lobes`` in mode "fit", as ``LobeSegmenter`` runs it, or
"global", the global search of issue 30) on what
they handed on, best of ``--repeats``, and prints both, the share and the decisions.
docs/results.md quotes it for a 512 x 512 x 400 phantom
(``python -m training phantoms --out DIR --n 1 --seed 3 --size 512x512x400``).
"""

from __future__ import annotations

import sys
import time

import torch

from algorithm.fissure_fit import FISSURES
from algorithm.io.reading import read_image
from algorithm.segmenter import LobeSegmenter
from benchmarks.harness import before_fissures, fissure_step, step_cost_parser


def main(argv: list[str] | None = None) -> int:
    parser = step_cost_parser(__doc__)
    parser.add_argument("--mode", choices=("fit", "global"), default="fit", help="the fissure step's mode (default fit)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    image = read_image(args.ct).image
    case = before_fissures(LobeSegmenter(None, torch.device("cpu")), image)
    times, section = [], {}
    for _ in range(args.repeats):
        started = time.perf_counter()
        section = fissure_step(case, args.mode).section
        times.append(time.perf_counter() - started)
    before_s, best_s = case.network_s + case.lung_s, min(times)
    decisions = ", ".join(f"{f} {section['fissures'][f]['decision']}" for f in FISSURES)
    share = 100 * best_s / (before_s + best_s)
    print(f"scan {'x'.join(map(str, image.GetSize()))}: steps 1-4 {before_s:.2f} s; fissure step ({args.mode}) best "
          f"{best_s:.2f} s of {args.repeats} ({', '.join(f'{t:.2f}' for t in times)}); share of the prediction "
          f"up to it: {share:.1f} %; {decisions}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
