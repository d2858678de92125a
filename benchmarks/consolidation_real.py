"""Subpleural lesions simulated on the real scans: is the dense lung kept in its own lobe (issue 31)?

    python -m benchmarks.consolidation_real [SCAN ...] [--variants default,junction,ggo,dense,small,no-air] \
        [--out results/consolidation/real.json] [--images docs/img/consolidation]

Each scan of ../shared/data/real is segmented as it is (the *lesion-free* result). Then, in the
way the issue's probe did it, the lung within ``radius_mm`` of one pleural point of a lobe (its
most posterior or most anterior pleura at the lobe's median height) is set to a lesion's density
plus noise, the lung's own airway air optionally kept (an air bronchogram), and the scan is
segmented again. Against the lesion-free result, per lesion and for the scan:

- ``kept``: the share of the lesion's lung voxels inside any lobe (target: at least 0.95);
- ``own_lobe``: the share inside the lobe the lesion-free result gives them (target: 0.90);
- ``iou_away``: per-lobe IoU of the two results farther than ``AWAY_MM`` from every lesion (0.97);
- the report's dense volume and flags for the lesion's lobe.

The real scans have no lobe reference: the lesion-free result is the reference here, so the
numbers say what the lesion costs, not whether the lobes are right.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from algorithm.io.reading import read_image
from algorithm.labels import LOBES, Lobe
from algorithm.segmenter import LobeSegmenter

REPO_ROOT = Path(__file__).resolve().parents[1]
AWAY_MM = 10.0  # the lobes farther than this from every lesion are compared with the lesion-free result
AIR_BRONCHOGRAM_HU = -950.0  # below this (after an in-plane median) the lung's own air is kept (airways)
PLEURA_GROW_MM = 2.0  # the lesion takes in the pleura's partial-volume voxels next to the lung


@dataclass(frozen=True)
class LesionSpec:
    """One lesion: in ``lobe``, at its most ``pleura`` pleural point: "posterior", "anterior" (on
    the costal surface: the lateral half of the lobe) or "junction" (the most anterior of all, where
    the lungs meet behind the sternum)."""

    lobe: Lobe
    pleura: str = "posterior"
    radius_mm: float = 30.0
    hu: float = 25.0
    noise_hu: float = 15.0
    air_bronchogram: bool = True


# the probe: consolidation at 25 +- 15 HU within 30 mm of three pleural points
DEFAULT_LESIONS = (
    LesionSpec(Lobe.RLL, "posterior"),
    LesionSpec(Lobe.LUL, "anterior"),
    LesionSpec(Lobe.LLL, "posterior"),
)
VARIANTS = {
    "default": {},
    "ggo": {"hu": -600.0, "noise_hu": 40.0},  # ground glass
    "dense": {"hu": 40.0, "noise_hu": 10.0},
    "small": {"radius_mm": 15.0},
    "no-air": {"air_bronchogram": False},
    "junction": {"pleura": "junction"},  # the anterior lesion moved to the anterior junction line
}
ANTERIOR_ONLY = {"pleura"}  # keys that change the anterior lesion alone


def pleural_point(lobes: np.ndarray, spec: LesionSpec, spacing_mm_zyx) -> tuple[int, int, int] | None:
    """The lobe's most posterior (largest LPS y) or most anterior pleural voxel within 5 mm of its
    median height; None when the lobe is absent. Pleural: a face neighbour lies outside the lung."""
    lobe = lobes == int(spec.lobe)
    if not lobe.any():
        return None
    outside = ~(lobes > 0)
    touches = ndimage.binary_dilation(outside) & lobe
    z, y, x = np.nonzero(touches)
    z_mid = np.median(np.nonzero(lobe)[0])
    near = np.abs(z - z_mid) * spacing_mm_zyx[0] <= 5.0
    if not near.any():
        near = np.ones_like(z, bool)
    z, y, x = z[near], y[near], x[near]
    if spec.pleura == "anterior":  # the costal surface: the lateral half of the lobe (LPS: left is +x)
        centre_x = np.median(x)
        lateral = x >= centre_x if spec.lobe in (Lobe.LUL, Lobe.LLL) else x <= centre_x
        z, y, x = z[lateral], y[lateral], x[lateral]
    pick = int(np.argmax(y) if spec.pleura == "posterior" else np.argmin(y))
    return int(z[pick]), int(y[pick]), int(x[pick])


def lesion_mask(lobes: np.ndarray, centre: tuple[int, int, int], radius_mm: float, spacing_mm_zyx) -> np.ndarray:
    """The lung (grown by ``PLEURA_GROW_MM``) within ``radius_mm`` of ``centre``."""
    spacing = np.asarray(spacing_mm_zyx, float)
    reach = np.ceil((radius_mm + PLEURA_GROW_MM) / spacing).astype(int)
    box = tuple(slice(max(0, c - r), min(n, c + r + 1)) for c, r, n in zip(centre, reach, lobes.shape))
    grids = np.ogrid[tuple(box)]
    dist2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, centre, spacing))
    lung = lobes[box] > 0
    grown = ndimage.distance_transform_edt(~lung, sampling=spacing) <= PLEURA_GROW_MM
    mask = np.zeros(lobes.shape, bool)
    mask[box] = grown & (dist2 <= radius_mm**2)
    return mask


def _airway_air(hu: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Voxels of ``region``'s box whose in-plane 3 x 3 median lies below ``AIR_BRONCHOGRAM_HU``."""
    out = np.zeros(hu.shape, bool)
    box = tuple(slice(int(a.min()), int(a.max()) + 1) for a in np.nonzero(region)) if region.any() else None
    if box is not None:
        out[box] = ndimage.median_filter(hu[box], size=(1, 3, 3)) < AIR_BRONCHOGRAM_HU
    return out


