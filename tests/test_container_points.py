"""The container's optional fissure points socket (algorithm/container/points.py): found in
inputs.json as a value or a file, refused with the point named, and a bad point fails the job with
nothing left in /output. Without the socket the container's tests (tests/test_container.py) hold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from algorithm.container.contract import ContractError
from algorithm.container.points import SUGGESTED_SOCKET, locate_points
from algorithm.errors import InputError
from tests.test_container import (  # noqa: F401  (fixtures)
    ct_dir,
    files_under,
    fresh_output,
    make_input,
    model_dir,
    read_only,
    run_gc,
    sandbox,
    workdir,
)

CT_ENTRY = {"pk": 1, "value": None, "file": None, "image": {"pk": "u", "name": "ct.mha"},
            "interface": {"slug": "ct", "kind": "Image", "super_kind": "Image", "relative_path": "images/ct"}}


def gc_points(points) -> dict:
    return {"type": "Multiple points", "version": {"major": 1, "minor": 0},
            "points": [{"name": name, "point": list(xyz)} for name, xyz in points]}


def points_entry(value=None) -> dict:
    return {"pk": 2, "value": value, "file": None,
            "interface": {**SUGGESTED_SOCKET, "super_kind": "Value", "title": "Fissure points"}}


def write_inputs(root: Path, entries: list[dict]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "inputs.json").write_text(json.dumps(entries))
    return root


THREE = [("right_oblique", (1.0, 2.0, 3.0)), ("right oblique", (4.0, 5.0, 6.0)), ("Right_Oblique", (7.0, 8.0, 9.0))]


def test_no_points_socket_means_no_points(tmp_path):
    assert locate_points(write_inputs(tmp_path, [CT_ENTRY])) is None


def test_points_are_read_from_the_value_or_the_file(tmp_path):
    by_value = locate_points(write_inputs(tmp_path / "a", [CT_ENTRY, points_entry(gc_points(THREE))]))
    root = write_inputs(tmp_path / "b", [CT_ENTRY, points_entry(None)])
    (root / SUGGESTED_SOCKET["relative_path"]).write_text(json.dumps(gc_points(THREE)))
    by_file = locate_points(root)
    assert by_value.points == by_file.points
    assert [p.fissure for p in by_value.points] == ["right_oblique"] * 3
    assert by_value.points[1].lps_mm == (4.0, 5.0, 6.0)  # the platform's world coordinates are LPS


def test_bad_points_sockets_are_refused(tmp_path):
    with pytest.raises(InputError, match=r"point 2 \('upper lobe'\): unknown fissure"):
        locate_points(write_inputs(tmp_path / "a", [CT_ENTRY, points_entry(gc_points([THREE[0], ("upper lobe", (0, 0, 0)), THREE[1]]))]))
    with pytest.raises(InputError, match="right_oblique has 2 point"):
        locate_points(write_inputs(tmp_path / "b", [CT_ENTRY, points_entry(gc_points(THREE[:2]))]))
    with pytest.raises(ContractError, match="2 'Multiple points' sockets"):
        locate_points(write_inputs(tmp_path / "c", [CT_ENTRY, points_entry(gc_points(THREE)), points_entry(gc_points(THREE))]))
    with pytest.raises(ContractError, match="cannot read the fissure points socket"):
        locate_points(write_inputs(tmp_path / "d", [CT_ENTRY, points_entry(None)]))


def test_a_point_outside_the_image_fails_the_job_and_leaves_no_output(sandbox, workdir, ct_dir, model_dir):
    input_dir = make_input("current", workdir / "points" / "input", ct_dir)
    entries = json.loads((input_dir / "inputs.json").read_text())
    far = [("left_oblique", (9000.0, 0.0, 0.0)), ("left_oblique", (9001.0, 0.0, 0.0)), ("left_oblique", (9002.0, 0.0, 0.0))]
    (input_dir / "inputs.json").write_text(json.dumps(entries + [points_entry(gc_points(far))]))
    read_only(input_dir)
    output = fresh_output(workdir, "points", sandbox)
    result = run_gc(sandbox, input_dir, output, model_dir)
    assert result.returncode == 1
    assert "fissure point 1 (left_oblique #1, left_oblique" in result.stderr and "outside the image" in result.stderr
    assert files_under(output) == []
