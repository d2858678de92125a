"""Tiny synthetic labelled chest volumes for tests and smoke runs (not the phantom generator).

Two ellipsoid lungs in an elliptic body; the left lung is cut into upper/lower by an oblique plane,
the right one into upper/middle/lower by two planes; the fissures are drawn slightly brighter.
Array axes follow LPS: +x is patient left, +z superior (so the label map is anatomically right).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from algorithm.labels import Lobe


def toy_case(seed: int, size_zyx: tuple[int, int, int] = (40, 48, 48), spacing_mm_xyz=(7.0, 7.0, 8.0)) -> tuple[sitk.Image, sitk.Image]:
    """(int16 HU image, uint8 label image) with slightly seed-dependent shapes."""
    rng = np.random.default_rng(seed)
    nz, ny, nx = size_zyx
    z, y, x = np.mgrid[0:nz, 0:ny, 0:nx].astype(np.float32)
    zn, yn, xn = z / nz, y / ny, x / nx
    hu = np.full(size_zyx, -1000.0, np.float32)
    hu[((yn - 0.5) / 0.45) ** 2 + ((xn - 0.5) / 0.47) ** 2 < 1] = 40.0
    labels = np.zeros(size_zyx, np.uint8)
    tilt = rng.uniform(0.5, 0.9)
    for side, cx in (("right", 0.29), ("left", 0.71)):  # low x = patient right in LPS
        cx += rng.uniform(-0.02, 0.02)
        lung = ((yn - 0.5) / 0.32) ** 2 + ((xn - cx) / 0.17) ** 2 + ((zn - 0.5) / 0.42) ** 2 < 1
        oblique = zn - 0.5 - tilt * (yn - 0.5) + rng.uniform(-0.05, 0.05)  # > 0: upper
        if side == "left":
            labels[lung & (oblique > 0)] = Lobe.LUL
            labels[lung & (oblique <= 0)] = Lobe.LLL
        else:
            horizontal = zn - 0.55 + rng.uniform(-0.04, 0.04)
            labels[lung & (oblique <= 0)] = Lobe.RLL
            labels[lung & (oblique > 0) & (horizontal > 0)] = Lobe.RUL
            labels[lung & (oblique > 0) & (horizontal <= 0)] = Lobe.RML
        fissure = lung & (np.abs(oblique) < 0.012)
        hu[lung] = -850.0
        hu[fissure] = -700.0
    hu += rng.normal(0.0, 15.0, size_zyx).astype(np.float32)
    image = sitk.GetImageFromArray(hu.astype(np.int16))
    label = sitk.GetImageFromArray(labels)
    for img in (image, label):
        img.SetSpacing(spacing_mm_xyz)
    return image, label


def write_toy_dataset(root: str | Path, seeds: range | list[int], size_zyx=(40, 48, 48)) -> Path:
    """root/images/toy-SEED.mha and root/labels/toy-SEED.mha."""
    root = Path(root)
    for sub in ("images", "labels"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        image, label = toy_case(seed, size_zyx)
        sitk.WriteImage(image, str(root / "images" / f"toy-{seed:04d}.mha"))
        sitk.WriteImage(label, str(root / "labels" / f"toy-{seed:04d}.mha"))
    return root