def simulate_lesions(image: sitk.Image, lobes: np.ndarray, specs, seed: int = 0) -> tuple[sitk.Image, np.ndarray]:
    """``image`` (LPS, the grid of ``lobes``) with each lesion of ``specs`` drawn in; the lesion
    labels (uint8, k for the k-th lesion, 0 elsewhere; a lobe absent from ``lobes`` gets none)."""
    spacing = tuple(float(s) for s in reversed(image.GetSpacing()))
    hu = sitk.GetArrayFromImage(image).astype(np.float32)
    rng = np.random.default_rng(seed)
    labels = np.zeros(lobes.shape, np.uint8)
    for k, spec in enumerate(specs, start=1):
        centre = pleural_point(lobes, spec, spacing)
        if centre is None:
            continue
        region = lesion_mask(lobes, centre, spec.radius_mm, spacing) & (labels == 0)
        if spec.air_bronchogram:  # airways: air after an in-plane median (noise speckle below -950 is not)
            region &= ~(_airway_air(hu, region))
        hu[region] = spec.hu + rng.normal(0.0, spec.noise_hu, int(np.count_nonzero(region)))
        labels[region] = k
    dtype = sitk.GetArrayViewFromImage(image).dtype
    if np.issubdtype(dtype, np.integer):
        hu = np.rint(hu)
    out = sitk.GetImageFromArray(hu.astype(dtype))
    out.CopyInformation(image)
    return out, labels


def lesion_scores(mask: np.ndarray, clean: np.ndarray, lesions: np.ndarray, spacing_mm_zyx) -> dict:
    """Kept and own-lobe shares per lesion (its lesion-free lung voxels) and the IoU away from them."""
    per_lesion = []
    for k in range(1, int(lesions.max()) + 1):
        lung = (lesions == k) & (clean > 0)
        n = int(np.count_nonzero(lung))
        if n == 0:
            continue
        per_lesion.append({
            "lesion": k,
            "lobe": Lobe(int(np.bincount(clean[lung]).argmax())).name,
            "lung_ml": round(n * float(np.prod(spacing_mm_zyx)) / 1000.0, 1),
            "kept": round(float(np.count_nonzero(mask[lung] > 0)) / n, 4),
            "own_lobe": round(float(np.count_nonzero(mask[lung] == clean[lung])) / n, 4),
        })
    away = ndimage.distance_transform_edt(lesions == 0, sampling=spacing_mm_zyx) > AWAY_MM
    iou = {}
    for lobe in LOBES:
        a, b = (mask == lobe) & away, (clean == lobe) & away
        union = np.count_nonzero(a | b)
        iou[Lobe(lobe).name] = round(np.count_nonzero(a & b) / union, 4) if union else None
    lung = (lesions > 0) & (clean > 0)
    n = max(1, int(np.count_nonzero(lung)))
    return {
        "lesions": per_lesion,
        "kept": round(float(np.count_nonzero(mask[lung] > 0)) / n, 4),
        "own_lobe": round(float(np.count_nonzero(mask[lung] == clean[lung])) / n, 4),
        "iou_away": iou,
        "iou_away_min": min((v for v in iou.values() if v is not None), default=None),
    }


def variant_spec(spec: LesionSpec, variant: str) -> LesionSpec:
    """``spec`` as the variant draws it (a pleura change moves the anterior lesion only)."""
    changes = dict(VARIANTS[variant])
    if spec.pleura != "anterior":
        changes = {k: v for k, v in changes.items() if k not in ANTERIOR_ONLY}
    return replace(spec, **changes)


LOBE_COLOURS = {1: (0.2, 0.8, 0.2), 2: (0.9, 0.8, 0.1), 3: (0.2, 0.5, 1.0), 4: (0.9, 0.3, 0.9), 5: (0.1, 0.9, 0.9)}


