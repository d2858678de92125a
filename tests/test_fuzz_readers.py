"""Property-based fuzzing of the readers: mutated .mha, .nii.gz and .nrrd bytes (truncation, byte
flips in header and data, changed header fields). Property: reading plus the geometry and
intensity checks either give a valid 3D scalar image or raise InputError; never another
exception, never a hang (each example runs under a deadline). A few seconds in the default run,
a longer search marked slow."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from algorithm.errors import InputError
from algorithm.io.reading import read_image
from algorithm.io.validation import check_geometry, check_intensities
from conftest import make_simple_chest

FORMATS = (".mha", ".nii.gz", ".nrrd")
HEADER_FIELDS = {
    ".mha": [b"DimSize = 64 64 40", b"ElementSpacing = 5.5 5.5 6", b"ElementType = MET_SHORT", b"NDims = 3"],
    ".nrrd": [b"sizes: 64 64 40", b"type: short", b"dimension: 3", b"encoding: raw"],
}
REPLACEMENTS = [b"0", b"-1", b"99999999999", b"nan", b"1e308", b"", b"\xff\xfe", b"MET_DOUBLE", b"7 7 7 7", b"gzip"]


def _valid_bytes() -> dict[str, bytes]:
    """One small valid file per format (built once per process)."""
    chest = make_simple_chest((8, 40, 40), (4.0, 4.0, 6.0))
    blobs = {}
    tmp = Path(__import__("tempfile").mkdtemp(prefix="fuzz-seed-"))
    for suffix in FORMATS:
        path = tmp / f"seed{suffix}"
        sitk.WriteImage(chest, str(path), useCompression=False)
        blobs[suffix] = path.read_bytes()
    return blobs


VALID = _valid_bytes()


@st.composite
def mutated(draw) -> tuple[str, bytes]:
    suffix = draw(st.sampled_from(FORMATS))
    data = bytearray(gzip.decompress(VALID[suffix]) if suffix == ".nii.gz" else VALID[suffix])
    kind = draw(st.sampled_from(["truncate", "flip-header", "flip-data", "field"]))
    header_end = 352 if suffix == ".nii.gz" else data.index(b"\n\n") + 2 if suffix == ".nrrd" else data.index(b"LOCAL\n") + 6
    if kind == "truncate":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif kind in ("flip-header", "flip-data"):
        low, high = (0, header_end - 1) if kind == "flip-header" else (header_end, len(data) - 1)
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(low, high))] = draw(st.integers(0, 255))
    elif suffix in HEADER_FIELDS:
        field = draw(st.sampled_from(HEADER_FIELDS[suffix]))
        key = field.split(b"=")[0] if b"=" in field else field.split(b":")[0] + b":"
        value = draw(st.sampled_from(REPLACEMENTS))
        data = data.replace(field, key + (b" = " if b"=" in field else b" ") + value)
    else:  # NIfTI header fields: dim, pixdim, datatype, vox_offset, qform/sform codes
        offset = draw(st.sampled_from([40, 42, 44, 46, 70, 72, 76, 80, 84, 108, 252, 254]))
        data[offset : offset + 4] = draw(st.binary(min_size=4, max_size=4))
    if suffix == ".nii.gz":
        data = gzip.compress(bytes(data), compresslevel=1)
        if draw(st.booleans()):
            data = data[: draw(st.integers(0, len(data)))]
    return suffix, bytes(data)


def _check(tmp_path: Path, suffix: str, data: bytes) -> None:
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(data)
    try:
        image = read_image(path).image
        check_geometry(image)
        check_intensities(sitk.GetArrayViewFromImage(image))
    except InputError as exc:
        assert str(exc) and "\n" not in str(exc)  # one line for the user
        return
    assert image.GetDimension() == 3 and image.GetNumberOfComponentsPerPixel() == 1
    assert np.isfinite(sitk.GetArrayViewFromImage(image)).all()


FUZZ = dict(deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow], derandomize=False)


@settings(max_examples=60, **FUZZ)
@given(case=mutated())
def test_mutated_files_read_or_refused(tmp_path, case):
    _check(tmp_path, *case)


@pytest.mark.slow
@settings(max_examples=2000, **FUZZ)
@given(case=mutated())
def test_mutated_files_read_or_refused_long(tmp_path, case):
    _check(tmp_path, *case)
