"""Time the per-lobe density measures on a synthetic 512 x 512 x 400 lung (two ellipsoid lungs,
five lobes, -850 +- 60 HU, 0.7 x 0.7 x 0.8 mm): the cost that follows stage II on big scans.

    python -m benchmarks.measures_speed [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import SimpleITK as sitk

from algorithm.report.density import lobe_measures


def synthetic_case(shape_zyx=(400, 512, 512)) -> tuple[sitk.Image, sitk.Image]:
    rng = np.random.default_rng(0)
    z, y, x = np.ogrid[: shape_zyx[0], : shape_zyx[1], : shape_zyx[2]]
    labels = np.zeros(shape_zyx, np.uint8)
    ellipsoid = ((z - 200) / 180) ** 2 + ((y - 256) / 150) ** 2
    left = ellipsoid + ((x - 150) / 100) ** 2 < 1
    right = ellipsoid + ((x - 362) / 100) ** 2 < 1
    labels[left & (z < 200)], labels[left & (z >= 200)] = 1, 2
    labels[right & (z < 150)], labels[right & (z >= 250)] = 3, 4
    labels[right & (z >= 150) & (z < 250)] = 5
    hu = np.zeros(shape_zyx, np.int16)
    hu[labels > 0] = (-850 + 60 * rng.standard_normal(int((labels > 0).sum()))).astype(np.int16)
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing((0.7, 0.7, 0.8))
    mask = sitk.GetImageFromArray(labels)
    mask.CopyInformation(image)
    return image, mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    image, mask = synthetic_case()
    times = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        lobe_measures(image, mask)
        times.append(time.perf_counter() - started)
    print(f"lobe_measures on 512x512x400: best {min(times):.2f} s, median {np.median(times):.2f} s ({args.repeats} runs)")


if __name__ == "__main__":
    main()
