"""Import one case: read the image and its lobe labels, map them to the paper's values on the
image's grid, decide whether to keep it, write ``images/``, ``labels/`` and the case's record.

Order of writes, each under a temporary name then renamed: the old record is removed, then the
image, the labels, and the record last. A record therefore means a finished case; a run killed
at any moment leaves at most whole files without a record, which the next run redoes, and hidden
temporary files, which it deletes (``algorithm.io.writing.remove_stale_temp_files``).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from algorithm.errors import InputError, OutputError
from algorithm.labels import Lobe
from algorithm.io.reading import read_image
from algorithm.io.writing import output_file, write_json, write_mask
from training.data.case_selection import SelectionRules, select_case
from training.data.dataset_layouts import SourceCase
from training.data.label_maps import remap_labels

RECORD_VERSION = 1
COPIED_SUFFIXES = (".nii.gz", ".nii", ".mha", ".nrrd")  # single-file formats: the image is copied byte for byte
IMAGES, LABELS, RECORDS = "images", "labels", "records"


class CaseError(Exception):
    """The case's files are readable but do not make a labelled scan (overlap, other grid...)."""


def record_path(out: Path, name: str) -> Path:
    return out / RECORDS / f"{name}.json"


def source_stamp(case: SourceCase) -> list:
    """(path, size, mtime) of every source file: a changed file is imported again."""
    stamp = []
    for path in [case.image, *case.label_sources()]:
        try:
            stat = path.stat()
            stamp.append([str(path), stat.st_size, stat.st_mtime_ns])
        except OSError:
            stamp.append([str(path), None, None])
    return stamp


