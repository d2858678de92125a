"""Command line: ``python -m algorithm predict INPUT -o OUTDIR`` and ``python -m algorithm gc``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tqdm import tqdm

from algorithm.version import __version__
from algorithm.constants import DEFAULT_FISSURES, FISSURE_MODES, MAX_TILE_IN_VOXELS, PRECISIONS
from algorithm.container.contract import GC_DESCRIPTION
from algorithm.errors import InputError, OutputError, ResourceError, SettingsError
from algorithm.fissure_points.export import write_fissure_markups
from algorithm.fissure_points.fit import POINT_MODES
from algorithm.fissure_points.reading import FissurePoints, read_points
from algorithm.fissure_points.refine import add_refine_parser, run_refine
from algorithm.frontend import print_summary, segment_file, write_case_outputs
from algorithm.io.dicom_seg import require_highdicom, write_dicom_seg
from algorithm.io.quiet import silence_itk_warnings
from algorithm.io.reading import case_name, is_image_file
from algorithm.io.writing import (
    ensure_output_dir, locked_output_dir, output_path, remove_stale_temp_files, write_json, write_png,
)
from algorithm.network.checkpoint import CheckpointError
from algorithm.report.preview import render_preview
from algorithm.segmenter import LobeSegmenter

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written (line breaks kept); every option that has a value by default shows it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = action.default not in (None, False, argparse.SUPPRESS) and not action.required
        if shown and "default" not in text.lower() and action.option_strings:  # unless the help says it
            text += " (default: %(default)s)"
        return text


def program_name() -> str:
    """``ctsunet-lobes`` when run as the installed command, else ``python -m algorithm``."""
    return "ctsunet-lobes" if Path(sys.argv[0]).name == "ctsunet-lobes" else "python -m algorithm"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=program_name(), description="CTSU-Net pulmonary lobe segmentation", formatter_class=HelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser(
        "predict", help="segment the lobes of a CT file, DICOM folder or folder of CTs", formatter_class=HelpFormatter,
        description="Segment the five lobes; writes NAME_lobes.mha, NAME_lobes.json and NAME_lobes_preview.png "
                    "into the output folder and prints the volumes and quality flags.",
    )
    predict.add_argument("input", type=Path, help="CT file (.mha .mhd .nii .nii.gz .nrrd .nhdr), DICOM folder, or folder of CT files")
    predict.add_argument("-o", "--output", type=Path, required=True, help="output folder (created if needed)")
    predict.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    predict.add_argument("--weights", type=Path, default=None, help="checkpoint (default: the shipped weights)")
    predict.add_argument("--tile-out", type=int, default=None,
                         help="fixed stage-II output tile edge, 8k-28 (the paper used 28) (default: planned per scan)")
    predict.add_argument("--max-tile-voxels", type=int, default=MAX_TILE_IN_VOXELS,
                         help="memory budget of a planned stage-II tile's input, in voxels")
    predict.add_argument("--batch-size", type=int, default=1, help="stage-II tiles per forward pass")
    predict.add_argument("--precision", choices=PRECISIONS, default="auto",
                         help="network arithmetic; auto: float16 on CUDA, bfloat16 on CPUs with native bfloat16, else float32")
    predict.add_argument("--fissures", choices=FISSURE_MODES, default=DEFAULT_FISSURES,
                         help="fit: refit each fissure to the scan's vessel-sparse band where the evidence is clear; "
                              "network: keep the network's borders, the paper's path; global: search each fissure over its "
                              "anatomical range, an anatomical prior choosing (default %(default)s)")
    predict.add_argument("--fissure-points", type=Path, default=None,
                         help="points on fissures to correct (3D Slicer .mrk.json, grand-challenge points JSON or CSV "
                              "x,y,z,fissure in LPS mm): each marked fissure passes through its points; one case only")
    predict.add_argument("--overwrite", action="store_true", help="redo cases whose outputs exist")
    predict.add_argument("--quiet", action="store_true", help="no progress bar")
    predict.add_argument("--no-preview", action="store_true", help="do not write NAME_lobes_preview.png")
    predict.add_argument("--dicom-seg", action="store_true",
                         help="also write NAME_lobes_seg.dcm, a DICOM Segmentation (DICOM folder input; needs highdicom)")
    add_refine_parser(commands, HelpFormatter)
    commands.add_parser(
        "gc", help="grand-challenge.org container mode (reads /input, writes /output)", formatter_class=HelpFormatter,
        description=GC_DESCRIPTION,
    )
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
    if args.command == "refine":
        return run_refine(args)
    return run_predict(args)


def run_predict(args: argparse.Namespace) -> int:
    silence_itk_warnings()  # reading.py reports what ITK would warn about, as one line
    created = not os.path.lexists(args.output)
    try:
        cases = _collect_cases(args.input)
        points = _fissure_points(args, cases)
        # a bad device, precision or checkpoint is refused before the output folder exists
        segmenter = LobeSegmenter(
            args.weights, args.device, precision=args.precision, tile_out=args.tile_out,
            max_tile_in_voxels=args.max_tile_voxels, batch_size=args.batch_size, fissures=args.fissures,
        )
        if points is not None:
            segmenter = segmenter.with_options(fissure_points=points)
        ensure_output_dir(args.output)
        with locked_output_dir(args.output):
            remove_stale_temp_files(args.output)  # left by a run killed while writing
            return _run_cases(cases, args, segmenter)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (InputError, OutputError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if created:
            _remove_if_empty(args.output)  # a refused input leaves no empty output folder behind


def _fissure_points(args: argparse.Namespace, cases: list[Path]) -> FissurePoints | None:
    """The user's fissure points (read before any work), for a single case only."""
    if args.fissure_points is None:
        return None
    if len(cases) > 1:
        raise InputError(f"--fissure-points belongs to one scan, but {args.input} holds {len(cases)} cases")
    if args.fissures not in POINT_MODES:
        raise InputError(f"--fissure-points works with --fissures {' or '.join(POINT_MODES)}, not {args.fissures}")
    return read_points(args.fissure_points)


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()  # only succeeds on an empty folder
    except OSError:
        pass


