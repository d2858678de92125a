#!/usr/bin/env python3
"""Lay out a grand-challenge /input folder from the sample scans (standard library only).

    python3 tests/container/make_input.py current OUTDIR   # OUTDIR/inputs.json + OUTDIR/images/ct/<uuid>.mha
    python3 tests/container/make_input.py legacy OUTDIR    # OUTDIR/<uuid>.mha for each legacy case

The scans are copied from samples/ct/ (or --ct-dir) rather than kept in tests/container/, so the repository
holds each scan once.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CASES = json.loads((HERE / "cases.json").read_text())


def scan_for(name: str, ct_dir: Path) -> Path:
    path = ct_dir / f"{name}.mha"
    if not path.is_file():
        sys.exit(f"make_input: {path} is missing (generate the sample scans first)")
    return path


def make_current(out: Path, ct_dir: Path) -> None:
    name, socket = CASES["current"]["case"], CASES["current"]["socket"]
    uuid = CASES["cases"][name]
    (out / socket).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(scan_for(name, ct_dir), out / socket / f"{uuid}.mha")
    template = (HERE / "inputs.json").read_text()
    filled = template.replace("@UUID@", uuid).replace("@NAME@", name).replace("@SOCKET@", socket)
    json.loads(filled)  # the template must stay valid JSON
    (out / "inputs.json").write_text(filled)


def make_legacy(out: Path, ct_dir: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in CASES["legacy"]["cases"]:
        shutil.copyfile(scan_for(name, ct_dir), out / f"{CASES['cases'][name]}.mha")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("contract", choices=("current", "legacy"))
    parser.add_argument("out", type=Path, help="folder to fill (mounted as /input)")
    parser.add_argument("--ct-dir", type=Path, default=HERE.parents[1] / "samples" / "ct")
    args = parser.parse_args()
    (make_current if args.contract == "current" else make_legacy)(args.out, args.ct_dir)


if __name__ == "__main__":
    main()
