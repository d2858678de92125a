"""Valid CT files written by writers independent of SimpleITK (nibabel, pynrrd, pydicom, a
hand-written MetaImage header), each with what its writer meant: the HU of every voxel and the
geometry in ITK's LPS convention. tests/test_valid_encodings.py reads them back through
``algorithm``'s reader; docs/robustness.md lists the corpus.

Volumes are 32 x 32 x 24 (4 x 4 x 2.5 mm: the smallest field of view the header checks accept),
so every file is written and read in milliseconds.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SIZE_XYZ = (32, 32, 24)
SPACING_XYZ = (4.0, 4.0, 2.5)
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


@dataclass
class Written:
    """A file (or folder) and what its writer meant, in ITK's terms."""

    path: Path
    hu_zyx: np.ndarray  # float64, as sitk.GetArrayFromImage orders it
    spacing_xyz: tuple[float, float, float]
    origin_xyz: tuple[float, float, float]  # LPS, mm
    direction: np.ndarray  # 3 x 3, columns = image axes in LPS
    data_files: tuple[Path, ...] = ()  # where the pixel data lie, when not in ``path`` itself


def stored_values(dtype: str, seed: int = 0) -> np.ndarray:
    """(x, y, z) stored values spanning the type's CT-like range."""
    rng = np.random.default_rng(seed)
    low, high = {"int16": (-1024, 3000), "uint16": (0, 4095), "int32": (-1024, 3000),
                 "float32": (-1024, 3000), "float64": (-1024, 3000), "uint8": (0, 255)}[dtype]
    values = rng.integers(low, high + 1, SIZE_XYZ)
    if dtype.startswith("float"):
        values = values + rng.choice([0.0, 0.25, 0.5], SIZE_XYZ)  # exact in float32
    return values.astype(dtype)


def rotation(angle_deg: float) -> np.ndarray:
    """A rotation about the z axis: an oblique but orthonormal direction."""
    a = np.radians(angle_deg)
    return np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])


def _xyz_to_zyx(values: np.ndarray) -> np.ndarray:
    return np.transpose(values, (2, 1, 0)).astype(np.float64)


# -- NIfTI (nibabel) -----------------------------------------------------------------------------


def ras_affine(direction_ras: np.ndarray, origin_ras) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = direction_ras @ np.diag(SPACING_XYZ)
    affine[:3, 3] = origin_ras
    return affine


def write_nifti(
    path: Path,
    dtype: str = "int16",
    slope_inter: tuple[float, float] | None = None,
    qform=None,
    sform=None,
) -> Written:
    """``qform``/``sform``: RAS affines (None: that form is absent, code 0)."""
    import nibabel as nib

    values = stored_values(dtype)
    image = nib.Nifti1Image(values, None)
    header = image.header
    header.set_data_dtype(values.dtype)
    header.set_zooms(SPACING_XYZ)
    image.set_qform(qform, code=1 if qform is not None else 0)
    image.set_sform(sform, code=2 if sform is not None else 0)
    slope, inter = slope_inter or (1.0, 0.0)
    if slope_inter is not None:
        header.set_slope_inter(slope, inter)
    nib.save(image, str(path))
    meant = qform if qform is not None else sform  # ITK's choice where both are there: see the test
    return _nifti_written(path, values.astype(np.float64) * slope + inter, meant)


def _nifti_written(path: Path, hu_xyz: np.ndarray, affine_ras: np.ndarray) -> Written:
    spacing = np.linalg.norm(affine_ras[:3, :3], axis=0)
    direction = RAS_TO_LPS @ (affine_ras[:3, :3] / spacing)
    origin = RAS_TO_LPS @ affine_ras[:3, 3]
    return Written(path, _xyz_to_zyx(hu_xyz), tuple(spacing), tuple(origin), direction)


# -- NRRD (pynrrd) -------------------------------------------------------------------------------