def finished_record(out: Path, case: SourceCase, settings: dict) -> dict | None:
    """The record of a case done by an earlier run with the same settings and source files
    (kept with its outputs present, or left out); None where it must be (re)done. Failed cases
    are always tried again."""
    try:
        record = json.loads(record_path(out, case.name).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if record.get("version") != RECORD_VERSION or record.get("settings") != case_settings(case, settings):
        return None
    if record.get("stamp") != source_stamp(case) or record.get("status") not in ("ok", "excluded"):
        return None
    if record["status"] == "ok" and not all((out / record[k]).is_file() for k in ("image", "label")):
        return None
    return record


def _same_grid(image: sitk.Image, other: sitk.Image, path: Path) -> None:
    """The labels must lie on the image's voxels (a tolerance for rounded header values)."""
    spacing = np.asarray(image.GetSpacing())
    problems = []
    if image.GetSize() != other.GetSize():
        problems.append(f"size {other.GetSize()} vs {image.GetSize()}")
    elif not np.allclose(other.GetSpacing(), spacing, rtol=1e-4, atol=1e-5):
        problems.append(f"spacing {other.GetSpacing()} vs {image.GetSpacing()}")
    elif not np.allclose(other.GetOrigin(), image.GetOrigin(), atol=1e-3 * spacing.max()):
        problems.append(f"origin {other.GetOrigin()} vs {image.GetOrigin()}")
    elif not np.allclose(other.GetDirection(), image.GetDirection(), atol=1e-4):
        problems.append("direction")
    if problems:
        raise CaseError(f"{path.name} is not on the image's grid ({problems[0]})")


def _label_values(loaded: sitk.Image, path: Path) -> np.ndarray:
    """Integer label values; a float file holding non-integers is not a label map."""
    values = sitk.GetArrayViewFromImage(loaded)
    if np.issubdtype(values.dtype, np.floating):
        rounded = np.rint(values)
        if not np.array_equal(rounded, values):
            raise CaseError(f"{path.name} holds non-integer values: not a label map")
        return rounded.astype(np.int64)
    return np.asarray(values)


def read_labels(case: SourceCase, image: sitk.Image) -> np.ndarray:
    """uint8 (Z, Y, X) paper labels on the image's grid."""
    if case.label_file is not None:
        loaded = read_image(case.label_file).image
        _same_grid(image, loaded, case.label_file)
        return remap_labels(_label_values(loaded, case.label_file), case.label_map)
    labels = np.zeros(image.GetSize()[::-1], np.uint8)
    overlaps = []
    for value, path in sorted(case.structure_files.items()):
        loaded = read_image(path).image
        _same_grid(image, loaded, path)
        mask = _label_values(loaded, path) > 0
        for other in np.unique(labels[mask]):
            if other:
                shared = int(np.count_nonzero(labels[mask] == other))
                overlaps.append(f"{Lobe(int(other)).name} and {Lobe(value).name} share {shared} voxels")
        labels[mask & (labels == 0)] = value
    if overlaps:
        raise CaseError(f"overlapping masks in case {case.name}: {'; '.join(overlaps)}")
    return labels


def _image_suffix(path: Path) -> str:
    name = path.name.lower()
    return next((s for s in COPIED_SUFFIXES if name.endswith(s)), ".mha")


def _write_image(source: Path, image: sitk.Image, final: Path) -> None:
    """A byte copy of single-file sources (fast, exact); a compressed .mha otherwise."""
    with output_file(final, _image_suffix(final), library_errors=(RuntimeError,)) as tmp:
        if final.name.lower().endswith(COPIED_SUFFIXES) and _image_suffix(source) == _image_suffix(final):
            shutil.copyfile(source, tmp)  # fsync and rename: output_file
        else:
            sitk.WriteImage(image, str(tmp), useCompression=True)


def _write_record(out: Path, record: dict) -> None:
    write_json(record, record_path(out, record["name"]))


def _convert(case: SourceCase, out: Path, rules: SelectionRules, record: dict) -> None:
    loaded = read_image(case.image)
    image = loaded.image
    labels = read_labels(case, image)
    selection = select_case(image, labels, rules)
    record.update(
        status="ok" if selection.keep else "excluded",
        reason=selection.reason,
        volumes_ml=selection.volumes_ml,
        edge_percent=selection.edge_percent,
        flags=selection.flags,
        size_xyz=list(image.GetSize()),
        spacing_mm=[round(s, 5) for s in image.GetSpacing()],
    )
    if not selection.keep:
        return
    image_rel = f"{IMAGES}/{case.name}{_image_suffix(case.image)}"
    label_rel = f"{LABELS}/{case.name}.mha"
    record["image"] = image_rel  # set before writing, so that a failure removes what was written
    _write_image(case.image, image, out / image_rel)
    mask = sitk.GetImageFromArray(labels)
    mask.CopyInformation(image)
    record["label"] = label_rel
    write_mask(mask, out / label_rel)


def _new_record(case: SourceCase, settings: dict) -> dict:
    return {
        "version": RECORD_VERSION,
        "name": case.name,
        "status": "failed",
        "reason": "",
        "split": case.split,
        "image": "",
        "label": "",
        "source_image": str(case.image),
        "source_labels": [str(p) for p in case.label_sources()],
        "settings": case_settings(case, settings),
        "stamp": source_stamp(case),
    }


def import_case(case: SourceCase, out: Path, rules: SelectionRules, settings: dict) -> dict:
    """Import one case and write its record; never raises for a bad case (status "failed")."""
    start = time.perf_counter()
    record_path(out, case.name).unlink(missing_ok=True)  # an old record must not vouch for new files
    record = _new_record(case, settings)
    try:
        _convert(case, out, rules, record)
    except (InputError, CaseError, OutputError) as exc:
        record.update(status="failed", reason=str(exc))
    except MemoryError:
        record.update(status="failed", reason="out of memory reading or converting this case")
    except Exception as exc:  # a bug or an unforeseen file: recorded, the import goes on
        record.update(status="failed", reason=f"unexpected {type(exc).__name__}: {exc}")
    if record["status"] == "failed":
        for rel in (record["image"], record["label"]):
            if rel:
                (out / rel).unlink(missing_ok=True)
        record.update(image="", label="")
    record["seconds"] = round(time.perf_counter() - start, 3)
    _write_record(out, record)
    return record


def settings_of(layout: str, rules: SelectionRules) -> dict:
    """What a record must match to be reused by a later run (with the case's label map, see
    ``case_settings``)."""
    return {"layout": layout, "rules": asdict(rules)}


def case_settings(case: SourceCase, settings: dict) -> dict:
    """The run's settings plus the label values this case is read with: the map itself, not
    the name it was given by (``--label-map totalsegmentator`` and the default are the same; an
    edited YAML file or dataset.json is not)."""
    values = [[k, v] for k, v in sorted(case.label_map.items())] if case.label_file else "per-structure files"
    return {**settings, "label_map": values}


def record_failure(case: SourceCase, out: Path, settings: dict, reason: str) -> dict:
    """The record of a case whose worker process died (killed for memory, crashed)."""
    record = _new_record(case, settings)
    record["reason"] = reason
    _write_record(out, record)
    return record
