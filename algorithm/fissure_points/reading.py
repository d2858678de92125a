"""User points on the fissures, from the files users already have (docs/outputs.md, "Fissure points").

Formats (all points end up in LPS mm, the frame of ITK and DICOM):

- 3D Slicer Markups JSON (``.mrk.json``): each markup's ``coordinateSystem`` ("LPS" or "RAS"; Slicer
  writes LPS since 4.11, older files RAS) is honoured. A control point belongs to the fissure its
  label names (a trailing "-N", Slicer's numbering, is ignored), else to the one its markup's name
  names: one markup per fissure, or one markup with labelled points.
- grand-challenge.org "Multiple points" JSON (``{"type": "Multiple points", "points": [{"name",
  "point": [x, y, z]}]}``): each point's ``name`` names its fissure; the platform's world
  coordinates are the image's physical (LPS) mm.
- CSV: ``x,y,z,fissure`` per line in LPS mm; an optional header line, ``#`` comments and one
  optional ``coordinate_system,RAS`` (or ``LPS``) line.

Fissure names: ``left_oblique``, ``right_oblique``, ``right_horizontal`` (case, spaces and hyphens
free; ``horizontal`` alone means the right one).
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from algorithm.errors import InputError
from algorithm.fissure_fit import FISSURES, HORIZONTAL

MIN_POINTS_PER_FISSURE = 3  # three points not in a line fix a plane: the least a correction can move
SYSTEMS = ("LPS", "RAS")
ALIASES = {"horizontal": HORIZONTAL, "right_minor": HORIZONTAL}


@dataclass(frozen=True)
class FissurePoint:
    """One user point: its fissure, its position (LPS mm) and how the file names it (for messages)."""

    fissure: str
    lps_mm: tuple[float, float, float]
    label: str

    def as_dict(self) -> dict:
        return {"label": self.label, "fissure": self.fissure, "lps_mm": [round(v, 3) for v in self.lps_mm]}


@dataclass(frozen=True)
class FissurePoints:
    """The points of one file, in file order."""

    points: tuple[FissurePoint, ...]
    source: str  # file name and format, for the report

    def fissures(self) -> tuple[str, ...]:
        """The marked fissures, in the fit's order."""
        return tuple(name for name in FISSURES if any(p.fissure == name for p in self.points))

    def of(self, fissure: str) -> tuple[FissurePoint, ...]:
        return tuple(p for p in self.points if p.fissure == fissure)


def fissure_name(text: str, where: str) -> str:
    """The fissure ``text`` names; ``InputError`` naming ``where`` if it names none."""
    key = re.sub(r"[\s\-]+", "_", str(text).strip().lower())
    key = ALIASES.get(key, key)
    if key not in FISSURES:
        raise InputError(f"{where}: unknown fissure {text!r} (use one of {', '.join(FISSURES)})")
    return key


