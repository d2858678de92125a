"""A valid file is never refused: the corpus of valid encodings (tests/ct_corpus.py), each written
by a writer independent of SimpleITK and read back through ``algorithm``'s reader, compared voxel
by voxel and in geometry with what the writer meant; a truncated copy of each is refused; and a
valid file just on the accepting side of every rule that refuses files. docs/robustness.md lists
the corpus.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

import ct_corpus as corpus
from algorithm.errors import InputError
from algorithm.io.reading import read_image
from algorithm.io.validation import check_geometry, check_intensities

pytest.importorskip("nibabel")
pytest.importorskip("nrrd")
pytest.importorskip("pydicom")

QFORM = corpus.ras_affine(corpus.rotation(15.0), (10.0, 20.0, -30.0))
SFORM = corpus.ras_affine(corpus.rotation(-40.0), (1.0, 2.0, 3.0))

# name: writer into a folder; the file encodings also get a truncated copy
FILE_ENCODINGS = {
    "nifti-int16.nii": lambda d: corpus.write_nifti(d / "ct.nii", "int16", qform=QFORM),
    "nifti-int16-scl.nii.gz": lambda d: corpus.write_nifti(d / "ct.nii.gz", "int16", (1.0, -1024.0), qform=QFORM),
    "nifti-int16-scl.nii": lambda d: corpus.write_nifti(d / "ct.nii", "int16", (1.0, -1024.0), qform=QFORM),
    "nifti-uint16.nii.gz": lambda d: corpus.write_nifti(d / "ct.nii.gz", "uint16", qform=QFORM),
    "nifti-uint16-scl.nii": lambda d: corpus.write_nifti(d / "ct.nii", "uint16", (1.0, -1024.0), qform=QFORM),
    "nifti-int32.nii": lambda d: corpus.write_nifti(d / "ct.nii", "int32", qform=QFORM),
    "nifti-int32-scl.nii.gz": lambda d: corpus.write_nifti(d / "ct.nii.gz", "int32", (0.5, -1000.0), qform=QFORM),
    "nifti-float32.nii.gz": lambda d: corpus.write_nifti(d / "ct.nii.gz", "float32", qform=QFORM),
    "nifti-float32-scl.nii": lambda d: corpus.write_nifti(d / "ct.nii", "float32", (2.0, -24.0), qform=QFORM),
    "nifti-float64.nii": lambda d: corpus.write_nifti(d / "ct.nii", "float64", qform=QFORM),
    "nifti-float64.nii.gz": lambda d: corpus.write_nifti(d / "ct.nii.gz", "float64", qform=QFORM),
    "nifti-sform-only.nii.gz": lambda d: corpus.write_nifti(d / "ct.nii.gz", "int16", sform=SFORM),
    "nifti-qform-and-sform-equal.nii": lambda d: corpus.write_nifti(d / "ct.nii", "int16", qform=QFORM, sform=QFORM),
    "nrrd-raw-attached.nrrd": lambda d: corpus.write_nrrd(d / "ct.nrrd", "raw"),
    "nrrd-gzip-attached.nrrd": lambda d: corpus.write_nrrd(d / "ct.nrrd", "gzip"),
    "nrrd-raw-detached.nhdr": lambda d: corpus.write_nrrd(d / "ct.nhdr", "raw", detached=True),
    "nrrd-gzip-detached.nhdr": lambda d: corpus.write_nrrd(d / "ct.nhdr", "gzip", detached=True),
    "nrrd-float32-gzip.nrrd": lambda d: corpus.write_nrrd(d / "ct.nrrd", "gzip", dtype="float32"),
    "metaimage-local.mha": lambda d: corpus.write_metaimage(d / "ct.mha"),
    "metaimage-local-compressed.mha": lambda d: corpus.write_metaimage(d / "ct.mha", compressed=True),
    "metaimage-external.mhd": lambda d: corpus.write_metaimage(d / "ct.mhd", local=False),
    "metaimage-external-compressed.mhd": lambda d: corpus.write_metaimage(d / "ct.mhd", local=False, compressed=True),
    "metaimage-float64-local.mha": lambda d: corpus.write_metaimage(d / "ct.mha", dtype="float64"),
}
DICOM_ENCODINGS = {
    "dicom-slope-0.5-intercept-minus-1000": lambda d: corpus.write_dicom_series(d / "ct"),
    "dicom-unsigned-intercept-minus-1024": lambda d: corpus.write_dicom_series(d / "ct", 1.0, -1024.0, unsigned=True),
    "dicom-slope-2-intercept-minus-2048-shuffled-names": lambda d: corpus.write_dicom_series(
        d / "ct", 2.0, -2048.0, unsigned=True, shuffled_names=True),
    "dicom-enhanced-ct-multi-frame": lambda d: corpus.write_enhanced_ct(d / "ct"),
}


def assert_read_as_meant(written: corpus.Written) -> list[str]:
    loaded = read_image(written.path)
    image = loaded.image
    check_geometry(image)  # the runtime's header checks accept it too
    values = sitk.GetArrayFromImage(image).astype(np.float64)
    assert values.shape == written.hu_zyx.shape
    np.testing.assert_array_equal(values, written.hu_zyx)
    np.testing.assert_allclose(image.GetSpacing(), written.spacing_xyz, rtol=1e-6)
    np.testing.assert_allclose(image.GetOrigin(), written.origin_xyz, atol=1e-4)
    np.testing.assert_allclose(np.reshape(image.GetDirection(), (3, 3)), written.direction, atol=1e-5)
    return loaded.warnings


@pytest.mark.parametrize("name", sorted(FILE_ENCODINGS) + sorted(DICOM_ENCODINGS))
def test_valid_encoding_is_read_as_its_writer_meant(tmp_path, name):
    written = {**FILE_ENCODINGS, **DICOM_ENCODINGS}[name](tmp_path)
    assert assert_read_as_meant(written) == []


@pytest.mark.parametrize("name", sorted(FILE_ENCODINGS))
def test_truncated_copy_of_each_encoding_is_refused(tmp_path, name):
    written = FILE_ENCODINGS[name](tmp_path)
    corpus.truncate_data(written, drop_bytes=1000)
    with pytest.raises(InputError, match="truncated|bytes of pixel data"):
        read_image(written.path)


@pytest.mark.parametrize("name, offset", [("nifti-int16-scl.nii.gz", 0), ("nifti-float64.nii.gz", 0)])
def test_whole_gzip_stream_with_too_little_data_is_refused(tmp_path, name, offset):
    """A complete, valid gzip stream that is short: ITK's NIfTI reader would fill it with zeros."""
    written = FILE_ENCODINGS[name](tmp_path)
    corpus.shorten_gzip_payload(written.path, drop_bytes=1000, offset=offset)
    with pytest.raises(InputError, match="bytes of pixel data, its header announces"):
        read_image(written.path)


