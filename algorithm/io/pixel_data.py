"""Is all the pixel data a CT file's header announces really in the file?

ITK's readers do not all say so: its NIfTI reader fills what a truncated ``.nii`` or ``.nii.gz``
lacks with zeros, silently, and zeros are water in HU, so such a scan passes every later check.
The announced size is computed from the file's own header, with the type **as stored on disk**
(NIfTI datatype/bitpix, NRRD type, MetaImage ElementType): ITK reports the type after rescaling
(an int16 NIfTI with ``scl_slope``/``scl_inter`` reads as float32), which counts twice the bytes
and refused valid files. Compressed data is streamed in chunks and counted, never held.

Formats whose layout is not parsed here (ASCII NRRD, multi-file lists) are left to ITK's reader.
DICOM series are checked by GDCM when it reads each file (tests/test_valid_encodings.py).
"""

from __future__ import annotations

import bz2
import gzip
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from algorithm.errors import InputError

CHUNK_BYTES = 1 << 22
MAX_TEXT_HEADER_BYTES = 1 << 16

NRRD_TYPE_BYTES = {
    **dict.fromkeys(("signed char", "int8", "int8_t", "uchar", "unsigned char", "uint8", "uint8_t"), 1),
    **dict.fromkeys(("short", "short int", "signed short", "signed short int", "int16", "int16_t",
                     "ushort", "unsigned short", "unsigned short int", "uint16", "uint16_t"), 2),
    **dict.fromkeys(("int", "signed int", "int32", "int32_t", "uint", "unsigned int", "uint32", "uint32_t",
                     "float"), 4),
    **dict.fromkeys(("longlong", "long long", "long long int", "signed long long", "signed long long int",
                     "int64", "int64_t", "ulonglong", "unsigned long long", "unsigned long long int",
                     "uint64", "uint64_t", "double"), 8),
}
METAIMAGE_TYPE_BYTES = {
    "MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
    "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4, "MET_DOUBLE": 8,
}


@dataclass(frozen=True)
class PixelDataLayout:
    """Where the pixel data of a file lies and how much of it the header announces."""

    data_file: Path
    start: int  # byte offset in data_file where the (possibly compressed) stream begins
    compression: str | None  # None, "gzip", "zlib" (zlib or gzip header) or "bzip2"
    skip: int  # bytes of the (decompressed) stream before the pixel data; -1: the data ends the file
    data_bytes: int  # voxels x components x on-disk bytes of one component


def check_pixel_data(path: Path) -> None:
    """Raise InputError when ``path`` holds less pixel data than its header announces."""
    layout = pixel_data_layout(path)
    if layout is None:
        return
    if not layout.data_file.is_file():
        raise InputError(f"cannot read {path}: its data file {layout.data_file} is missing")
    available = _stream_bytes(layout, path) - max(layout.skip, 0)
    if available < layout.data_bytes:
        raise InputError(
            f"cannot read {path}: the file holds {max(available, 0)} bytes of pixel data, "
            f"its header announces {layout.data_bytes} (truncated?)"
        )


def pixel_data_layout(path: Path) -> PixelDataLayout | None:
    """The layout from the file's own header; None for formats or encodings not parsed here."""
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return _nifti_layout(path, compressed=name.endswith(".gz"))
    if name.endswith((".nrrd", ".nhdr")):
        return _nrrd_layout(path)
    if name.endswith((".mha", ".mhd")):
        return _metaimage_layout(path)
    return None


def _stream_bytes(layout: PixelDataLayout, path: Path) -> int:
    """Length of the data file's stream after ``start``, decompressed where it is compressed."""
    with open(layout.data_file, "rb") as handle:
        handle.seek(layout.start)
        if layout.compression is None:
            return layout.data_file.stat().st_size - layout.start
        try:
            return _decompressed_length(handle, layout.compression)
        except (EOFError, OSError, zlib.error) as exc:
            raise InputError(f"cannot read {path}: truncated or corrupt {layout.compression} data ({exc})") from exc


def _decompressed_length(handle: BinaryIO, compression: str) -> int:
    total = 0
    if compression == "zlib":
        inflater = zlib.decompressobj(47)  # zlib or gzip header, as MetaIO accepts
        while chunk := handle.read(CHUNK_BYTES):
            total += len(inflater.decompress(chunk))
            if inflater.eof:
                return total
        raise EOFError("the compressed stream ends before its end marker")
    stream = gzip.GzipFile(fileobj=handle) if compression == "gzip" else bz2.BZ2File(handle)
    while chunk := stream.read(CHUNK_BYTES):
        total += len(chunk)
    return total


# -- NIfTI-1 and NIfTI-2 -------------------------------------------------------------------------


