"""DICOM-SEG round trip on a small synthetic CT series written with SimpleITK."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from algorithm.cli import main
from algorithm.labels import LOBES
from algorithm.io.reading import read_image

hd = pytest.importorskip("highdicom")

from algorithm.io.dicom_seg import LOBE_CODES, write_dicom_seg  # noqa: E402

UID_ROOT = "1.2.826.0.1.3680043.8.498.4242"


def write_ct_series(image: sitk.Image, folder: Path) -> None:
    """One CT file per slice with the attributes a DICOM reader (and highdicom) needs."""
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    d = image.GetDirection()
    orientation = "\\".join(f"{v:.6f}" for v in (d[0], d[3], d[6], d[1], d[4], d[7]))
    common = {
        "0008|0060": "CT", "0008|0016": "1.2.840.10008.5.1.4.1.1.2", "0008|0008": "ORIGINAL\\PRIMARY\\AXIAL",
        "0020|000d": f"{UID_ROOT}.1", "0020|000e": f"{UID_ROOT}.2", "0020|0052": f"{UID_ROOT}.3",
        "0020|0037": orientation, "0018|0050": f"{image.GetSpacing()[2]:.3f}", "0010|0010": "PHANTOM^LOBES",
        "0010|0020": "P001", "0010|0030": "19700101", "0010|0040": "O", "0008|0020": "20240101",
        "0008|0030": "120000", "0020|0010": "1", "0008|0050": "A1", "0008|0090": "", "0020|0011": "3",
        "0008|0070": "test", "0028|1052": "0", "0028|1053": "1",
    }
    for k in range(image.GetDepth()):
        plane = image[:, :, k]
        position = image.TransformIndexToPhysicalPoint((0, 0, k))
        tags = {**common, "0008|0018": f"{UID_ROOT}.10.{k + 1}", "0020|0013": str(k + 1),
                "0020|0032": "\\".join(f"{v:.4f}" for v in position)}
        for tag, value in tags.items():
            plane.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(plane)


def _series_and_mask(tmp_path: Path) -> tuple[Path, sitk.Image]:
    hu = np.full((12, 40, 48), -800, np.int16)
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing((2.0, 2.0, 3.0))
    image.SetOrigin((-40.0, -30.0, 100.0))
    folder = tmp_path / "series"
    write_ct_series(image, folder)
    loaded = read_image(folder).image
    labels = np.zeros(hu.shape, np.uint8)
    labels[2:6, 5:20, 5:20], labels[6:10, 5:20, 5:20] = 1, 2
    labels[2:6, 5:20, 25:40], labels[6:10, 5:20, 25:40] = 3, 4
    labels[4:8, 22:35, 25:40] = 5
    mask = sitk.GetImageFromArray(labels)
    mask.CopyInformation(loaded)
    return folder, mask


def test_round_trip_segments_codes_and_frames(tmp_path):
    import pydicom

    folder, mask = _series_and_mask(tmp_path)
    out = tmp_path / "case_lobes_seg.dcm"
    write_dicom_seg(mask, folder, out)
    seg = hd.seg.segread(out)
    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    assert seg.StudyInstanceUID == f"{UID_ROOT}.1" and seg.FrameOfReferenceUID == f"{UID_ROOT}.3"
    segments = {int(s.SegmentNumber): s for s in seg.SegmentSequence}
    assert sorted(segments) == [int(lobe) for lobe in LOBES]
    for lobe in LOBES:
        code = segments[int(lobe)].SegmentedPropertyTypeCodeSequence[0]
        assert (code.CodeValue, code.CodingSchemeDesignator) == (LOBE_CODES[lobe][0], "SCT")
        assert segments[int(lobe)].SegmentedPropertyCategoryCodeSequence[0].CodeValue == "91723000"
    # frames back to the source slices, segment numbers = label values
    sources = sorted((pydicom.dcmread(p) for p in folder.iterdir()), key=lambda ds: float(ds.ImagePositionPatient[2]))
    uids = [ds.SOPInstanceUID for ds in sources]
    labels = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, combine_segments=True)
    assert np.array_equal(np.asarray(labels), sitk.GetArrayFromImage(mask))


def test_cli_refuses_dicom_seg_for_a_file_input(tmp_path, capsys, chest_ct_path, test_weights):
    code = main(["predict", str(chest_ct_path), "-o", str(tmp_path / "out"), "--weights", str(test_weights), "--dicom-seg", "--quiet"])
    assert code == 1
    assert "--dicom-seg needs a DICOM folder" in capsys.readouterr().err


def test_missing_highdicom_gives_an_install_hint(monkeypatch):
    import builtins

    from algorithm.io.dicom_seg import require_highdicom
    from algorithm.errors import OutputError

    real_import = builtins.__import__

    def no_highdicom(name, *args, **kwargs):
        if name == "highdicom":
            raise ImportError("no highdicom")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_highdicom)
    with pytest.raises(OutputError, match="pip install highdicom"):
        require_highdicom()