def test_gzip_nrrd_with_too_little_data_is_refused(tmp_path):
    written = corpus.write_nrrd(tmp_path / "ct.nhdr", "gzip", detached=True)
    corpus.shorten_gzip_payload(written.data_files[0], drop_bytes=1000)
    with pytest.raises(InputError, match="bytes of pixel data, its header announces"):
        read_image(written.path)


def test_extra_bytes_after_the_pixel_data_are_accepted(tmp_path):
    """The accepting side of the truncation rule: more data than announced is read as meant."""
    written = corpus.write_nifti(tmp_path / "ct.nii", "int16", (1.0, -1024.0), qform=QFORM)
    with open(written.path, "ab") as handle:
        handle.write(b"\0" * 7)
    assert_read_as_meant(written)


@pytest.mark.parametrize("sform_code, winner", [(1, "sform"), (2, "qform")])
def test_qform_and_sform_disagreeing_follow_itk(tmp_path, sform_code, winner):
    """ITK takes the sform when its code is 1 (scanner anatomical), else the qform (code > 0):
    the reader follows ITK, whatever nibabel's own preference (the sform whenever it is set)."""
    import nibabel as nib

    written = corpus.write_nifti(tmp_path / "ct.nii.gz", "int16", qform=QFORM, sform=SFORM)
    image = nib.load(str(written.path))
    image.set_sform(SFORM, code=sform_code)
    nib.save(image, str(written.path))
    meant = corpus._nifti_written(written.path, written.hu_zyx.transpose(2, 1, 0), SFORM if winner == "sform" else QFORM)
    assert_read_as_meant(meant)