def _nifti_layout(path: Path, compressed: bool) -> PixelDataLayout | None:
    opener = gzip.open if compressed else open
    try:
        with opener(path, "rb") as handle:
            head = handle.read(540)
    except (EOFError, OSError, zlib.error) as exc:
        raise InputError(f"cannot read {path}: truncated or corrupt gzip data ({exc})") from exc
    fields = _nifti_fields(head)
    if fields is None:
        return None
    dims, bitpix, vox_offset = fields
    voxels = 1
    for n in dims:
        voxels *= max(int(n), 1)
    return PixelDataLayout(path, 0, "gzip" if compressed else None, vox_offset, voxels * bitpix // 8)


def _nifti_fields(head: bytes) -> tuple[list[int], int, int] | None:
    """(dim[1..dim[0]], bitpix, vox_offset) of a NIfTI-1 or NIfTI-2 header, either byte order."""
    for order in "<>":
        if len(head) >= 348 and struct.unpack(order + "i", head[:4])[0] == 348:
            dim = struct.unpack(order + "8h", head[40:56])
            bitpix = struct.unpack(order + "h", head[72:74])[0]
            vox_offset = int(struct.unpack(order + "f", head[108:112])[0])
            return _checked(dim, bitpix, max(vox_offset, 352))
        if len(head) >= 540 and struct.unpack(order + "i", head[:4])[0] == 540:
            dim = struct.unpack(order + "8q", head[16:80])
            bitpix = struct.unpack(order + "h", head[14:16])[0]
            vox_offset = struct.unpack(order + "q", head[168:176])[0]
            return _checked(dim, bitpix, max(vox_offset, 544))
    return None


def _checked(dim, bitpix: int, vox_offset: int) -> tuple[list[int], int, int] | None:
    """None for headers ITK will refuse on its own (it says why better than a byte count)."""
    if not 1 <= dim[0] <= 7 or bitpix <= 0 or bitpix % 8:
        return None
    return list(dim[1 : dim[0] + 1]), bitpix, vox_offset


# -- NRRD ----------------------------------------------------------------------------------------


def _nrrd_layout(path: Path) -> PixelDataLayout | None:
    fields, header_end = _nrrd_fields(path)
    if not fields:
        return None
    size = NRRD_TYPE_BYTES.get(fields.get("type", "").lower())
    encoding = {"raw": None, "gzip": "gzip", "gz": "gzip", "bzip2": "bzip2", "bz2": "bzip2"}.get(
        fields.get("encoding", "").lower(), "unparsed"
    )
    try:
        sizes = [int(v) for v in fields.get("sizes", "").split()]
        byte_skip = int(fields.get("byte skip", fields.get("byteskip", "0")))
        line_skip = int(fields.get("line skip", fields.get("lineskip", "0")))
    except ValueError:
        return None
    if size is None or encoding == "unparsed" or not sizes:
        return None
    data_file, start = path, header_end
    detached = fields.get("data file", fields.get("datafile"))
    if detached is not None:
        if detached.startswith("LIST") or len(detached.split()) > 1:
            return None  # one volume in several files: ITK's reader checks each
        data_file, start = path.parent / detached, 0
    if line_skip:
        start = _after_lines(data_file, start, line_skip)
    voxels = 1
    for n in sizes:
        voxels *= n
    return PixelDataLayout(data_file, start, encoding, byte_skip, voxels * size)


def _nrrd_fields(path: Path) -> tuple[dict[str, str], int]:
    """``key: value`` fields of a NRRD header (keys in lower case) and the byte offset right after
    its blank line (a detached header may end without one)."""
    fields: dict[str, str] = {}
    end = 0
    for line, end in _header_lines(path):
        if not line.strip():
            break
        key, sep, value = line.partition(":")
        if sep and not line.startswith("#") and ":=" not in line:
            fields.setdefault(key.strip().lower(), value.strip())
    return fields, end


def _after_lines(data_file: Path, start: int, lines: int) -> int:
    with open(data_file, "rb") as handle:
        handle.seek(start)
        for _ in range(lines):
            handle.readline()
        return handle.tell()


# -- MetaImage -----------------------------------------------------------------------------------


def _metaimage_layout(path: Path) -> PixelDataLayout | None:
    fields, header_end = metaimage_fields(path)
    if header_end is None:
        return None
    size = METAIMAGE_TYPE_BYTES.get(fields.get("ElementType", "").upper())
    try:
        dims = [int(v) for v in fields.get("DimSize", "").split()]
        channels = int(fields.get("ElementNumberOfChannels", "1"))
        header_size = int(fields.get("HeaderSize", "0"))
    except ValueError:
        return None
    if size is None or not dims:
        return None
    compressed = fields.get("CompressedData", "False").lower() in {"true", "1"}
    source = fields["ElementDataFile"]
    if source.upper() == "LOCAL":
        data_file, start = path, header_end
    elif source.upper().startswith("LIST") or "%" in source or len(source.split()) > 1:
        return None  # one slice a file: MetaIO checks each
    else:
        data_file, start = path.parent / source, 0
    voxels = 1
    for n in dims:
        voxels *= n
    return PixelDataLayout(
        data_file, start, "zlib" if compressed else None, -1 if header_size == -1 else header_size,
        voxels * channels * size,
    )


def metaimage_fields(path: Path) -> tuple[dict[str, str], int | None]:
    """``Key = Value`` fields of a MetaImage header up to ``ElementDataFile`` (MetaIO's keys, as
    written; a repeated key keeps its last value) and the byte offset right after that line;
    None where the header never names its data file."""
    fields: dict[str, str] = {}
    for line, end in _header_lines(path):
        key, sep, value = line.partition("=")
        if not sep:
            continue
        fields[key.strip()] = value.strip()
        if key.strip() == "ElementDataFile":
            return fields, end
    return fields, None


# -- text headers --------------------------------------------------------------------------------


def _header_lines(path: Path):
    """(line, byte offset right after it) over the first MAX_TEXT_HEADER_BYTES of ``path``."""
    with open(path, "rb") as handle:
        head = handle.read(MAX_TEXT_HEADER_BYTES)
    offset = 0
    for raw in head.split(b"\n"):
        offset = min(offset + len(raw) + 1, len(head))
        yield raw.rstrip(b"\r").decode("latin-1"), offset