def write_nrrd(path: Path, encoding: str = "raw", detached: bool = False, dtype: str = "int16") -> Written:
    """LPS space, an oblique direction; ``detached``: a .nhdr header and a separate data file."""
    import nrrd

    values = stored_values(dtype, seed=1)
    direction = rotation(20.0)
    origin = (-60.5, 80.25, -300.0)
    header = {
        "space": "left-posterior-superior",
        "space directions": direction @ np.diag(SPACING_XYZ),  # rows: the axes' steps (pynrrd)
        "space origin": np.asarray(origin),
        "encoding": encoding,
    }
    header["space directions"] = header["space directions"].T
    nrrd.write(str(path), values, header, detached_header=detached, index_order="F")
    data_files = ()
    if detached:
        data_files = tuple(p for p in path.parent.iterdir() if p.name.startswith(path.stem) and p != path)
    return Written(path, _xyz_to_zyx(values), SPACING_XYZ, origin, direction, data_files)


# -- MetaImage (hand-written header) -------------------------------------------------------------

_MET_TYPES = {"int16": "MET_SHORT", "uint16": "MET_USHORT", "int32": "MET_INT", "float32": "MET_FLOAT",
              "float64": "MET_DOUBLE", "uint8": "MET_UCHAR"}


def write_metaimage(path: Path, local: bool = True, compressed: bool = False, dtype: str = "int16") -> Written:
    """``local``: data after the header in one .mha; else a .mhd and a .raw/.zraw data file."""
    values = stored_values(dtype, seed=2)
    direction = rotation(-30.0)
    origin = (10.0, -20.0, 30.5)
    data = np.ascontiguousarray(np.transpose(values, (2, 1, 0))).astype("<" + values.dtype.str[1:]).tobytes()
    if compressed:
        data = zlib.compress(data)
    data_file = path.with_suffix(".zraw" if compressed else ".raw")
    lines = [
        "ObjectType = Image", "NDims = 3", "BinaryData = True", "BinaryDataByteOrderMSB = False",
        f"CompressedData = {compressed}",
        *([f"CompressedDataSize = {len(data)}"] if compressed else []),
        "TransformMatrix = " + " ".join(f"{v:.10g}" for v in direction.T.ravel()),  # axis by axis
        "Offset = " + " ".join(f"{v:g}" for v in origin),
        "AnatomicalOrientation = RAI",
        "ElementSpacing = " + " ".join(f"{v:g}" for v in SPACING_XYZ),
        "DimSize = " + " ".join(str(v) for v in SIZE_XYZ),
        f"ElementType = {_MET_TYPES[dtype]}",
        f"ElementDataFile = {'LOCAL' if local else data_file.name}",
    ]
    header = ("\n".join(lines) + "\n").encode("ascii")
    if local:
        path.write_bytes(header + data)
    else:
        path.write_bytes(header)
        data_file.write_bytes(data)
    return Written(path, _xyz_to_zyx(values), SPACING_XYZ, origin, direction, () if local else (data_file,))


# -- DICOM (pydicom) -----------------------------------------------------------------------------

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"


