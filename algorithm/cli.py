"""Command line: ``python -m algorithm predict INPUT -o OUTDIR`` and ``python -m algorithm gc``."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from tqdm import tqdm

from algorithm import __version__
from algorithm.network.checkpoint import CheckpointError, load_checkpoint
from algorithm.device import resolve_device
from algorithm.io.dicom_seg import require_highdicom, write_dicom_seg
from algorithm.errors import InputError, OutputError, ResourceError
from algorithm.constants import DEFAULT_FISSURES, FISSURE_MODES, PRECISIONS
from algorithm.inference import TilingSettings
from algorithm.pipeline import segment
from algorithm.report.preview import render_preview
from algorithm.io.reading import case_name, is_image_file, read_image
from algorithm.io.quiet import silence_itk_warnings
from algorithm.io.writing import (
    ensure_output_dir, locked_output_dir, output_path, remove_stale_temp_files, write_json, write_mask, write_png,
)

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
    predict.add_argument("--max-tile-voxels", type=int, default=TilingSettings().max_tile_in_voxels, help="memory budget of a planned stage-II tile's input, in voxels")
    predict.add_argument("--batch-size", type=int, default=1, help="stage-II tiles per forward pass")
    predict.add_argument("--precision", choices=PRECISIONS, default="auto",
                         help="network arithmetic: auto (default: float16 on CUDA, bfloat16 on CPUs with native bfloat16, else float32), float32, bfloat16, float16 (CUDA)")
    predict.add_argument("--fissures", choices=FISSURE_MODES, default=DEFAULT_FISSURES,
                         help=f"fit: refit each fissure to the scan's vessel-sparse band where the evidence is clear; "
                              f"network: keep the network's borders, the paper's path (default {DEFAULT_FISSURES})")
    predict.add_argument("--overwrite", action="store_true", help="redo cases whose outputs exist")
    predict.add_argument("--quiet", action="store_true", help="no progress bar")
    predict.add_argument("--no-preview", action="store_true", help="do not write NAME_lobes_preview.png")
    predict.add_argument("--dicom-seg", action="store_true", help="also write NAME_lobes_seg.dcm, a DICOM Segmentation (DICOM folder input; needs highdicom)")
    commands.add_parser("gc", help="grand-challenge.org container mode (reads /input, writes /output)")
    return parser


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):
        # an ASCII locale (LANG=C) must not turn a message with '−' or '×' into a crash
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    if args.command == "gc":
        from algorithm.container.grand_challenge import main as gc_main

        return gc_main()
    return run_predict(args)


def run_predict(args: argparse.Namespace) -> int:
    silence_itk_warnings()  # reading.py reports what ITK would warn about, as one line
    try:
        cases = _collect_cases(args.input)
        ensure_output_dir(args.output)
        with locked_output_dir(args.output):
            remove_stale_temp_files(args.output)  # left by a run killed while writing
            device = resolve_device(args.device)
            if args.precision == "float16" and device.type != "cuda":
                print("error: --precision float16 needs CUDA; use bfloat16 or float32 on CPU", file=sys.stderr)
                return EXIT_USAGE
            checkpoint = load_checkpoint(args.weights, device)
            return _run_cases(cases, args, checkpoint, device)
    except (InputError, OutputError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _run_cases(cases: list[Path], args: argparse.Namespace, checkpoint, device) -> int:
    """Every case, whatever befalls the others; a folder run keeps OUTDIR/summary.json current."""
    tiling = TilingSettings(tile_out=args.tile_out, max_tile_in_voxels=args.max_tile_voxels, batch_size=args.batch_size,
                            precision=args.precision)
    batch = args.input.is_dir() and cases != [args.input]
    statuses: list[dict] = []
    names: dict[str, Path] = {}
    for path in cases:
        name = output_case_name(path)
        try:
            if name in names:
                raise InputError(f"case name {name!r} is already used by {names[name].name}: rename one")
            names[name] = path
            status = _predict_one(path, name, args, checkpoint, device, tiling)
            statuses.append({"case": name, "input": str(path), "status": status})
        except (InputError, OutputError, ResourceError) as exc:
            statuses.append({"case": name, "input": str(path), "status": "failed", "message": str(exc)})
            print(f"error: {name}: {exc}", file=sys.stderr)
        if batch:
            write_json(_summary(statuses), args.output / SUMMARY_NAME)
    failures = sum(s["status"] == "failed" for s in statuses)
    if len(cases) > 1:
        print(f"{len(cases) - failures} of {len(cases)} cases done, {failures} failed", file=sys.stderr)
    return EXIT_FAILED if failures else EXIT_OK


SUMMARY_NAME = "summary.json"


def _summary(statuses: list[dict]) -> dict:
    counts = {key: sum(s["status"] == key for s in statuses) for key in ("done", "skipped", "failed")}
    return {"software": {"name": "ctsunet-lobes", "version": __version__}, "counts": counts, "cases": statuses}


def output_case_name(path: Path) -> str:
    """The case name outputs are named after: the input's name without its suffix, made safe.

    Names come from untrusted files and folders: path separators, control characters and
    leading dots (hidden files, '..', the temporary-file pattern) are replaced; spaces and
    non-ASCII letters are kept.
    """
    # abspath, not resolve: 'scans/..' names the folder, a symlink keeps its own name
    raw = case_name(path) if path.is_file() else Path(os.path.abspath(path)).name
    cleaned = "".join("_" if ch in "/\\" or not ch.isprintable() else ch for ch in raw).strip()
    cleaned = cleaned.lstrip(".")
    return cleaned or "case"


def _collect_cases(path: Path) -> list[Path]:
    if not path.exists():
        raise InputError(f"input not found: {path}")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if is_image_file(p))
        return files or [path]  # no CT files: treat the folder as one DICOM series
    return [path]


def _predict_one(path, name, args, checkpoint, device, tiling) -> str:
    """One case; returns "done" or "skipped" (its outputs exist), raises on failure."""
    mask_path = output_path(args.output, f"{name}_lobes.mha")
    json_path = output_path(args.output, f"{name}_lobes.json")
    if json_path.exists() and mask_path.exists() and not args.overwrite:
        print(f"{name}: outputs exist, skipped (use --overwrite to redo)", file=sys.stderr)
        return "skipped"
    if args.dicom_seg:
        _check_dicom_seg(path)
    started = time.perf_counter()
    loaded = read_image(path)
    for warning in loaded.warnings:
        print(f"warning: {name}: {warning}", file=sys.stderr)
    with _StageProgress(name, disable=args.quiet) as progress:
        result = segment(loaded.image, checkpoint, device, tiling, progress=progress, fissures=args.fissures)
    for warning in result.warnings:
        print(f"warning: {name}: {warning}", file=sys.stderr)
    report = {
        "case": name,
        "input": {"path": str(path), "read": loaded.description, "warnings": loaded.warnings},
        **result.report,
        "run_time_s": {**result.timings_s, "total": round(time.perf_counter() - started, 3)},
    }
    # mask first, JSON last: a JSON means the case is complete
    write_mask(result.mask, mask_path)
    if not args.no_preview:
        write_png(render_preview(loaded.image, result.mask, report), output_path(args.output, f"{name}_lobes_preview.png"))
    if args.dicom_seg:
        write_dicom_seg(result.mask, path, output_path(args.output, f"{name}_lobes_seg.dcm"))
    write_json(report, json_path)
    _print_summary(name, report, mask_path, json_path)
    return "done"


def _check_dicom_seg(path: Path) -> None:
    """Before any work: a DICOM-SEG needs the source series and the optional highdicom."""
    if not path.is_dir():
        raise InputError(f"--dicom-seg needs a DICOM folder as input (the object references its series), not {path.name}")
    require_highdicom()


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
