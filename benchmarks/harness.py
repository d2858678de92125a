"""Shared by the benchmark scripts: the shipped steps up to the fissure step and the fissure step in
both modes (the very functions ``LobeSegmenter.__call__`` runs, in its order:
tests/test_benchmark_steps.py holds the masks equal), timing one post-network step against the
whole prediction, the phantom benchmarks' command line, and writing a report with its rows."""

from __future__ import annotations

import argparse
import csv
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import SimpleITK as sitk
import torch

from algorithm.inference import NetworkPrediction
from algorithm.io.reading import read_image
from algorithm.lung_extent import LungExtentSettings
from algorithm.pipeline.clean_up import CleanLobes, clean_up
from algorithm.pipeline.fissures import FittedLobes, refine_lobes
from algorithm.pipeline.input_grid import to_input_grid
from algorithm.pipeline.lung import ScanLobes, lung_from_scan
from algorithm.pipeline.network import run_network
from algorithm.pipeline.one_lung import LungsLook, second_look
from algorithm.pipeline.preprocess import PreprocessedScan, check_input, preprocess
from algorithm.segmenter import LobeSegmenter


@dataclass(frozen=True)
class BeforeFissures:
    """What the shipped steps 1-4 hand to the fissure step, and their wall times."""

    scan: PreprocessedScan  # with its canonical image
    prediction: NetworkPrediction
    cleaned: CleanLobes
    lobes: ScanLobes
    network_s: float  # checks, preprocessing and the network
    lung_s: float  # clean-up and the lung step


def before_fissures(
    segmenter: LobeSegmenter, image: sitk.Image, lung_settings: LungExtentSettings | None = None
) -> BeforeFissures:
    """Steps 1-4 of ``LobeSegmenter.__call__`` on ``image``: the same functions in the same order
    (``lung_settings``: a variant of the lung step's, default the shipped ones)."""
    started = time.perf_counter()
    check_input(image)
    scan = preprocess(image, segmenter.settings.inplane_size)
    prediction = run_network(scan, segmenter.predict_grid, _quiet)
    middle = time.perf_counter()
    cleaned = clean_up(prediction, scan)
    lobes = lung_from_scan(scan, prediction, cleaned, lung_settings)
    look = second_look(scan, LungsLook(prediction, cleaned, lobes), segmenter.predict_grid, _quiet, lung_settings)
    prediction, cleaned, lobes = look.prediction, look.cleaned, look.lobes
    return BeforeFissures(scan, prediction, cleaned, lobes, middle - started, time.perf_counter() - middle)


def fissure_step(case: BeforeFissures, mode: str) -> FittedLobes:
    """The shipped fissure step (step 5) on what steps 1-4 handed on."""
    return refine_lobes(case.scan.canonical, case.lobes.labels, mode)


def on_input_grid(case: BeforeFissures, fitted: FittedLobes, image: sitk.Image) -> sitk.Image:
    """The shipped step 6: the fissure step's lobes on ``image``'s grid."""
    return to_input_grid(fitted.labels, case.scan, image).mask


@dataclass(frozen=True)
class FissureVariants:
    """One scan's masks with the network's borders and with the refitted ones (shipped steps)."""

    network: sitk.Image  # fissure step in mode "network" (the paper's path)
    fit: sitk.Image  # fissure step in mode "fit" (the shipped default)
    section: dict  # the fit's report section "fissures"
    fit_s: float  # the fissure step in mode "fit"
    before_s: float  # steps 1-4


def fissure_variants(segmenter: LobeSegmenter, image: sitk.Image) -> FissureVariants:
    """Steps 1-4 once, then the fissure step in both modes and each result on the input grid."""
    case = before_fissures(segmenter, image)
    network = fissure_step(case, "network")
    started = time.perf_counter()
    fitted = fissure_step(case, "fit")
    fit_s = time.perf_counter() - started
    return FissureVariants(on_input_grid(case, network, image), on_input_grid(case, fitted, image), fitted.section,
                           fit_s, case.network_s + case.lung_s)


def _quiet(stage: str, done: int = 0, total: int = 0) -> None:
    pass


@dataclass
class StepCost:
    image: sitk.Image
    predict_s: float  # the whole segment call once
    step_times_s: list[float]  # the step alone, each repeat
    section: dict  # what the step returned on its last repeat

    @property
    def best_s(self) -> float:
        return min(self.step_times_s)

    def times_text(self) -> str:
        return ", ".join(f"{t:.2f}" for t in self.step_times_s)


def step_cost_parser(doc: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ct", help="a CT file (for docs/performance.md: a 512 x 512 x 400 phantom)")
    parser.add_argument("--repeats", type=int, default=3, help="timings of the step alone (best is reported; default 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    return parser


def phantom_benchmark_parser(doc: str, phantoms_help: str, pred_help: str, csv_help: str) -> argparse.ArgumentParser:
    """--phantoms, --pred, --out, --csv: what every benchmark scored against phantom truth takes."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phantoms", required=True, help=phantoms_help)
    parser.add_argument("--pred", required=True, help=pred_help)
    parser.add_argument("--out", default=None, help="Markdown file to write (default: print only)")
    parser.add_argument("--csv", default=None, help=csv_help)
    return parser


def phantoms_with_predictions(root: Path, pred_dir: Path) -> list[str]:
    """The phantom names under ``root/images`` that have a ``NAME_lobes.mha`` in ``pred_dir``, sorted;
    an error on stderr when there is none (the callers then exit with 1)."""
    names = sorted(p.name.removesuffix(".mha") for p in (root / "images").glob("*.mha"))
    found = [n for n in names if (pred_dir / f"{n}_lobes.mha").is_file()]
    if not found:
        print(f"error: no phantom with a prediction in {root}/images and {pred_dir}", file=sys.stderr)
    return found


def measure_step(
    args: argparse.Namespace, step: Callable[[sitk.Image, sitk.Image], dict], **segmenter_options
) -> StepCost:
    """Segment ``args.ct`` once on the CPU (shipped weights), then time ``step(image, mask)`` alone."""
    torch.set_num_threads(args.threads)
    segmenter = LobeSegmenter(None, torch.device("cpu"), **segmenter_options)
    image = read_image(args.ct).image
    started = time.perf_counter()
    mask = segmenter(image).mask
    predict_s = time.perf_counter() - started
    times, section = [], {}
    for _ in range(args.repeats):
        started = time.perf_counter()
        section = step(image, mask)
        times.append(time.perf_counter() - started)
    return StepCost(image, predict_s, times, section)


def write_report(text: str, rows: list[dict], out: str | None, csv_path: str | None) -> None:
    """Print the report; also write it to ``out`` and its rows to ``csv_path`` where given."""
    print(text)
    if out:
        Path(out).write_text(text + "\n", encoding="utf-8")
    if csv_path and rows:
        with open(csv_path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
