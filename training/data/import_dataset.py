"""``python -m training import-dataset --layout totalsegmentator|nnunet|folder SRC --out DST``.

Turns a public lobe data set, in its own layout, into what ``training train`` reads:
``DST/images/NAME.*`` (the source image, copied byte for byte), ``DST/labels/NAME.mha`` (uint8
paper labels on the image's grid) and ``DST/cases.csv`` (one row per source case: status
``ok``/``excluded``/``failed`` with the reason, split, lobe volumes, quality flags, source paths).
Train with ``data.csv: DST/cases.csv``: the split is the data set's own and left-out rows are
skipped (``training.data.cases.read_case_csv``).

* Streams: one case at a time per worker (``--workers N`` processes); nothing of the whole data
  set is held.
* Resumable: every case ends with ``DST/records/NAME.json``, written last; a later run skips the
  cases whose record matches the source files and settings, redoes the rest (failed cases too).
* Keeps going past a bad case; the summary lists each left-out and failed case with its reason.
  Exit status 0 when at least one case is usable (ok), 1 when none is or SRC/arguments are wrong:
  a data set with some unreadable cases is still a data set to train on, a run that produced
  nothing is an error to look at.
* Split: the data set's own (TotalSegmentator ``meta.csv``, nnU-Net ``imagesTs``); other kept
  cases get a seeded split (``training.data.cases.assign_splits`` over the kept cases' names; train/val
  only where the data set has its own test cases).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from algorithm.cli import HelpFormatter
from algorithm.errors import OutputError
from algorithm.labels import LOBES
from algorithm.io.reading import case_name
from algorithm.io.writing import ensure_output_dir, locked_output_dir, remove_stale_temp_files
from training.data.case_selection import SelectionRules
from algorithm.io.atomic import atomic_write_bytes
from training.data.cases import Case, assign_splits
from training.data.dataset_layouts import LAYOUTS, LayoutError, SourceCase, discover
from training.data.import_case import (
    IMAGES,
    LABELS,
    RECORDS,
    finished_record,
    import_case,
    record_failure,
    record_path,
    settings_of,
)

WORKER_ATTEMPTS = 2  # a case whose worker died twice is recorded as failed


@dataclass
class SplitSettings:
    seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.2


@dataclass
class ImportSummary:
    cases: int = 0
    done_before: int = 0
    records: list[dict] = field(default_factory=list)  # one per source case, in name order
    seconds: float = 0.0

    def of_status(self, status: str) -> list[dict]:
        return [r for r in self.records if r["status"] == status]


def _init_worker(threads: int) -> None:
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)


def _run_parallel(todo: list[SourceCase], out: Path, rules: SelectionRules, settings: dict, workers: int,
                  report: Callable[[dict], None]) -> None:
    """Cases in worker processes (spawned: no state of the parent); a pool broken by a dying
    worker is replaced and its unfinished cases resubmitted, each at most WORKER_ATTEMPTS times."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    attempts: dict[str, int] = {}
    pending = list(todo)
    while pending:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(threads,)) as pool:
            futures = {pool.submit(import_case, case, out, rules, settings): case for case in pending}
            pending = []
            try:
                for future in as_completed(futures):
                    case = futures[future]
                    try:
                        report(future.result())
                    except BrokenProcessPool:
                        attempts[case.name] = attempts.get(case.name, 0) + 1
                        if attempts[case.name] < WORKER_ATTEMPTS:
                            pending.append(case)
                        else:
                            reason = "the worker process died on this case (out of memory? a crash in a reader?)"
                            report(record_failure(case, out, settings, reason))
            except BaseException:  # Ctrl-C: drop the queued cases instead of working through them
                pool.shutdown(wait=False, cancel_futures=True)
                raise


def _progress_printer(total: int, stream) -> Callable[[dict], None]:
    count = [0]

    def report(record: dict) -> None:
        count[0] += 1
        why = f": {record['reason']}" if record["reason"] else ""
        print(f"[{count[0]}/{total}] {record['name']} {record['status']}{why} ({record.get('seconds', 0):.1f} s)",
              file=stream, flush=True)

    return report


def run_import(layout: str, src: str | Path, out: str | Path, label_map: str | None = None, workers: int = 1,
               rules: SelectionRules | None = None, split: SplitSettings | None = None, stream=None) -> ImportSummary:
    """Import ``src`` into ``out``; raises LayoutError (bad SRC) or OutputError (DST not writable).
    Progress lines go to ``stream`` (default: stderr)."""
    rules, split, stream = rules or SelectionRules(), split or SplitSettings(), stream or sys.stderr
    out = Path(out)
    start = time.perf_counter()
    cases = discover(layout, src, label_map)
    settings = settings_of(layout, rules)
    for sub in (IMAGES, LABELS, RECORDS):
        ensure_output_dir(out / sub)
    summary = ImportSummary(cases=len(cases))
    with locked_output_dir(out):
        for sub in (IMAGES, LABELS, RECORDS):
            remove_stale_temp_files(out / sub)
        todo = [c for c in cases if finished_record(out, c, settings) is None]
        summary.done_before = len(cases) - len(todo)
        if summary.done_before:
            print(f"{summary.done_before} of {len(cases)} cases done by an earlier run: skipped", file=stream)
        report = _progress_printer(len(todo), stream)
        if workers <= 1:
            for case in todo:
                report(import_case(case, out, rules, settings))
        else:
            _run_parallel(todo, out, rules, settings, workers, report)
        summary.records = [_read_record(out, c) for c in cases]
        _remove_orphans(out, summary.records)
        _assign_splits(summary.records, split)
        write_cases_csv(summary.records, out / "cases.csv")
    summary.seconds = time.perf_counter() - start
    return summary


