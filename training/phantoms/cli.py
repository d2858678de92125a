"""``python -m training phantoms --out DIR --n N --seed S [--size X Y Z] [--pathology copd,covid] [--version 1]``."""

from __future__ import annotations

import argparse
import sys

from .config import PATHOLOGIES, VERSIONS, PhantomOptions
from .dataset import write_dataset
from algorithm.cli import HelpFormatter


def _triple(text: str, kind: type) -> tuple:
    parts = text.lower().replace("x", ",").split(",")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected three values like 96x96x80, got {text!r}")
    return tuple(kind(p) for p in parts)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        formatter_class=HelpFormatter,
        prog="python -m training phantoms", description="Synthetic chest CT phantoms with lobe labels."
    )
    p.add_argument("--out", required=True, help="output folder (images/, labels/, cases.csv)")
    p.add_argument("--n", type=int, default=1, help="number of cases")
    p.add_argument("--seed", type=int, default=0, help="seed of the first case; case i uses seed + i")
    p.add_argument("--size", type=lambda t: _triple(t, int), help="voxels X,Y,Z (e.g. 96x96x80); default 512x512xN")
    p.add_argument("--spacing", type=lambda t: _triple(t, float), help="mm X,Y,Z; default drawn from the seed")
    p.add_argument("--pathology", help=f"comma-separated subset of {','.join(PATHOLOGIES)}; default: random mix")
    p.add_argument("--noise-sigma", type=float, help="image noise (HU); default 10-80 drawn from the seed")
    p.add_argument(
        "--cycle-pathology",
        action="store_true",
        help="give case i the i-th listed pathology (in turn) instead of a seeded draw",
    )
    p.add_argument(
        "--version",
        type=int,
        choices=VERSIONS,
        default=2,
        help="generator version: 2 (default; docs/realism.md) or 1 (reproduces the v1 test set)",
    )
    p.add_argument("--image-dir", default="images", help="sub-folder of --out for the images (default images)")
    p.add_argument("--names", help="comma-separated case names (one per case); default phantom-SEED")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    kinds = [k.strip() for k in args.pathology.split(",")] if args.pathology else None
    for k in kinds or []:
        if k not in PATHOLOGIES:
            parser().error(f"unknown pathology {k!r}; choose from {','.join(PATHOLOGIES)}")
    names = [n.strip() for n in args.names.split(",")] if args.names else None
    options = PhantomOptions(
        size_xyz=args.size, spacing_mm=args.spacing, noise_sigma_hu=args.noise_sigma, version=args.version
    )
    seeds = range(args.seed, args.seed + args.n)
    rows = write_dataset(
        args.out,
        seeds,
        options,
        names=names,
        pathologies=kinds,
        progress=not args.no_progress,
        cycle_pathologies=args.cycle_pathology,
        image_dir=args.image_dir,
    )
    print(f"wrote {len(rows)} cases to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
