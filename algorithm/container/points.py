"""The container's optional second input: user points on the fissures, a grand-challenge
"Multiple points" socket (docs/outputs.md, "Fissure points").

The socket is the inputs.json entry whose interface kind is "Multiple points" (any slug; the
suggested one is ``fissure-points``, relative path ``fissure-points.json``). The platform gives a
JSON socket's value in the entry's ``value`` or as the file ``/input/<relative_path>``; either is
read. Each point's ``name`` names its fissure (``left_oblique``, ``right_oblique``,
``right_horizontal``); positions are the image's world coordinates (LPS mm). Without the socket
the container runs exactly as without this module.
"""

from __future__ import annotations

import json
from pathlib import Path

from algorithm.container.contract import ContractError, has_inputs_json, read_inputs_json, socket_interface, safe_join
from algorithm.fissure_points.reading import FissurePoints, check_counts, points_from_json

POINTS_KINDS = ("multiple points",)
SUGGESTED_SOCKET = {"slug": "fissure-points", "kind": "Multiple points", "relative_path": "fissure-points.json"}


def is_points_entry(entry: dict) -> bool:
    return str(socket_interface(entry).get("kind", "")).strip().lower() in POINTS_KINDS


def locate_points(input_root: Path) -> FissurePoints | None:
    """The fissure points of inputs.json's "Multiple points" socket, or None without one (or
    without inputs.json: the legacy contract has no sockets)."""
    if not has_inputs_json(input_root):
        return None
    entries = [entry for entry in read_inputs_json(input_root) if is_points_entry(entry)]
    if not entries:
        return None
    if len(entries) > 1:
        raise ContractError(f"inputs.json lists {len(entries)} 'Multiple points' sockets: expected at most one")
    entry = entries[0]
    relative = socket_interface(entry).get("relative_path")
    name = str(relative or socket_interface(entry).get("slug") or "points")
    value = entry.get("value")
    if value is None:
        path = safe_join(input_root, relative)
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ContractError(f"cannot read the fissure points socket {path}: {exc}") from exc
    points, kind = points_from_json(value, name)
    found = FissurePoints(tuple(points), f"{name} ({kind})")
    check_counts(found)
    return found
