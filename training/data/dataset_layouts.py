"""The public lobe data sets' own layouts, listed as cases to import (nothing is read but names,
``meta.csv`` and ``dataset.json``).

* ``totalsegmentator``: ``SRC/CASE/ct.nii.gz`` and one mask per structure in
  ``SRC/CASE/segmentations/`` (``lung_upper_lobe_left.nii.gz`` ...); ``SRC/meta.csv``
  (``;``-separated, columns ``image_id`` and ``split``) gives the data set's split.
* ``nnunet``: ``dataset.json`` (label names, ``file_ending``), ``imagesTr/NAME_0000.EXT`` with
  ``labelsTr/NAME.EXT``; ``imagesTs``/``labelsTs`` pairs, where present, are the test split.
* ``folder``: ``images/`` and ``labels/`` paired by name (``training.data.cases.discover_folder``).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from algorithm.labels import Lobe
from algorithm.io.reading import case_name, is_image_file
from training.data.cases import discover_folder
from training.data.label_maps import (
    LabelMapError,
    TOTALSEGMENTATOR_FILES,
    check_covers_lobes,
    lobe_of_name,
    resolve_label_map,
)

LAYOUTS = ("totalsegmentator", "nnunet", "folder")
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


class LayoutError(ValueError):
    """SRC does not hold the layout it was said to hold (or its label names cannot be mapped)."""


@dataclass
class SourceCase:
    """One case as found in the source data set."""

    name: str
    image: Path
    split: str = ""  # the data set's own split ("" where it has none)
    label_file: Path | None = None  # one file of label values, mapped with label_map
    label_map: dict[int, int] = field(default_factory=dict)  # source value -> paper value
    structure_files: dict[int, Path] = field(default_factory=dict)  # paper lobe value -> binary mask file

    def label_sources(self) -> list[Path]:
        return [self.label_file] if self.label_file else [self.structure_files[k] for k in sorted(self.structure_files)]


def discover(layout: str, src: str | Path, label_map: str | None = None) -> list[SourceCase]:
    """The cases of ``src`` in ``layout``, sorted by name."""
    src = Path(src).resolve()  # records hold absolute source paths
    if not src.is_dir():
        raise LayoutError(f"source folder not found: {src}")
    if layout == "totalsegmentator":
        cases = _totalsegmentator(src, label_map)
    elif layout == "nnunet":
        cases = _nnunet(src, label_map)
    elif layout == "folder":
        cases = _folder(src, label_map)
    else:
        raise LayoutError(f"unknown layout {layout!r}: use one of {', '.join(LAYOUTS)}")
    if not cases:
        raise LayoutError(f"no cases found in {src} for the {layout} layout")
    names = [c.name for c in cases]
    if len(set(names)) != len(names):
        raise LayoutError(f"case names in {src} are not unique")
    return sorted(cases, key=lambda c: c.name)


def _images_by_name(folder: Path) -> dict[str, Path]:
    return {case_name(p): p for p in sorted(folder.iterdir()) if is_image_file(p)} if folder.is_dir() else {}


def _totalsegmentator(src: Path, label_map: str | None) -> list[SourceCase]:
    if label_map not in (None, "totalsegmentator"):
        raise LayoutError("the totalsegmentator layout has one file per structure: --label-map totalsegmentator or none")
    splits = _totalsegmentator_splits(src / "meta.csv")
    cases = []
    for folder in sorted(p for p in src.iterdir() if p.is_dir()):
        images = {n: p for n, p in _images_by_name(folder).items() if n == "ct"}
        segmentations = folder / "segmentations"
        if not images and not segmentations.is_dir():
            continue  # not a case folder
        masks = _images_by_name(segmentations)
        structure_files = {
            int(lobe): masks.get(stem, segmentations / f"{stem}.nii.gz")  # a missing file fails the case, named
            for lobe, stem in TOTALSEGMENTATOR_FILES.items()
        }
        image = images.get("ct", folder / "ct.nii.gz")
        cases.append(SourceCase(folder.name, image, splits.get(folder.name, ""), structure_files=structure_files))
    return cases


def _totalsegmentator_splits(path: Path) -> dict[str, str]:
    """image_id -> split from meta.csv (';'-separated in the published data set; ',' accepted)."""
    if not path.is_file():
        return {}
    text = path.read_text(encoding="utf-8-sig")
    first = text.splitlines()[0] if text else ""
    delimiter = ";" if first.count(";") > first.count(",") else ","
    rows = list(csv.DictReader(text.splitlines(), delimiter=delimiter))
    if rows and not {"image_id", "split"} <= set(rows[0]):
        raise LayoutError(f"{path}: expected columns image_id and split, found {', '.join(rows[0])}")
    splits = {}
    for row in rows:
        value = (row["split"] or "").strip().lower()
        if value and value not in SPLIT_NAMES:
            raise LayoutError(f"{path}: split {value!r} of {row['image_id']} is not train, val or test")
        splits[row["image_id"].strip()] = SPLIT_NAMES.get(value, "")
    return splits


def _nnunet(src: Path, label_map: str | None) -> list[SourceCase]:
    description = _dataset_json(src / "dataset.json")
    table = _checked_map(label_map, "--label-map") if label_map else _map_from_names(description, src)
    ending = description.get("file_ending", ".nii.gz")
    cases = []
    for images, labels, split in (("imagesTr", "labelsTr", ""), ("imagesTs", "labelsTs", "test")):
        label_dir = src / labels
        if not label_dir.is_dir():
            if split == "":
                raise LayoutError(f"{src} has no labelsTr folder: not an nnU-Net raw data set")
            continue
        for path in sorted(label_dir.iterdir()):
            if path.is_file() and path.name.endswith(ending):
                name = path.name[: -len(ending)]
                image = src / images / f"{name}_0000{ending}"  # CT has one channel, 0000
                cases.append(SourceCase(name, image, split, label_file=path, label_map=table))
    return cases


def _dataset_json(path: Path) -> dict:
    try:
        description = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise LayoutError(f"{path} not found: not an nnU-Net raw data set") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise LayoutError(f"cannot read {path}: {exc}") from exc
    if not isinstance(description, dict) or not isinstance(description.get("labels"), dict):
        raise LayoutError(f"{path} has no 'labels' mapping")
    return description


def _map_from_names(description: dict, src: Path) -> dict[int, int]:
    """Source value -> lobe from dataset.json's label names: nnU-Net v2 writes
    ``{"name": value}``, v1 ``{"value": "name"}``."""
    labels = description["labels"]
    v1 = all(str(k).strip().isdigit() for k in labels)
    pairs = [(v, int(k)) for k, v in labels.items()] if v1 else list(labels.items())
    table: dict[int, int] = {}
    for name, value in pairs:
        lobe = lobe_of_name(str(name))
        if lobe is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            raise LayoutError(f"{src}/dataset.json: label {name!r} is a region {value!r}; give --label-map")
        if int(lobe) in table.values():
            raise LayoutError(f"{src}/dataset.json names {Lobe(lobe).name} twice; give --label-map")
        table[value] = int(lobe)
    return _checked_map(table, f"{src}/dataset.json (labels {', '.join(str(n) for n, _ in pairs)})")


def _checked_map(spec: str | dict[int, int], where: str) -> dict[int, int]:
    try:
        table = resolve_label_map(spec)
        check_covers_lobes(table, where)
    except LabelMapError as exc:
        raise LayoutError(str(exc)) from exc
    return table


def _folder(src: Path, label_map: str | None) -> list[SourceCase]:
    table = _checked_map(label_map or "paper", f"label map {label_map or 'paper'}")
    try:
        found = discover_folder(src)
    except FileNotFoundError as exc:
        raise LayoutError(str(exc)) from exc
    return [SourceCase(c.name, c.image, "", label_file=c.label, label_map=table) for c in found]
