"""The lobe mask as a DICOM Segmentation object (``--dicom-seg``), made with highdicom.

highdicom (with pydicom) is an optional dependency: it is only needed for this output, so the
container and the plain command line do without it; asking for the output without it installed
gives a clear error. The object references the source CT series (same study, frame of reference
and patient), has one segment per lobe numbered like the mask (1 LUL ... 5 RML) and codes each
lobe with its SNOMED CT concept (DICOM CID 7151 style: category "Anatomical Structure").
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from algorithm.version import __version__
from algorithm.errors import InputError, OutputError
from algorithm.labels import LOBES, LOBE_NAMES, Lobe

CATEGORY_CODE = ("91723000", "Anatomical Structure")
# SNOMED CT codes of the lobes (value, meaning).
LOBE_CODES: dict[Lobe, tuple[str, str]] = {
    Lobe.LUL: ("44714003", "Upper lobe of left lung"),
    Lobe.LLL: ("41224006", "Lower lobe of left lung"),
    Lobe.RUL: ("42400003", "Upper lobe of right lung"),
    Lobe.RLL: ("266005", "Lower lobe of right lung"),
    Lobe.RML: ("72481006", "Middle lobe of right lung"),
}
INSTALL_HINT = "--dicom-seg needs the optional package highdicom: pip install highdicom"


def require_highdicom() -> None:
    """Raise OutputError with an install hint when highdicom is missing."""
    try:
        import highdicom  # noqa: F401
    except ImportError as exc:
        raise OutputError(INSTALL_HINT) from exc


def _slice_origins(mask: sitk.Image) -> np.ndarray:
    """Physical position (mm) of the first voxel of each mask slice, shape (Z, 3)."""
    return np.array([mask.TransformIndexToPhysicalPoint((0, 0, k)) for k in range(mask.GetSize()[2])])


def _read_candidates(folder: Path) -> dict[str, list]:
    """CT-like DICOM datasets (with a position and pixels) of the folder, by series UID."""
    import pydicom

    series: dict[str, list] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path)
        except Exception:  # noqa: BLE001 - not DICOM (a README, a DICOMDIR without pixels...)
            continue
        if "PixelData" in ds and "ImagePositionPatient" in ds and "SeriesInstanceUID" in ds:
            series.setdefault(str(ds.SeriesInstanceUID), []).append(ds)
    return series


def source_datasets(folder: Path, mask: sitk.Image) -> list:
    """The datasets of the series the mask was made from, in mask slice order (matched by position)."""
    origins = _slice_origins(mask)
    spacing_z = mask.GetSpacing()[2]
    nx, ny, nz = mask.GetSize()
    for datasets in sorted(_read_candidates(folder).values(), key=len, reverse=True):
        if len(datasets) < nz or int(datasets[0].Rows) != ny or int(datasets[0].Columns) != nx:
            continue
        positions = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in datasets])
        distance = np.linalg.norm(origins[:, None, :] - positions[None, :, :], axis=2)
        nearest = distance.argmin(axis=1)
        if np.all(distance[np.arange(nz), nearest] < 0.25 * spacing_z) and len(set(nearest)) == nz:
            return [datasets[i] for i in nearest]
    raise InputError(f"no DICOM series in {folder} matches the mask grid ({nx} x {ny} x {nz})")


def _segment_descriptions(hd) -> list:
    from pydicom.sr.coding import Code

    algorithm = hd.AlgorithmIdentificationSequence(
        name="CTSU-Net lobes",
        family=Code("123110", "DCM", "Artificial Intelligence"),
        version=__version__,
    )
    category = Code(CATEGORY_CODE[0], "SCT", CATEGORY_CODE[1])
    return [
        hd.seg.SegmentDescription(
            segment_number=int(lobe),  # segment numbers equal the mask's label values
            segment_label=f"{lobe.name} {LOBE_NAMES[lobe]}",
            segmented_property_category=category,
            segmented_property_type=Code(LOBE_CODES[lobe][0], "SCT", LOBE_CODES[lobe][1]),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
        )
        for lobe in LOBES
    ]


def build_dicom_seg(mask: sitk.Image, datasets: list):
    """A highdicom Segmentation of the five lobes over ``datasets`` (in mask slice order)."""
    import highdicom as hd

    labels = sitk.GetArrayFromImage(mask).astype(np.uint8)  # (frames, rows, columns)
    return hd.seg.Segmentation(
        source_images=datasets,
        pixel_array=labels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=_segment_descriptions(hd),
        series_instance_uid=hd.UID(),
        series_number=int(getattr(datasets[0], "SeriesNumber", 0) or 0) + 1000,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="ctsunet-lobes",
        manufacturer_model_name="CTSU-Net lobes",
        software_versions=__version__,
        device_serial_number="none",
        series_description="Pulmonary lobes (CTSU-Net)",
    )


def write_dicom_seg(mask: sitk.Image, dicom_folder: Path, final: Path) -> None:
    """Write the DICOM-SEG of ``mask`` (made from the series in ``dicom_folder``) to ``final``, atomically."""
    from algorithm.io.writing import output_file

    require_highdicom()
    seg = build_dicom_seg(mask, source_datasets(dicom_folder, mask))
    with output_file(final, ".dcm", library_errors=(ValueError,)) as tmp:
        seg.save_as(os.fspath(tmp), enforce_file_format=True)
