"""Labelled cases and their splits: which scans a run trains, validates and tests on.

* Cases come from a folder with ``images/`` and ``labels/`` (mha, nii, nii.gz, nrrd, mhd; paired
  by name) or from a CSV with columns ``image,label`` and optional ``split`` and ``name``.
* Splits are written to ``splits.csv`` in the run folder and read back on later runs, so they
  never change under a running experiment; new splits are a seeded permutation of sorted names.

No torch here: the importer and the evaluation read cases without loading the training stack.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from algorithm.io.atomic import atomic_write_bytes
from algorithm.io.formats import IMAGE_SUFFIXES
from algorithm.io.reading import case_name, is_image_file
from training.config import DataConfig

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Case:
    """One labelled scan."""

    name: str
    image: Path
    label: Path
    split: str = ""


def image_files(folder: Path) -> dict[str, Path]:
    """Image files of ``folder`` by case name (the name without its image suffix)."""
    files = {}
    for path in sorted(folder.iterdir()):
        if is_image_file(path):
            files[case_name(path)] = path
    return files


def discover_folder(root: str | Path) -> list[Case]:
    """Cases of ``root/images`` and ``root/labels`` paired by name (images without labels are an error)."""
    root = Path(root).resolve()
    images, labels = image_files(root / "images"), image_files(root / "labels")
    missing = sorted(set(images) - set(labels))
    if missing:
        raise FileNotFoundError(f"{len(missing)} image(s) in {root}/images have no label, e.g. {missing[0]}")
    if not images:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {root}/images")
    return [Case(name, images[name], labels[name]) for name in sorted(images)]


def read_case_csv(path: str | Path) -> list[Case]:
    """Cases of a CSV (columns image, label, optional split, name, status); relative paths are
    relative to it. Rows with a ``status`` other than ``ok`` are skipped: ``import-dataset`` lists
    the cases it left out in the same file."""
    path = Path(path)
    cases = []
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if (row.get("status") or "ok") != "ok":
                continue  # a case `import-dataset` left out (excluded or failed), with its reason
            image = (path.parent / row["image"]).resolve()
            label = (path.parent / row["label"]).resolve()
            name = row.get("name") or case_name(image)
            split = (row.get("split") or "").strip().lower()
            if split and split not in SPLITS:
                raise ValueError(f"{path}: split {split!r} of {name} is not one of {SPLITS}")
            cases.append(Case(name, image, label, split))
    if len({c.name for c in cases}) != len(cases):
        raise ValueError(f"{path}: case names are not unique")
    return sorted(cases, key=lambda c: c.name)


def assign_splits(cases: list[Case], val_fraction: float, test_fraction: float, seed: int) -> list[Case]:
    """Give every case without a split one: a seeded permutation of the names."""
    todo = sorted(c.name for c in cases if not c.split)
    order = np.random.default_rng(seed).permutation(len(todo))
    n_test = int(round(test_fraction * len(todo)))
    n_val = int(round(val_fraction * len(todo)))
    split_of = {}
    for rank, index in enumerate(order):
        split_of[todo[index]] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    return [c if c.split else Case(c.name, c.image, c.label, split_of[c.name]) for c in cases]


def write_splits(cases: list[Case], path: Path) -> None:
    """splits.csv: name, split, image, label (absolute paths)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["name", "split", "image", "label"])
    for c in cases:
        writer.writerow([c.name, c.split, str(Path(c.image).resolve()), str(Path(c.label).resolve())])
    atomic_write_bytes(path, buffer.getvalue().encode())


def load_cases(config: DataConfig, splits_path: Path) -> list[Case]:
    """The cases with their splits: read from ``splits_path`` if it exists, else made and written."""
    if splits_path.is_file():
        return read_case_csv(splits_path)
    cases = read_case_csv(config.csv) if config.csv else discover_folder(config.root)
    cases = assign_splits(cases, config.val_fraction, config.test_fraction, config.split_seed)
    write_splits(cases, splits_path)
    return cases


def cases_of(cases: list[Case], split: str, max_cases: int | None = None) -> list[Case]:
    """The cases of one split, the first ``max_cases`` of them when given."""
    chosen = [c for c in cases if c.split == split]
    return chosen[:max_cases] if max_cases else chosen
