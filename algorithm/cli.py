"""Command line: ``python -m algorithm predict INPUT -o OUTDIR`` and ``python -m algorithm gc``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tqdm import tqdm

from algorithm import __version__
from algorithm.checkpoint import CheckpointError, load_checkpoint
from algorithm.device import resolve_device
from algorithm.errors import InputError, OutputError
from algorithm.inference import TilingSettings
from algorithm.pipeline import segment
from algorithm.reading import case_name, is_image_file, read_image
from algorithm.writing import ensure_output_dir, write_json, write_mask

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m algorithm", description="CTSU-Net pulmonary lobe segmentation"
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser("predict", help="segment the lobes of a CT file, DICOM folder or folder of CTs")
    predict.add_argument("input", type=Path, help="CT file (.mha .mhd .nii .nii.gz .nrrd), DICOM folder, or folder of CT files")
    predict.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    predict.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    predict.add_argument("--weights", type=Path, default=None, help="checkpoint (default: the shipped weights)")
    predict.add_argument("--tile-out", type=int, default=None, help="fixed stage-II output tile edge, 8k-28 (default: planned per scan; the paper used 28)")
    predict.add_argument("--max-tile-voxels", type=int, default=144**3, help="memory budget of a planned stage-II tile's input, in voxels")
    predict.add_argument("--batch-size", type=int, default=1, help="stage-II tiles per forward pass")
    predict.add_argument("--overwrite", action="store_true", help="redo cases whose outputs exist")
    predict.add_argument("--quiet", action="store_true", help="no progress bar")
    commands.add_parser("gc", help="grand-challenge.org container mode (reads /input, writes /output)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "gc":
        from algorithm.grand_challenge import main as gc_main

        return gc_main()
    return run_predict(args)


def run_predict(args: argparse.Namespace) -> int:
    try:
        cases = _collect_cases(args.input)
        ensure_output_dir(args.output)
        device = resolve_device(args.device)
        checkpoint = load_checkpoint(args.weights, device)
    except (InputError, OutputError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    tiling = TilingSettings(tile_out=args.tile_out, max_tile_in_voxels=args.max_tile_voxels, batch_size=args.batch_size)
    failures = 0
    for path in cases:
        name = case_name(path) if path.is_file() else path.name
        try:
            _predict_one(path, name, args, checkpoint, device, tiling)
        except (InputError, OutputError) as exc:
            failures += 1
            print(f"error: {name}: {exc}", file=sys.stderr)
    if len(cases) > 1:
        print(f"{len(cases) - failures} of {len(cases)} cases done, {failures} failed", file=sys.stderr)
    return EXIT_FAILED if failures else EXIT_OK


def _collect_cases(path: Path) -> list[Path]:
    if not path.exists():
        raise InputError(f"input not found: {path}")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if is_image_file(p))
        return files or [path]  # no CT files: treat the folder as one DICOM series
    return [path]


def _predict_one(path, name, args, checkpoint, device, tiling) -> None:
    mask_path = args.output / f"{name}_lobes.mha"
    json_path = args.output / f"{name}_lobes.json"
    if json_path.exists() and mask_path.exists() and not args.overwrite:
        print(f"{name}: outputs exist, skipped (use --overwrite to redo)", file=sys.stderr)
        return
    started = time.perf_counter()
    loaded = read_image(path)
    for warning in loaded.warnings:
        print(f"warning: {name}: {warning}", file=sys.stderr)
    with _StageProgress(name, disable=args.quiet) as progress:
        result = segment(loaded.image, checkpoint, device, tiling, progress=progress)
    report = {
        "case": name,
        "input": {"path": str(path), "read": loaded.description, "warnings": loaded.warnings},
        **result.report,
        "run_time_s": {**result.timings_s, "total": round(time.perf_counter() - started, 3)},
    }
    # mask first, JSON last: a JSON means the case is complete
    write_mask(result.mask, mask_path)
    write_json(report, json_path)
    _print_summary(name, report, mask_path, json_path)


def _print_summary(name: str, report: dict, mask_path: Path, json_path: Path) -> None:
    volumes = report["volumes_ml"]
    print(f"{name}: lobe volumes (mL)")
    for key in ("LUL", "LLL", "RUL", "RLL", "RML", "left_lung", "right_lung", "total"):
        print(f"  {key:10s} {volumes[key]:9.1f}")
    print(f"  mask: {mask_path}\n  report: {json_path}")


class _StageProgress:
    """A progress bar over the pipeline's stages and stage-II tiles."""

    def __init__(self, name: str, disable: bool) -> None:
        self.bar = tqdm(desc=name, unit="step", disable=disable or None, file=sys.stderr, leave=False)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()

    def __call__(self, stage: str, count: int = 0) -> None:
        if stage == "tile":
            self.bar.set_postfix_str("stage II tiles")
            self.bar.update(count)
        else:
            self.bar.set_postfix_str(stage)
            self.bar.update(1)
