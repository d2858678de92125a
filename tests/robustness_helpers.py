"""Helpers of the robustness tests: DICOM series writing, hand-written headers, a fast stand-in
for the network (so that input/output behaviour is tested in seconds), and output inspection."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from algorithm.inference import NetworkPrediction, TilePlan

LUNG_LEVEL = (-400.0 + 1024.0) / (600.0 + 1024.0)  # -400 HU after the [-1024, 600] window


def write_dicom_series(
    image: sitk.Image,
    folder: Path,
    series_uid: str = "1.2.826.0.1.3680043.2.1125.1",
    series_number: int = 2,
    description: str = "CHEST",
    positions: list[tuple[float, float, float]] | None = None,
    keep: list[int] | None = None,
    prefix: str = "IMG",
) -> Path:
    """One file per slice with the tags a CT series has (HU stored with intercept 0).

    ``positions`` overrides each slice's ImagePositionPatient (gantry tilt); ``keep`` writes only
    these slice indices (missing slices).
    """
    folder.mkdir(parents=True, exist_ok=True)
    image = sitk.Cast(image, sitk.sitkInt16)
    direction = image.GetDirection()
    orientation = "\\".join(f"{v:.6f}" for v in (direction[0], direction[3], direction[6], direction[1], direction[4], direction[7]))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    indices = keep if keep is not None else range(image.GetDepth())
    for k in indices:
        plane = image[:, :, k]
        position = positions[k] if positions is not None else image.TransformIndexToPhysicalPoint((0, 0, k))
        tags = {
            "0008|0060": "CT", "0008|0016": "1.2.840.10008.5.1.4.1.1.2",
            "0008|0018": f"{series_uid}.{k + 1}", "0020|000d": "1.2.826.0.1.3680043.2.1125.9",
            "0020|000e": series_uid, "0020|0011": str(series_number), "0008|103e": description,
            "0020|0013": str(k + 1), "0020|0032": "\\".join(f"{v:.6f}" for v in position),
            "0020|0037": orientation, "0028|1052": "0", "0028|1053": "1", "0028|1054": "HU",
            "0018|0050": f"{image.GetSpacing()[2]:.4f}", "0010|0010": "PHANTOM^ONE",
        }
        for key, value in tags.items():
            plane.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"{prefix}{k + 1:04d}.dcm"))
        writer.Execute(plane)
    return folder


def write_mha_header(path: Path, fields: dict[str, str], data: bytes = b"") -> Path:
    """A hand-written MetaImage: header lines in the given order, then ``data``."""
    header = {"ObjectType": "Image", "NDims": "3", "BinaryData": "True", "BinaryDataByteOrderMSB": "False"}
    header.update(fields)
    header["ElementDataFile"] = "LOCAL"  # must come last
    text = "".join(f"{key} = {value}\n" for key, value in header.items())
    path.write_bytes(text.encode("ascii") + data)
    return path


def fake_predict_network_grid(model, scan_zyx, device, tiling, on_tile=None) -> NetworkPrediction:
    """A stand-in for both network stages: lungs = air not connected to the slice corners, lobes
    by position on the LPS grid (left/right by x, upper/lower by z). Deterministic and
    orientation-aware, so it tests everything around the network in a fraction of a second."""
    low = scan_zyx < LUNG_LEVEL
    lungs = np.zeros_like(low)
    for k in range(low.shape[0]):
        parts, _ = ndimage.label(low[k])
        corners = {parts[0, 0], parts[0, -1], parts[-1, 0], parts[-1, -1]} - {0}
        lungs[k] = low[k] & ~np.isin(parts, list(corners))
    nz, _, nx = scan_zyx.shape
    z, _, x = np.meshgrid(np.arange(nz), 0, np.arange(nx), indexing="ij")
    left = x >= nx / 2  # LPS: +x is patient left
    upper = z >= nz / 2  # +z is superior
    lobes = np.where(left, np.where(upper, 1, 2), np.where(upper, 3, np.where(z >= nz / 4, 5, 4)))
    labels = np.where(lungs, lobes, 0).astype(np.uint8)
    box = tuple(slice(0, n) for n in scan_zyx.shape)
    if on_tile is not None:
        on_tile(1, 1)  # one "tile", as the real network reports its progress
    return NetworkPrediction(
        labels=labels, confidence=np.ones(scan_zyx.shape, np.float16), stage1_labels=labels[::2, ::2, ::2],
        lung_box=box, timings_s={"stage1": 0.0, "stage2": 0.0},
        plan=TilePlan((nz, scan_zyx.shape[1], nx), [(0, 0, 0)]),
    )


def listing(folder: Path) -> list[str]:
    """Every file name under ``folder`` (relative), hidden ones included."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def wait_for(predicate, timeout_s: float, poll_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll_s)
    return predicate()


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """``python -m algorithm`` in-process: (exit code, stdout, stderr)."""
    from algorithm.cli import main

    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err