def read_points(path: Path) -> FissurePoints:
    """The points of a Slicer markups, grand-challenge points or CSV file, checked for count."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"fissure points file not found: {path}")
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    if path.suffix.lower() == ".csv":
        points, kind = _from_csv(text, path.name), "CSV"
    else:
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path.name}: not JSON ({exc.msg} at line {exc.lineno}) nor a .csv file") from exc
        points, kind = points_from_json(document, path.name)
    found = FissurePoints(tuple(points), f"{path.name} ({kind})")
    check_counts(found)
    return found


def points_from_json(document, name: str) -> tuple[list[FissurePoint], str]:
    """(points, format name) of a parsed Slicer markups or grand-challenge points document."""
    if isinstance(document, dict) and "markups" in document:
        return _from_markups(document, name), "3D Slicer markups"
    if isinstance(document, dict) and "points" in document:
        return _from_gc(document, name), "grand-challenge multiple points"
    raise InputError(f"{name}: neither 3D Slicer markups ('markups') nor grand-challenge points ('points')")


def check_counts(points: FissurePoints) -> None:
    """Every marked fissure has at least ``MIN_POINTS_PER_FISSURE`` points; some fissure is marked."""
    if not points.points:
        raise InputError(f"{points.source}: no fissure points")
    for name in points.fissures():
        mine = points.of(name)
        if len(mine) < MIN_POINTS_PER_FISSURE:
            labels = ", ".join(p.label for p in mine)
            raise InputError(
                f"{points.source}: {name} has {len(mine)} point(s) ({labels}); at least "
                f"{MIN_POINTS_PER_FISSURE} are needed to place a fissure"
            )


def _position(values, system: str, where: str) -> tuple[float, float, float]:
    try:
        xyz = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        xyz = ()
    if len(xyz) != 3 or not all(math.isfinite(v) for v in xyz):
        raise InputError(f"{where}: position {values!r} is not three finite numbers")
    if system == "RAS":  # RAS -> LPS: the first two axes point the other way
        xyz = (-xyz[0], -xyz[1], xyz[2])
    return xyz


def _system(value, where: str) -> str:
    system = str(value or "LPS").strip().upper()
    if system not in SYSTEMS:
        raise InputError(f"{where}: coordinate system {value!r} is neither LPS nor RAS")
    return system


def _objects(document: dict, key: str, name: str, item: str) -> list[dict]:
    """``document[key]``, checked to be a list of objects (``item`` names one in the message)."""
    entries = document.get(key)
    if not isinstance(entries, list):
        raise InputError(f"{name}: '{key}' is not a list")
    for i, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            raise InputError(f"{name}: {item} {i} is not an object")
    return entries


def _from_markups(document: dict, name: str) -> list[FissurePoint]:
    points = []
    for m, markup in enumerate(_objects(document, "markups", name, "markup"), start=1):
        markup_name = str(markup.get("name") or f"markup {m}")
        system = _system(markup.get("coordinateSystem"), f"{name}: markup {markup_name!r}")
        for c, control in enumerate(markup.get("controlPoints") or [], start=1):
            label = str(control.get("label") or f"{markup_name}-{c}") if isinstance(control, dict) else f"{markup_name}-{c}"
            where = f"{name}: point {label!r} (markup {markup_name!r}, control point {c})"
            if not isinstance(control, dict):
                raise InputError(f"{where}: not an object")
            fissure = _markup_fissure(label, markup_name, where)
            points.append(FissurePoint(fissure, _position(control.get("position"), system, where), label))
    return points


def _markup_fissure(label: str, markup_name: str, where: str) -> str:
    """The fissure a control point's label names (Slicer's "-N" suffix dropped), else its markup's."""
    stem = re.sub(r"[\-_ ]\d+$", "", label.strip())
    for text in (stem, label):
        try:
            return fissure_name(text, where)
        except InputError:
            pass
    return fissure_name(markup_name, where)


def _from_gc(document: dict, name: str) -> list[FissurePoint]:
    points = []
    for i, entry in enumerate(_objects(document, "points", name, "point"), start=1):
        label = str(entry.get("name") or f"point {i}")
        where = f"{name}: point {i} ({label!r})"
        points.append(FissurePoint(fissure_name(label, where), _position(entry.get("point"), "LPS", where), f"{label} #{i}"))
    return points


def _from_csv(text: str, name: str) -> list[FissurePoint]:
    system, rows = "LPS", []
    for line_no, row in enumerate(csv.reader(text.splitlines()), start=1):
        cells = [c.strip() for c in row]
        if not cells or not any(cells) or cells[0].startswith("#"):
            continue
        declared = re.fullmatch(r"coordinate[_ ]system\s*[,:=]?\s*(\w*)", ",".join(cells).strip(", "), re.IGNORECASE)
        if declared:
            system = _system(declared.group(1), f"{name}: line {line_no}")
            continue
        if [c.lower() for c in cells[:4]] == ["x", "y", "z", "fissure"]:
            continue
        rows.append((line_no, cells))
    points = []
    for line_no, cells in rows:
        where = f"{name}: line {line_no}"
        if len(cells) < 4:
            raise InputError(f"{where}: expected x,y,z,fissure, got {','.join(cells)!r}")
        fissure = fissure_name(cells[3], where)
        points.append(FissurePoint(fissure, _position(cells[:3], system, where), f"line {line_no}"))
    return points
