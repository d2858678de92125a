"""Label conventions of other data sets and their mapping to the paper's lobe values.

One place for every source numbering the project reads: training (``data.label_remap``),
evaluation (``--ref-remap``) and the data set importer (``--label-map``). Torch-free, so that the
importer's worker processes stay light.

* Named maps (``LABEL_REMAPS``): ``paper``, ``lungmask``, ``lola11``, ``totalsegmentator_v1``,
  ``totalsegmentator_v2`` and ``totalsegmentator`` (= v2, the meaning this name had before v1
  was added; kept so existing configs do not change meaning).
* A small YAML file ``{source value: lobe}`` (lobe as ``LUL`` ... or its paper value).
* Per-structure files (TotalSegmentator's ``segmentations/lung_upper_lobe_left.nii.gz`` ...):
  ``TOTALSEGMENTATOR_FILES``.
* Label names (nnU-Net's ``dataset.json``): ``lobe_of_name``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import yaml

from algorithm.labels import LOBES, Lobe

# Source value -> paper value; anything not listed becomes background.
LABEL_REMAPS: dict[str, dict[int, int]] = {
    "paper": {int(v): int(v) for v in LOBES},
    # lungmask LTRCLobes: 1 LUL, 2 LLL, 3 RUL, 4 RML, 5 RLL (middle and lower swapped w.r.t. the paper)
    "lungmask": {1: Lobe.LUL, 2: Lobe.LLL, 3: Lobe.RUL, 4: Lobe.RML, 5: Lobe.RLL},
    # LOLA11 challenge: 10 LUL, 11 LLL, 20 RUL, 21 RML, 22 RLL
    "lola11": {10: Lobe.LUL, 11: Lobe.LLL, 20: Lobe.RUL, 21: Lobe.RML, 22: Lobe.RLL},
    # TotalSegmentator v1 'total' task (104 classes): 13 upper-left ... 17 lower-right
    "totalsegmentator_v1": {13: Lobe.LUL, 14: Lobe.LLL, 15: Lobe.RUL, 16: Lobe.RML, 17: Lobe.RLL},
    # TotalSegmentator v2 'total' task (117 classes): 10 upper-left ... 14 lower-right
    "totalsegmentator_v2": {10: Lobe.LUL, 11: Lobe.LLL, 12: Lobe.RUL, 13: Lobe.RML, 14: Lobe.RLL},
}
LABEL_REMAPS["totalsegmentator"] = LABEL_REMAPS["totalsegmentator_v2"]

# TotalSegmentator's per-structure mask files (without the suffix), one per lobe.
TOTALSEGMENTATOR_FILES: dict[Lobe, str] = {
    Lobe.LUL: "lung_upper_lobe_left",
    Lobe.LLL: "lung_lower_lobe_left",
    Lobe.RUL: "lung_upper_lobe_right",
    Lobe.RLL: "lung_lower_lobe_right",
    Lobe.RML: "lung_middle_lobe_right",
}

_ABBREVIATIONS = {lobe.name.lower(): lobe for lobe in LOBES}
_SIDES = {"left": "L", "l": "L", "sinister": "L", "right": "R", "r": "R", "dexter": "R"}
_POSITIONS = {"upper": "U", "superior": "U", "middle": "M", "mid": "M", "lower": "L", "inferior": "L"}


class LabelMapError(ValueError):
    """A label map that cannot be used (unknown name, malformed file, a lobe without a value)."""


def lobe_of_name(name: str) -> Lobe | None:
    """The lobe a label name means ('lung_upper_lobe_left', 'Left upper lobe', 'LUL',
    'RightMiddleLobe' ...), or None for anything else ('left lung', 'trachea')."""
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name)  # camelCase -> camel Case
    tokens = [t for t in re.split(r"[^a-z]+", spaced.lower()) if t]
    for token in tokens:
        if token in _ABBREVIATIONS:
            return _ABBREVIATIONS[token]
    sides = {_SIDES[t] for t in tokens if t in _SIDES}
    positions = {_POSITIONS[t] for t in tokens if t in _POSITIONS}
    if "lobe" not in tokens or len(sides) != 1 or len(positions) != 1:
        return None
    abbreviation = f"{sides.pop()}{positions.pop()}L".lower()
    return _ABBREVIATIONS.get(abbreviation)  # "left middle lobe" does not exist: None


def _lobe_of_value(value: object, where: str) -> Lobe:
    if isinstance(value, str) and value.strip().upper() in Lobe.__members__:
        lobe = Lobe[value.strip().upper()]
    elif isinstance(value, int) and not isinstance(value, bool) and value in set(int(v) for v in Lobe):
        lobe = Lobe(value)
    else:
        raise LabelMapError(f"{where}: {value!r} is not a lobe (LUL, LLL, RUL, RLL, RML or 0-5)")
    return lobe


def map_from_yaml(path: str | Path) -> dict[int, int]:
    """``{source value: lobe}`` from a YAML file, e.g. ``{10: LUL, 11: LLL, 20: RUL, 21: RML, 22: RLL}``."""
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise LabelMapError(f"cannot read label map {path}: {exc}") from exc
    if not isinstance(values, dict) or not values:
        raise LabelMapError(f"label map {path}: expected a mapping 'source value: lobe', e.g. '10: LUL'")
    table = {}
    for key, value in values.items():
        if not isinstance(key, int) or isinstance(key, bool) or key < 0:
            raise LabelMapError(f"label map {path}: source value {key!r} is not a non-negative integer")
        table[key] = int(_lobe_of_value(value, f"label map {path}, value {key}"))
    return table


def check_covers_lobes(table: dict[int, int], where: str) -> None:
    """Every lobe needs a source value, else every case would lack a lobe."""
    missing = [lobe.name for lobe in LOBES if int(lobe) not in set(table.values())]
    if missing:
        raise LabelMapError(f"{where} gives no source value for {', '.join(missing)}")


def resolve_label_map(spec: str | dict[int, int]) -> dict[int, int]:
    """A named map, the path of a YAML file, or an explicit ``{source: paper}`` dict."""
    if isinstance(spec, dict):
        return {int(k): int(v) for k, v in spec.items()}
    if spec in LABEL_REMAPS:
        return {int(k): int(v) for k, v in LABEL_REMAPS[spec].items()}
    if spec.lower().endswith((".yaml", ".yml")):
        return map_from_yaml(spec)
    raise LabelMapError(
        f"unknown label map {spec!r}: use one of {', '.join(sorted(LABEL_REMAPS))} or a .yaml file"
    )


def remap_labels(labels: np.ndarray, remap: str | dict[int, int]) -> np.ndarray:
    """Map source label values to the paper's; unknown values become background."""
    if remap == "paper":
        out = labels.astype(np.uint8, copy=True)
        out[(labels < 0) | (labels >= len(Lobe))] = 0
        return out
    table_map = resolve_label_map(remap)
    table = np.zeros(max(int(labels.max(initial=0)), max(table_map)) + 1, dtype=np.uint8)
    for src, dst in table_map.items():
        table[src] = dst
    return table[np.clip(labels, 0, None).astype(np.int64)]
