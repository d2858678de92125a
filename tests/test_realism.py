"""The measures of the realism report (docs/realism.md, issue 17): orientation and dome tops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from training.realism.real_scans import REAL_DIR, load_real_scans
from training.realism.report import _dome_tops, link_from

SPACING = (2.0, 2.0, 2.0)  # x, y, z mm


def _chest(right_top_z: int, left_top_z: int, heart_z: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Two box lungs on dome-shaped diaphragms ([z, y, x], LPS: right lung at small x)."""
    nz, ny, nx = 120, 60, 100
    body = np.zeros((nz, ny, nx), bool)
    body[:, 2:58, 4:96] = True
    lungs = np.zeros_like(body)
    zz = np.arange(nz)[:, None, None]
    yy, xx = np.mgrid[:ny, :nx]
    for x0, x1, top in ((10, 46, right_top_z), (54, 90, left_top_z)):
        r2 = ((xx - 0.5 * (x0 + x1)) / (0.5 * (x1 - x0))) ** 2 + ((yy - 30) / 25.0) ** 2
        bottom = top - 25.0 * r2  # recess 50 mm below the dome top at the rim
        inside = r2 < 1.0  # an elliptical footprint
        if heart_z is not None and x0 == 54:
            bottom = np.where((xx < 80) & (yy < 24), heart_z, bottom)  # the heart, reaching laterally
        lungs |= inside[None] & (zz >= bottom[None]) & (zz < 110)
    return lungs, body


def test_right_minus_left_dome_top_has_the_anatomical_sign():
    lungs, body = _chest(right_top_z=50, left_top_z=42, heart_z=None)
    right, left, diff = _dome_tops(lungs, body, SPACING)
    assert 10.0 <= diff <= 20.0  # the right dome is 16 mm higher
    assert 40.0 <= right <= 52.0 and 40.0 <= left <= 52.0  # 50 mm above their recess


def test_the_heart_under_the_left_lung_is_not_read_as_its_dome():
    lungs, body = _chest(right_top_z=50, left_top_z=42, heart_z=85)  # heart top 70 mm above the left dome
    right, left, diff = _dome_tops(lungs, body, SPACING)
    assert 10.0 <= diff <= 20.0
    assert left <= 52.0  # not the heart's top, 120 mm above the left recess


def test_real_scans_are_read_with_identity_directions(tmp_path):
    hu = np.zeros((4, 5, 6), np.int16)
    hu[0, 0, 0] = 100  # the voxel at the first index of a flipped (RAS-stored) file
    image = sitk.GetImageFromArray(hu)
    image.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
    sitk.WriteImage(image, str(tmp_path / "flipped.nrrd"))
    (scan,) = load_real_scans(tmp_path)
    assert np.allclose(scan.image.GetDirection(), np.eye(3).ravel())
    out = sitk.GetArrayFromImage(scan.image)
    assert out[0, -1, -1] == 100  # x and y reversed, z kept


def test_pathology_table_cli_rejects_a_missing_scan_and_bad_seeds(tmp_path, capsys):
    import pytest

    from training.realism.report import _seed_range, main

    assert _seed_range("300-302") == range(300, 303) and _seed_range("7") == range(7, 8)
    assert main(["--real", str(tmp_path), "--scan", "copdgene"]) == 2
    assert "error: no real scan" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--scan", "copdgene", "--seeds", "5-x"])
    assert "expected FIRST-LAST" in capsys.readouterr().err


def test_real_dir_lies_beside_the_repository_whatever_the_working_directory(tmp_path, monkeypatch):
    """The one REAL_DIR is ../shared/data/real of the repository root, not of the cwd."""
    monkeypatch.chdir(tmp_path)
    assert REAL_DIR == Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"


def test_picture_links_are_relative_to_the_document(tmp_path):
    """docs/realism.md links the pictures that the study writes into results/realism/."""
    doc, picture = tmp_path / "docs" / "realism.md", tmp_path / "results" / "realism" / "phantoms.png"
    assert link_from(doc, picture) == "../results/realism/phantoms.png"
    assert (doc.parent / link_from(doc, picture)).resolve() == picture.resolve()
