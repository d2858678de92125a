"""What the fissure fit adds to a prediction: its time against the whole predict.

    python -m benchmarks.fissure_fit_speed CT [--repeats 3] [--threads 2]

Runs the whole pipeline once on CT with the network's borders (shipped weights, CPU), then times
the fissure step (``refine_mask``, as ``LobeSegmenter`` runs it) on that scan and mask, best of
``--repeats``, and prints both, the share and the decisions. docs/results.md quotes it for a
512 x 512 x 400 phantom (``python -m training phantoms --out DIR --n 1 --seed 3 --size 512x512x400``).
"""

from __future__ import annotations

import sys

from algorithm.fissure_fit import FISSURES, refine_mask
from benchmarks.harness import measure_step, step_cost_parser


def main(argv: list[str] | None = None) -> int:
    args = step_cost_parser(__doc__).parse_args(argv)
    cost = measure_step(args, lambda image, mask: refine_mask(image, mask, "fit")[1], fissures="network")
    decisions = ", ".join(f"{f} {cost.section['fissures'][f]['decision']}" for f in FISSURES)
    share = 100 * cost.best_s / (cost.predict_s + cost.best_s)
    print(f"scan {'x'.join(map(str, cost.image.GetSize()))}: segment (network borders) {cost.predict_s:.2f} s; "
          f"fissure fit best {cost.best_s:.2f} s of {args.repeats} ({cost.times_text()}); share of the prediction "
          f"with it: {share:.1f} %; {decisions}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