def lesion_figure(hu: np.ndarray, mask: np.ndarray, lesions: np.ndarray, size_px: int = 360) -> np.ndarray:
    """An RGB picture, one axial panel per lesion through its middle: the scan (lung window), each
    lobe's outline in its colour, the lesion's outline in red (what was simulated)."""
    from skimage.transform import resize

    panels = []
    for k in range(1, int(lesions.max()) + 1):
        if not (lesions == k).any():
            continue
        z = int(np.median(np.nonzero(lesions == k)[0]))
        grey = np.clip((hu[z].astype(np.float32) + 1000.0) / 1400.0, 0.0, 1.0)
        rgb = np.stack([grey] * 3, axis=-1)
        for lobe, colour in LOBE_COLOURS.items():
            inside = mask[z] == lobe
            rgb[inside & ~ndimage.binary_erosion(inside)] = colour
        region = lesions[z] == k
        rgb[region & ~ndimage.binary_erosion(region, iterations=2)] = (1.0, 0.1, 0.1)
        panels.append(resize(rgb, (size_px, int(size_px * rgb.shape[1] / rgb.shape[0])), order=0))
    return (np.concatenate(panels, axis=1) * 255).astype(np.uint8)


def run_scan(segmenter: LobeSegmenter, path: Path, variants: list[str], images: Path | None = None) -> list[dict]:
    """The lesion-free result, then each variant's lesions scored against it (on the LPS grid)."""
    from algorithm.preprocessing import to_canonical

    image = to_canonical(read_image(path).image)
    started = time.perf_counter()
    clean_result = segmenter(image)
    clean_s = time.perf_counter() - started
    clean = sitk.GetArrayFromImage(clean_result.mask)
    spacing = tuple(float(s) for s in reversed(image.GetSpacing()))
    rows = []
    for name in variants:
        specs = [variant_spec(spec, name) for spec in DEFAULT_LESIONS]
        lesioned, lesions = simulate_lesions(image, clean, specs)
        started = time.perf_counter()
        result = segmenter(lesioned)
        row = {"scan": path.name, "variant": name, "clean_s": round(clean_s, 1),
               "lesion_s": round(time.perf_counter() - started, 1)}
        row.update(lesion_scores(sitk.GetArrayFromImage(result.mask), clean, lesions, spacing))
        row["dense_ml"] = result.report.to_dict().get("dense_lung", {})
        row["flags"] = [f["code"] for f in result.report.quality_flags]
        rows.append(row)
        if images is not None:
            from algorithm.io.writing import write_png

            picture = lesion_figure(sitk.GetArrayViewFromImage(lesioned), sitk.GetArrayFromImage(result.mask), lesions)
            write_png(picture, images / f"{path.name.split('.')[0]}-{name}.png")
        print(json.dumps(row), flush=True)
    return rows


def to_markdown(rows: list[dict]) -> str:
    """One table row per scan and variant: kept, own-lobe, per lesion, IoU away, flags."""
    lines = ["| scan | variant | lesions (lobe: lung mL, kept) | kept | own lobe | lobe IoU away from the lesions (min, lobe) | dense-lung flags |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lesions = "; ".join(f"{l['lobe']} {l['lung_ml']:.0f} mL {l['kept']:.2f}" for l in r["lesions"])
        worst = min(((v, k) for k, v in r["iou_away"].items() if v is not None), default=(float("nan"), "-"))
        flags = ", ".join(sorted({f for f in r["flags"] if f in ("dense_lobe", "pleural_effusion")})) or "none"
        lines.append(f"| {r['scan']} | {r['variant']} | {lesions} | {r['kept']:.3f} | {r['own_lobe']:.3f} | "
                     f"{worst[0]:.3f} ({worst[1]}) | {flags} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from benchmarks.real_scans import REAL_DIR

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scans", nargs="*", help="names in ../shared/data/real (default: A0001 and the 1.5 mm chest)")
    parser.add_argument("--variants", default="default", help=f"comma-separated of {','.join(VARIANTS)}")
    parser.add_argument("--out", type=Path, help="JSON rows")
    parser.add_argument("--images", type=Path, help="folder for a picture through each lesion per scan and variant")
    args = parser.parse_args(argv)
    if not REAL_DIR.is_dir():
        print(f"error: {REAL_DIR} not found (the real scans of ../shared)", file=sys.stderr)
        return 2
    variants = [v.strip() for v in args.variants.split(",")]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; choose from {','.join(VARIANTS)}")
    scans = args.scans or ["lung-pet-ct-dx-A0001-dicom", "totalseg-chest-cta-1.5mm.nii.gz"]
    segmenter = LobeSegmenter(device="cpu")
    if args.images:
        args.images.mkdir(parents=True, exist_ok=True)
    rows = [row for name in scans for row in run_scan(segmenter, REAL_DIR / name, variants, args.images)]
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1) + "\n")
    print(to_markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
