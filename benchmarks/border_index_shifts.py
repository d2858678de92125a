"""The border vessel index of a lobe mask's borders moved by a few millimetres, on any scan.

    python -m benchmarks.border_index_shifts CT MASK [--shifts 5,10,15]

For each interlobar border of MASK (a lobe mask on CT's grid, e.g. ``NAME_lobes.mha`` of
``python -m algorithm predict``), the index of the border as it is and moved by each shift into
either lobe (one border at a time: the voxels of one lobe within that distance of the other change
sides). Without a reference this shows, on the scan itself, whether the border sits in a
vessel-sparse valley and how deep the valley is: docs/results.md uses it on the real 1.5 mm CTA.
"""

from __future__ import annotations

import argparse
import sys

import SimpleITK as sitk

from algorithm.io.reading import read_image
from algorithm.report.border_index import BORDERS, border_vessel_index
from benchmarks.border_index_phantoms import shifted


def shift_rows(image: sitk.Image, mask: sitk.Image, shifts_mm: tuple[float, ...]) -> list[dict]:
    """Per border: {"border", "shift_mm" -> index}; negative shifts move the border into lobe_a."""
    hu = sitk.GetArrayFromImage(image)
    labels = sitk.GetArrayFromImage(mask)
    spacing = image.GetSpacing()[::-1]
    rows = []
    for border in BORDERS:
        a, b = int(border.lobe_a), int(border.lobe_b)
        variants = {0.0: labels}
        for d in shifts_mm:
            variants[-d] = shifted(labels, b, a, d, spacing)
            variants[d] = shifted(labels, a, b, d, spacing)
        values = {d: border_vessel_index(hu, v, spacing)["borders"][border.name]["index"] for d, v in sorted(variants.items())}
        rows.append({"border": border.name, "into_negative": border.lobe_a.name, "into_positive": border.lobe_b.name, **values})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ct")
    parser.add_argument("mask")
    parser.add_argument("--shifts", default="5,10,15", help="millimetres, comma-separated")
    args = parser.parse_args(argv)
    image = read_image(args.ct).image
    mask = sitk.ReadImage(args.mask)
    if mask.GetSize() != image.GetSize():
        print("error: the mask is not on the CT's grid", file=sys.stderr)
        return 1
    shifts = tuple(float(s) for s in args.shifts.split(","))
    rows = shift_rows(image, mask, shifts)
    columns = [k for k in rows[0] if isinstance(k, float)]
    print("| border (− into / + into) | " + " | ".join(f"{c:+g} mm" for c in columns) + " |")
    print("| --- |" + " --- |" * len(columns))
    for r in rows:
        cells = " | ".join("–" if r[c] is None else f"{r[c]:.2f}" for c in columns)
        print(f"| {r['border']} ({r['into_negative']} / {r['into_positive']}) | {cells} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