def test_dicom_with_a_missing_slice_is_read_with_a_warning(tmp_path):
    written = corpus.write_dicom_series(tmp_path / "ct", shuffled_names=True, skip=(10,))
    loaded = read_image(written.path)
    values = sitk.GetArrayFromImage(loaded.image).astype(np.float64)
    assert values.shape == written.hu_zyx.shape  # the gap is filled on the regular grid
    kept = [k for k in range(values.shape[0]) if k != 10]
    np.testing.assert_array_equal(values[kept], written.hu_zyx[kept])
    assert any("missing slices" in w for w in loaded.warnings), loaded.warnings


def test_dicom_with_a_truncated_slice_names_it(tmp_path):
    """GDCM leaves a truncated file out of the series silently; the reader says which."""
    written = corpus.write_dicom_series(tmp_path / "ct")
    cut = corpus.truncate_data(written, drop_bytes=1000)
    loaded = read_image(written.path)
    assert any(cut.name in w and "could not be read" in w for w in loaded.warnings), loaded.warnings


def test_truncated_multi_frame_dicom_is_refused_with_the_reason(tmp_path):
    written = corpus.write_enhanced_ct(tmp_path / "ct")
    corpus.truncate_data(written, drop_bytes=1000)
    with pytest.raises(InputError, match="could not be read .truncated or corrupt.*enhanced.dcm"):
        read_image(written.path)


# -- the accepting side of each refusing rule -------------------------------------------------------


def _volume(size_xyz, spacing_xyz, direction=None) -> sitk.Image:
    values = np.full(size_xyz[::-1], -1000, np.int16)
    values[:, size_xyz[1] // 4 : -size_xyz[1] // 4, size_xyz[0] // 4 : -size_xyz[0] // 4] = 40
    image = sitk.GetImageFromArray(values)
    image.SetSpacing(spacing_xyz)
    if direction is not None:
        image.SetDirection(direction)
    return image


def test_the_smallest_accepted_field_of_view_is_read(tmp_path):
    """32 x 32 voxels and 100 mm in plane, 5 slices and 30 mm along z: the header rule's limits."""
    path = tmp_path / "small.nrrd"
    sitk.WriteImage(_volume((32, 32, 5), (3.125, 3.125, 6.0)), str(path))
    check_geometry(read_image(path).image)
    sitk.WriteImage(_volume((32, 32, 5), (3.1, 3.1, 6.0)), str(path))  # 99.2 mm: just outside
    with pytest.raises(InputError, match=r"field of view 99\.2 x 99\.2 x 30\.0 mm is too small"):
        read_image(path)


def test_nearly_orthonormal_direction_is_accepted(tmp_path):
    """Direction cosines written with 6 digits (DICOM, many NIfTI writers) are not exactly orthonormal."""
    a = np.radians(33.3)
    rounded = np.round([np.cos(a), -np.sin(a), 0, np.sin(a), np.cos(a), 0, 0, 0, 1], 4)
    path = tmp_path / "oblique.mha"
    sitk.WriteImage(_volume((32, 32, 24), (4.0, 4.0, 2.5), tuple(float(v) for v in rounded)), str(path))
    check_geometry(read_image(path).image)


def test_little_air_just_above_the_not_hu_limit_is_accepted():
    """The not-HU rule refuses under 1 % of voxels below -700 HU; 1.2 % (a tight crop) passes."""
    rng = np.random.default_rng(0)
    hu = rng.normal(40, 20, 100_000).astype(np.float32)
    hu[:1200] = -1000.0
    check_intensities(hu)
    hu[:1200] = 40.0
    hu[:800] = -1000.0
    with pytest.raises(InputError, match="Hounsfield"):
        check_intensities(hu)


def test_a_coarsely_quantised_ct_is_not_taken_for_a_label_image():
    """Few distinct values (a CT stored in 20 HU steps) with air: a CT, not a label image."""
    rng = np.random.default_rng(1)
    hu = (np.round(rng.uniform(-1000, 200, 100_000) / 100) * 100).astype(np.int16)
    assert np.unique(hu).size <= 32
    check_intensities(hu)
