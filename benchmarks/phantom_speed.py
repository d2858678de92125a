"""Phantom generation time (issue 3: a 512 x 512 x 300 case in at most 10 s on one core).

    python benchmarks/phantom_speed.py [--cases 3] [--small-cases 10] [--version 2]

Prints wall and CPU seconds per case. Pin to one core for the bound, e.g. with
``taskset -c 0`` and ``OMP_NUM_THREADS=1``; the machine should otherwise be idle.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.phantoms import PhantomOptions, generate_case  # noqa: E402

BOUND_S = 10.0


def time_case(seed: int, options: PhantomOptions) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    generate_case(seed, options)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=3)
    p.add_argument("--version", type=int, default=2, choices=(1, 2), help="phantom generator version")
    p.add_argument("--small-cases", type=int, default=None, help="cases at 96^2 (default: --cases)")
    args = p.parse_args()
    v = args.version
    generate_case(0, PhantomOptions(size_xyz=(48, 48, 40), version=v))  # imports and caches warmed up
    runs = {
        "512x512x300 @ 0.7x0.7x1.0 mm": PhantomOptions(size_xyz=(512, 512, 300), spacing_mm=(0.7, 0.7, 1.0), version=v),
        "96x96x80 (fitted spacing)": PhantomOptions(size_xyz=(96, 96, 80), version=v),
    }
    counts = {"512x512x300 @ 0.7x0.7x1.0 mm": args.cases, "96x96x80 (fitted spacing)": args.small_cases or args.cases}
    worst = 0.0
    for name, options in runs.items():
        cpus = []
        for seed in range(1, counts[name] + 1):
            wall, cpu = time_case(seed, options)
            cpus.append(cpu)
            print(f"v{v} {name}  seed {seed}: {wall:6.2f} s wall, {cpu:6.2f} s cpu")
            if name.startswith("512"):
                worst = max(worst, wall)
        print(f"v{v} {name}: mean {sum(cpus) / len(cpus):.2f} s cpu per case over {len(cpus)} cases")
    print(f"slowest 512x512x300: {worst:.2f} s (bound {BOUND_S:.0f} s) -> {'OK' if worst <= BOUND_S else 'TOO SLOW'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
