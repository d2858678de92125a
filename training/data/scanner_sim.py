"""What scanners do to an image, simulated on the network grid for training (issue 33).

Phantoms are rendered at about 2 mm with one noise model and one set of grey values per tissue;
real scans come with 1-5 mm slices, smooth or sharp kernels and tissue densities that differ by
scanner, dose and disease. Each function here takes a float32 (Z, Y, X) image in the network's
[0, 1] intensity scale (1 = 1600 HU, ``algorithm.constants``) and a seeded generator, and returns
an image of the same shape. Labels are never touched: none of these moves anatomy.

* ``thick_slices``: a slab of ``thickness_mm`` averaged along z, sampled every ``thickness_mm``,
  then linearly interpolated back, as a thick-slice scan is once resampled onto a finer grid.
* ``kernel``: a Gaussian blur (smooth kernel) or an unsharp mask (sharp kernel) in plane.
* ``intensity_curve``: a random monotone curve through the intensity range (SynthSeg-like:
  tissues keep their order, not their exact values), so the network learns shape and contrast
  order rather than the generator's grey values.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from algorithm.constants import HU_MAX, HU_MIN

HU_PER_UNIT = HU_MAX - HU_MIN  # the network scale: [0, 1] spans the clamp window
# Where the curve may bend: the tissues whose values differ by scanner, dose and disease (normal
# and emphysematous lung, ground glass, fat, soft tissue). The window's ends stay fixed.
CURVE_KNOTS_HU = (HU_MIN, -950.0, -870.0, -700.0, -450.0, -100.0, 40.0, HU_MAX)


def thick_slices(image: torch.Tensor, spacing_z_mm: float, thickness_mm: float) -> torch.Tensor:
    """Average a slab of ``thickness_mm`` along z and keep one sample per slab spacing.

    A thickness at or below the grid's own spacing returns the image unchanged.
    """
    factor = thickness_mm / spacing_z_mm
    if factor <= 1.0:
        return image
    depth = image.shape[0]
    width = max(1, int(round(factor)))
    volume = image[None, None]
    # slab averaging: a box of `width` slices, edge slices repeated (no dark rim at the scan's ends)
    padded = F.pad(volume, (0, 0, 0, 0, width // 2, width - 1 - width // 2), mode="replicate")
    slab = F.avg_pool3d(padded, kernel_size=(width, 1, 1), stride=1)
    kept = max(2, int(round(depth / factor)))
    coarse = F.interpolate(slab, size=(kept, *image.shape[1:]), mode="trilinear", align_corners=True)
    return F.interpolate(coarse, size=tuple(image.shape), mode="trilinear", align_corners=True)[0, 0]


def _gaussian_inplane(image: torch.Tensor, sigma_vox: float) -> torch.Tensor:
    # edges repeated (mode "nearest"): no dark rim where the field of view ends
    blurred = ndimage.gaussian_filter(image.numpy(), sigma=(0.0, sigma_vox, sigma_vox), mode="nearest", truncate=3.0)
    return torch.from_numpy(blurred)


def kernel(image: torch.Tensor, sigma_vox: float, sharpen_amount: float) -> torch.Tensor:
    """In-plane reconstruction kernel: ``sharpen_amount`` 0 blurs with ``sigma_vox``; above 0 it
    adds that multiple of the detail the blur removes (an unsharp mask, a sharp kernel's edge
    overshoot). ``sigma_vox`` 0 returns the image."""
    if sigma_vox <= 0.0:
        return image
    blurred = _gaussian_inplane(image, sigma_vox)
    if sharpen_amount <= 0.0:
        return blurred
    return image + sharpen_amount * (image - blurred)


def intensity_curve(image: torch.Tensor, rng: np.random.Generator, max_shift_hu: float) -> torch.Tensor:
    """A random monotone piecewise-linear map of [0, 1] onto itself whose knots
    (``CURVE_KNOTS_HU``) move by at most ``max_shift_hu``; the window's ends stay fixed."""
    if max_shift_hu <= 0.0:
        return image
    x_knots = (np.asarray(CURVE_KNOTS_HU) - HU_MIN) / HU_PER_UNIT
    shift = max_shift_hu / HU_PER_UNIT
    y_knots = x_knots + rng.uniform(-shift, shift, size=len(x_knots))
    y_knots[0], y_knots[-1] = 0.0, 1.0
    y_knots = np.maximum.accumulate(np.clip(y_knots, 0.0, 1.0))  # monotone: tissues keep their order
    flat = image.reshape(-1).numpy()
    return torch.from_numpy(np.interp(flat, x_knots, y_knots).astype(np.float32)).reshape(image.shape)