def _run_cases(cases: list[Path], args: argparse.Namespace, segmenter: LobeSegmenter) -> int:
    """Every case, whatever befalls the others; a folder run keeps OUTDIR/summary.json current."""
    batch = args.input.is_dir() and cases != [args.input]
    statuses: list[dict] = []
    names: dict[str, Path] = {}
    for path in cases:
        name = output_case_name(path)
        try:
            if name in names:
                raise InputError(f"case name {name!r} is already used by {names[name].name}: rename one")
            names[name] = path
            status = _predict_one(path, name, args, segmenter)
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


def _predict_one(path: Path, name: str, args: argparse.Namespace, segmenter: LobeSegmenter) -> str:
    """One case; returns "done" or "skipped" (its outputs exist), raises on failure."""
    mask_path = output_path(args.output, f"{name}_lobes.mha")
    json_path = output_path(args.output, f"{name}_lobes.json")
    if json_path.exists() and mask_path.exists() and not args.overwrite:
        print(f"{name}: outputs exist, skipped (use --overwrite to redo)", file=sys.stderr)
        return "skipped"
    if args.dicom_seg:
        _check_dicom_seg(path)
    with _StageProgress(name, disable=True if args.quiet else None) as progress:
        run = segment_file(path, segmenter, name, {"path": str(path)}, progress=progress)
    extras = []
    if not args.no_preview:
        extras.append((output_path(args.output, f"{name}_lobes_preview.png"),
                       lambda target: write_png(render_preview(run.loaded.image, run.mask, run.document), target)))
    if run.result.fissure_surfaces_lps:
        extras.append((output_path(args.output, f"{name}_fissures.mrk.json"),
                       lambda target: write_fissure_markups(run.result.fissure_surfaces_lps, target)))
    if args.dicom_seg:
        extras.append((output_path(args.output, f"{name}_lobes_seg.dcm"),
                       lambda target: write_dicom_seg(run.mask, path, target)))
    write_case_outputs(run.mask, run.document, mask_path, json_path, extras)
    print_summary(name, run.document, [("mask", mask_path), ("report", json_path)])
    return "done"


def _check_dicom_seg(path: Path) -> None:
    """Before any work: a DICOM-SEG needs the source series and the optional highdicom."""
    if not path.is_dir():
        raise InputError(f"--dicom-seg needs a DICOM folder as input (the object references its series), not {path.name}")
    require_highdicom()


class _StageProgress:
    """A progress bar over the stage-II tiles (with their total and a time estimate), naming the step."""

    def __init__(self, name: str, disable: bool | None) -> None:
        """``disable``: True hides the bar, None shows it on a terminal only (tqdm's rule)."""
        self.bar = tqdm(desc=name, unit="tile", total=None, disable=disable, file=sys.stderr, leave=False)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()

    def __call__(self, stage: str, done: int = 0, total: int = 0) -> None:
        if stage == "tile":
            if total and self.bar.total != total:
                self.bar.reset(total=total)  # the tile plan is known once stage I has found the lungs
            self.bar.set_postfix_str("stage II tiles", refresh=False)
            self.bar.update(done)
        else:
            self.bar.set_postfix_str(stage)