def write_dicom_series(
    folder: Path,
    slope: float = 0.5,
    intercept: float = -1000.0,
    unsigned: bool = False,
    shuffled_names: bool = False,
    skip: tuple[int, ...] = (),
) -> Written:
    """One CT Image Storage file per slice; stored = (HU - intercept) / slope.

    ``shuffled_names``: file names in no relation to the slice order; ``skip``: slices not written.
    """
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    stored = stored_values("uint16" if unsigned else "int16", seed=3)
    if not unsigned:
        stored = np.clip(stored, -1000, 2000)
    direction = np.eye(3)
    origin = (-64.0, -80.0, -200.0)
    series_uid, study_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    order = np.random.default_rng(4).permutation(SIZE_XYZ[2]) if shuffled_names else np.arange(SIZE_XYZ[2])
    for k in range(SIZE_XYZ[2]):
        if k in skip:
            continue
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        name = folder / f"slice-{order[k] * 7919 % 1000:03d}-{order[k]}.dcm"
        ds = FileDataset(str(name), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CT_IMAGE_STORAGE, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.Modality, ds.PatientID, ds.SeriesNumber, ds.InstanceNumber = "CT", "corpus", 3, k + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [origin[0], origin[1], origin[2] + k * SPACING_XYZ[2]]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [SPACING_XYZ[1], SPACING_XYZ[0]]  # row spacing (y), column spacing (x)
        ds.SliceThickness = SPACING_XYZ[2]
        ds.Rows, ds.Columns = SIZE_XYZ[1], SIZE_XYZ[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = 0 if unsigned else 1
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = slope, intercept, "HU"
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()  # rows = y
        ds.save_as(str(name), enforce_file_format=True)
    hu = stored.astype(np.float64) * slope + intercept
    return Written(folder, _xyz_to_zyx(hu), SPACING_XYZ, origin, direction)


def write_enhanced_ct(folder: Path, slope: float = 0.5, intercept: float = -1000.0) -> Written:
    """One Enhanced CT Image Storage file holding every slice as a frame (per-frame positions)."""
    import pydicom
    from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    stored = np.clip(stored_values("int16", seed=5), -1000, 2000)
    origin = (-64.0, -80.0, -200.0)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ENHANCED_CT_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    name = folder / "enhanced.dcm"
    ds = FileDataset(str(name), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = ENHANCED_CT_IMAGE_STORAGE, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = generate_uid(), generate_uid(), generate_uid()
    ds.Modality, ds.PatientID, ds.SeriesNumber, ds.InstanceNumber = "CT", "corpus", 4, 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.Rows, ds.Columns, ds.NumberOfFrames = SIZE_XYZ[1], SIZE_XYZ[0], SIZE_XYZ[2]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing = [SPACING_XYZ[1], SPACING_XYZ[0]]
    measures.SliceThickness = SPACING_XYZ[2]
    measures.SpacingBetweenSlices = SPACING_XYZ[2]
    shared.PixelMeasuresSequence = Sequence([measures])
    orientation = Dataset()
    orientation.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    shared.PlaneOrientationSequence = Sequence([orientation])
    transform = Dataset()
    transform.RescaleSlope, transform.RescaleIntercept, transform.RescaleType = slope, intercept, "HU"
    shared.PixelValueTransformationSequence = Sequence([transform])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for k in range(SIZE_XYZ[2]):
        frame = Dataset()
        position = Dataset()
        position.ImagePositionPatient = [origin[0], origin[1], origin[2] + k * SPACING_XYZ[2]]
        frame.PlanePositionSequence = Sequence([position])
        frames.append(frame)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.PixelData = np.ascontiguousarray(np.transpose(stored, (2, 1, 0))).tobytes()
    ds.save_as(str(name), enforce_file_format=True)
    hu = stored.astype(np.float64) * slope + intercept
    return Written(folder, _xyz_to_zyx(hu), SPACING_XYZ, origin, np.eye(3))


# -- truncation ----------------------------------------------------------------------------------


def truncate_data(written: Written, drop_bytes: int = 4096) -> Path:
    """Cut the end of the file that holds the pixel data; returns the cut file."""
    target = written.data_files[0] if written.data_files else written.path
    if target.is_dir():
        target = sorted(target.iterdir())[len(list(target.iterdir())) // 2]
    raw = target.read_bytes()
    target.write_bytes(raw[: len(raw) - drop_bytes])
    return target


def shorten_gzip_payload(path: Path, drop_bytes: int = 4096, offset: int = 0) -> None:
    """A whole, valid gzip stream that holds fewer bytes than the header announces."""
    raw = path.read_bytes()
    payload = gzip.decompress(raw[offset:])
    path.write_bytes(raw[:offset] + gzip.compress(payload[: len(payload) - drop_bytes]))
