"""CT noise and reconstruction-kernel sharpness.

Filtered back-projection noise is spatially correlated in plane, with a noise power spectrum that
rises with frequency (the ramp filter) and falls where the kernel cuts off: soft kernels give
blotchy noise, sharp kernels fine grain. A few periodic 2D noise slices are made by filtering white
noise in the Fourier domain; each output slice takes one of them, rolled and flipped at random.
That keeps noise generation cheap at 512 x 512 x 300 while no two neighbouring slices repeat.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

BANK_SLICES = 6


def noise_power_filter(ny: int, nx: int, spacing_mm: tuple[float, float], cutoff_cyc_per_mm: float) -> np.ndarray:
    """Amplitude filter (sqrt of the NPS shape) on the rfft2 grid."""
    fy = np.fft.fftfreq(ny, d=spacing_mm[1])[:, None]
    fx = np.fft.rfftfreq(nx, d=spacing_mm[0])[None, :]
    f = np.sqrt(fx**2 + fy**2)
    nps = (f + 0.08 * cutoff_cyc_per_mm) * np.exp(-((f / cutoff_cyc_per_mm) ** 2))
    return np.sqrt(nps)


def noise_bank(
    rng: np.random.Generator, ny: int, nx: int, spacing_mm: tuple[float, float], cutoff_cyc_per_mm: float
) -> np.ndarray:
    """``BANK_SLICES`` periodic noise slices of unit standard deviation (float32)."""
    filt = noise_power_filter(ny, nx, spacing_mm, cutoff_cyc_per_mm)
    white = rng.standard_normal((BANK_SLICES, ny, nx), dtype=np.float32)
    bank = np.fft.irfft2(np.fft.rfft2(white) * filt, s=(ny, nx)).astype(np.float32)
    bank /= bank.std(axis=(1, 2), keepdims=True) + 1e-6
    return bank


def noise_slice(rng: np.random.Generator, bank: np.ndarray) -> np.ndarray:
    """One slice of noise: a bank slice rolled and flipped at random (periodic, so seamless)."""
    k = int(rng.integers(len(bank)))
    dy, dx = (int(v) for v in rng.integers(0, bank.shape[1:]))
    out = np.roll(bank[k], (dy, dx), axis=(0, 1))
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return out


def apply_kernel(hu: np.ndarray, spacing_zyx_mm: tuple[float, float, float], sharpening: float) -> np.ndarray:
    """Blur by the system resolution (about 0.6 mm) and, for sharp kernels, enhance edges."""
    sigma_vox = [max(0.0, 0.6 / s) for s in spacing_zyx_mm]
    # Edge enhancement acts at the millimetre scale: voxels of 2 mm and more do not show it.
    voxel_mm = float(np.cbrt(np.prod(spacing_zyx_mm)))
    sharpening *= float(np.clip((2.0 - voxel_mm) / 1.3, 0.0, 1.0))
    if max(sigma_vox) < 0.25 and sharpening <= 0:
        return hu
    blurred = ndimage.gaussian_filter(hu, sigma=[max(s, 0.35) for s in sigma_vox], truncate=2.5)
    if sharpening <= 0:
        return blurred.astype(np.float32)
    # Unsharp mask of the sharp (lung) kernels: overshoot at edges.
    wide = ndimage.gaussian_filter(blurred, sigma=[max(1.0, 1.2 / s) for s in spacing_zyx_mm], truncate=2.5)
    return (blurred + sharpening * (blurred - wide)).astype(np.float32)