def _read_record(out: Path, case: SourceCase) -> dict:
    return json.loads(record_path(out, case.name).read_text(encoding="utf-8"))


def _remove_orphans(out: Path, records: list[dict]) -> None:
    """Images or labels of a case that is not ok (an earlier import kept it, or a kill came
    between its writes): training must not find them."""
    not_ok = {record["name"] for record in records if record["status"] != "ok"}
    for sub in (IMAGES, LABELS):
        for path in (out / sub).iterdir():
            if path.is_file() and case_name(path) in not_ok:
                path.unlink()


def _assign_splits(records: list[dict], settings: SplitSettings) -> None:
    """Kept cases without the data set's own split get a seeded one (train/val only where the
    data set has its own test cases)."""
    kept = [r for r in records if r["status"] == "ok"]
    has_test = any(r["split"] == "test" for r in kept)
    cases = [Case(r["name"], Path(r["image"]), Path(r["label"]), r["split"]) for r in kept]
    test_fraction = 0.0 if has_test else settings.test_fraction
    assigned = {c.name: c.split for c in assign_splits(cases, settings.val_fraction, test_fraction, settings.seed)}
    for record in kept:
        record["split"] = assigned[record["name"]]


CSV_COLUMNS = (
    ["name", "status", "reason", "split", "image", "label"]
    + [f"volume_ml_{lobe.name}" for lobe in LOBES]
    + ["volume_ml_lungs", "max_edge_percent", "flags", "size_xyz", "spacing_mm", "source_image", "source_labels", "seconds"]
)


def _csv_row(record: dict) -> dict:
    volumes = record.get("volumes_ml", {})
    edges = record.get("edge_percent", {})
    row = {k: record.get(k, "") for k in ("name", "status", "reason", "split", "image", "label", "seconds")}
    row.update({f"volume_ml_{k}": v for k, v in volumes.items()})
    row["max_edge_percent"] = max(edges.values()) if edges else ""
    row["flags"] = ";".join(record.get("flags", []))
    row["size_xyz"] = "x".join(str(v) for v in record.get("size_xyz", []))
    row["spacing_mm"] = "x".join(str(v) for v in record.get("spacing_mm", []))
    row["source_image"] = record["source_image"]
    row["source_labels"] = ";".join(record["source_labels"])
    return row


def write_cases_csv(records: list[dict], path: Path) -> None:
    """cases.csv, written atomically (the columns ``training.data.cases.read_case_csv`` reads first)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for record in records:
        writer.writerow(_csv_row(record))
    atomic_write_bytes(path, buffer.getvalue().encode())


def print_summary(summary: ImportSummary, out: Path, stream) -> None:
    ok, excluded, failed = (summary.of_status(s) for s in ("ok", "excluded", "failed"))
    new = summary.cases - summary.done_before
    per_case = f", {summary.seconds / new:.2f} s per case" if new else ""
    print(f"{summary.cases} cases: {len(ok)} ok, {len(excluded)} excluded, {len(failed)} failed "
          f"({new} imported now in {summary.seconds:.1f} s{per_case}; {summary.done_before} done before)", file=stream)
    for title, records in (("excluded", excluded), ("failed", failed)):
        if records:
            print(f"{title}:", file=stream)
            for record in records:
                print(f"  {record['name']}: {record['reason']}", file=stream)
    splits = {s: sum(r["split"] == s for r in ok) for s in ("train", "val", "test")}
    print(f"wrote {out / 'cases.csv'} (train {splits['train']}, val {splits['val']}, test {splits['test']})", file=stream)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        formatter_class=HelpFormatter,
        prog="python -m training import-dataset",
        description="Import a labelled lobe data set in its own layout into images/, labels/ and cases.csv.",
    )
    p.add_argument("src", help="the data set's folder")
    p.add_argument("--layout", required=True, choices=LAYOUTS)
    p.add_argument("--out", required=True, help="output folder (created; an earlier import there is resumed)")
    p.add_argument("--label-map", help="paper, lungmask, lola11, totalsegmentator_v1, totalsegmentator_v2 or a "
                   "YAML file {value: LOBE}; default: per-structure names (totalsegmentator), dataset.json "
                   "(nnunet), paper (folder)")
    p.add_argument("--workers", type=int, default=1, help="parallel worker processes (default 1)")
    p.add_argument("--max-edge-percent", type=float, default=SelectionRules.max_edge_percent,
                   help="leave out scans whose lungs cover more than this share of their largest cross-section "
                   "on an image face (default %(default)s)")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--test-fraction", type=float, default=0.2)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.workers < 1:
        parser().error("--workers must be at least 1")
    out = Path(args.out)
    try:
        summary = run_import(
            args.layout, args.src, out, args.label_map, args.workers,
            SelectionRules(max_edge_percent=args.max_edge_percent),
            SplitSettings(args.split_seed, args.val_fraction, args.test_fraction),
        )
    except (LayoutError, OutputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print_summary(summary, out, sys.stderr)
    if not summary.of_status("ok"):
        print(f"error: no usable case in {args.src} (see the reasons above and {out / 'cases.csv'})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
