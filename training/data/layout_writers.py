"""Write labelled scans in the public data sets' layouts (the ones ``import-dataset`` reads), for
the importer's tests and its speed benchmark: phantoms dressed as TotalSegmentator, nnU-Net or a
plain folder. Labels come in the paper's values and are written in the layout's own convention.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from algorithm.labels import LOBES
from training.data.label_maps import TOTALSEGMENTATOR_FILES


def write_on_grid(values: np.ndarray | sitk.Image, like: sitk.Image, path: Path) -> Path:
    """An array (Z, Y, X) with ``like``'s geometry, or an image as it is, compressed."""
    image = values
    if isinstance(values, np.ndarray):
        image = sitk.GetImageFromArray(values)
        image.CopyInformation(like)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=True)
    return path


def to_source_values(labels: np.ndarray, table: dict[int, int]) -> np.ndarray:
    """Paper labels written in another numbering (``table``: source value -> paper value)."""
    out = np.zeros(labels.shape, np.uint8)
    for source, paper in table.items():
        out[labels == paper] = source
    return out


def totalsegmentator_case(root: Path, name: str, image: sitk.Image, masks: dict[int, np.ndarray]) -> Path:
    """``root/NAME/ct.nii.gz`` and one ``segmentations/STRUCTURE.nii.gz`` per lobe (``masks``:
    paper lobe value -> boolean array), plus an empty ``liver.nii.gz`` as the real set has
    many other structures. Returns the CT's path."""
    folder = root / name
    for lobe in LOBES:
        write_on_grid(masks[int(lobe)].astype(np.uint8), image, folder / "segmentations" / f"{TOTALSEGMENTATOR_FILES[lobe]}.nii.gz")
    write_on_grid(np.zeros(image.GetSize()[::-1], np.uint8), image, folder / "segmentations" / "liver.nii.gz")
    return write_on_grid(image, image, folder / "ct.nii.gz")


def totalsegmentator_meta(root: Path, splits: dict[str, str]) -> None:
    """``meta.csv`` as published: ';'-separated, ``image_id`` ... ``split``."""
    with open(root / "meta.csv", "w", newline="") as handle:
        writer = csv.writer(handle, delimiter=";")
        writer.writerow(["image_id", "age", "gender", "institute", "study_type", "split"])
        for name, split in sorted(splits.items()):
            writer.writerow([name, 60, "m", "A", "ct thorax", split])


def nnunet_dataset_json(root: Path, labels: dict[str, int], cases: int) -> None:
    """nnU-Net v2's ``dataset.json`` (``labels``: name -> value)."""
    description = {"channel_names": {"0": "CT"}, "labels": labels, "numTraining": cases, "file_ending": ".nii.gz"}
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset.json").write_text(json.dumps(description, indent=1))


def nnunet_case(root: Path, name: str, image: sitk.Image, source_labels: np.ndarray, test: bool = False) -> tuple[Path, Path]:
    """``imagesTr/NAME_0000.nii.gz`` and ``labelsTr/NAME.nii.gz`` (``Ts`` for test cases)."""
    part = "Ts" if test else "Tr"
    return (
        write_on_grid(image, image, root / f"images{part}" / f"{name}_0000.nii.gz"),
        write_on_grid(source_labels, image, root / f"labels{part}" / f"{name}.nii.gz"),
    )


def folder_case(root: Path, name: str, image: sitk.Image, source_labels: np.ndarray,
                image_suffix: str = ".nii.gz", label_suffix: str = ".nrrd") -> tuple[Path, Path]:
    """``images/NAME`` and ``labels/NAME`` (suffixes may differ: pairs go by name)."""
    return (
        write_on_grid(image, image, root / "images" / f"{name}{image_suffix}"),
        write_on_grid(source_labels, image, root / "labels" / f"{name}{label_suffix}"),
    )
