"""Shared by the benchmark scripts: timing one post-network step against the whole prediction,
the phantom benchmarks' command line, and writing a report with its rows."""

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

from algorithm.io.reading import read_image
from algorithm.segmenter import LobeSegmenter


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
