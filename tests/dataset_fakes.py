"""Small fake lobe data sets in the public layouts, made from phantoms (48 x 48 x 40 voxels).

Every layout holds the same cases, so that one table of expectations serves all of them:

| name | what | expected |
| --- | --- | --- |
| good-a ... good-d | complete phantom chests (seeds 4, 5, 6, 9; lungs touch no face by more than 1 %) | ok |
| cut | a phantom whose scan range stops inside the apex (seed 17, ``range_cut`` apex) | excluded |
| nonchest | the abdomen below a phantom's lungs (seed 3, 14 mm slices, slices 0-15) | excluded |
| missing-rml | a phantom without its right middle lobe labelled (seed 13) | excluded |
| truncated | a phantom whose CT file is cut to half its bytes (seed 14) | failed |
| overlap | per-structure layouts only: the LLL mask grown by one voxel into the LUL (seed 15) | failed |
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from algorithm.labels import LOBES, Lobe
from training.data import layout_writers as layouts
from training.data.label_maps import LABEL_REMAPS, TOTALSEGMENTATOR_FILES
from training.phantoms.config import PhantomOptions
from training.phantoms.generate import generate_case

SIZE_XYZ = (48, 48, 40)
GOOD = {"good-a": 4, "good-b": 5, "good-c": 6, "good-d": 9}
SPLIT_OF = {"good-a": "train", "good-b": "train", "good-c": "val", "good-d": "test"}  # TotalSegmentator meta.csv


@dataclass
class FakeCase:
    name: str
    image: sitk.Image  # int16 HU
    labels: np.ndarray  # uint8 (Z, Y, X) paper values: what the import must reproduce
    truncate: bool = False


def _phantom(seed: int, spacing_mm=None) -> tuple[sitk.Image, np.ndarray]:
    case = generate_case(seed, PhantomOptions(size_xyz=SIZE_XYZ, spacing_mm=spacing_mm, pathology="none"))
    return case.image, sitk.GetArrayFromImage(case.label)


def fake_cases() -> list[FakeCase]:
    """The cases of every layout (the overlap case is added by the per-structure layout)."""
    cases = [FakeCase(name, *_phantom(seed)) for name, seed in GOOD.items()]
    cases.append(FakeCase("cut", *_phantom(17)))
    image, labels = _phantom(3, spacing_mm=(8.0, 8.0, 14.0))
    cases.append(FakeCase("nonchest", image[:, :, 0:16], labels[0:16]))
    image, labels = _phantom(13)
    cases.append(FakeCase("missing-rml", image, np.where(labels == Lobe.RML, 0, labels).astype(np.uint8)))
    cases.append(FakeCase("truncated", *_phantom(14), truncate=True))
    return cases


def overlap_case() -> tuple[FakeCase, dict[int, np.ndarray], int]:
    """The overlap case, its per-lobe masks and the number of voxels the LLL mask takes from the LUL."""
    image, labels = _phantom(15)
    masks = {int(lobe): labels == lobe for lobe in LOBES}
    grown = ndimage.binary_dilation(masks[Lobe.LLL])
    shared = int(np.count_nonzero(grown & masks[Lobe.LUL]))
    masks[int(Lobe.LLL)] = grown & (labels > 0)
    return FakeCase("overlap", image, labels), masks, shared


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def write_totalsegmentator(root: Path) -> tuple[list[FakeCase], int]:
    """``root/NAME/ct.nii.gz``, ``root/NAME/segmentations/*.nii.gz``, ``root/meta.csv`` (';').
    Returns the cases and the overlap case's shared voxel count."""
    cases = fake_cases()
    overlap, overlap_masks, shared = overlap_case()
    for case in cases + [overlap]:
        masks = overlap_masks if case is overlap else {int(lobe): case.labels == lobe for lobe in LOBES}
        ct = layouts.totalsegmentator_case(root, case.name, case.image, masks)
        if case.truncate:
            _truncate(ct)
    layouts.totalsegmentator_meta(root, {c.name: SPLIT_OF.get(c.name, "train") for c in cases + [overlap]})
    return cases + [overlap], shared


def write_nnunet(root: Path) -> list[FakeCase]:
    """An nnU-Net v2 raw data set in TotalSegmentator v2 numbering, named in dataset.json, with a
    trachea label besides; good-d lies in imagesTs/labelsTs (the test split); the truncated file
    is a label."""
    cases = fake_cases()
    table = LABEL_REMAPS["totalsegmentator_v2"]
    names = {int(lobe): stem for lobe, stem in TOTALSEGMENTATOR_FILES.items()}
    labels = {"background": 0, **{names[paper]: source for source, paper in table.items()}, "trachea": 16}
    layouts.nnunet_dataset_json(root, labels, len(cases) - 1)
    for case in cases:
        source = layouts.to_source_values(case.labels, table)
        source[(case.labels == 0) & (sitk.GetArrayViewFromImage(case.image) > 300)] = 16  # another structure
        _, label_path = layouts.nnunet_case(root, case.name, case.image, source, test=case.name == "good-d")
        if case.truncate:
            _truncate(label_path)
    return cases


def write_folder(root: Path) -> list[FakeCase]:
    """``images/NAME.nii.gz`` and ``labels/NAME.nrrd`` in the LOLA11 numbering."""
    cases = fake_cases()
    for case in cases:
        source = layouts.to_source_values(case.labels, LABEL_REMAPS["lola11"])
        image_path, _ = layouts.folder_case(root, case.name, case.image, source)
        if case.truncate:
            _truncate(image_path)
    return cases
