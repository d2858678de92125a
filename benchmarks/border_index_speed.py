"""What the border vessel index adds to a prediction: its time against the whole predict.

    python -m benchmarks.border_index_speed CT [--repeats 3] [--threads 2]

Runs the whole pipeline once on CT (shipped weights, CPU; the index included, as in
``python -m algorithm predict``), then times ``border_report`` alone on that scan and the mask
just made (best of ``--repeats``), and prints both and the share. docs/performance.md quotes it
for a 512 x 512 x 400 phantom (``python -m training phantoms --out DIR --n 1 --seed 3 --size 512x512x400``).
"""

from __future__ import annotations

import sys

from algorithm.report.border_index import border_report
from benchmarks.harness import measure_step, step_cost_parser


def main(argv: list[str] | None = None) -> int:
    args = step_cost_parser(__doc__).parse_args(argv)
    cost = measure_step(args, border_report)
    size = "x".join(map(str, cost.image.GetSize()))
    print(f"scan {size}, lattice step {cost.section['lattice_step_mm']} mm")
    print(f"segment (index included): {cost.predict_s:.2f} s; border index alone: best {cost.best_s:.2f} s of "
          f"{args.repeats} ({cost.times_text()}); share of the prediction: {100 * cost.best_s / cost.predict_s:.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
