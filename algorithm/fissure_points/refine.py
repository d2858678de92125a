"""``refine CT MASK --fissure-points FILE -o OUTDIR``: correct an existing lobe mask with user points,
without the network (docs/outputs.md, "Fissure points").

The marked fissures are refitted through their points; by default every unmarked fissure keeps the
mask's border (``--fissures network``: the mask is already a result), ``--fissures fit`` refits them
to the scan's vessel-sparse bands as ``predict`` does. Writes NAME_lobes.mha (the input mask's
geometry and orientation), NAME_lobes.json (volumes and the fissures section with the points and
their residuals) and NAME_fissures.mrk.json (the fissure surfaces as Slicer markups).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from algorithm.errors import InputError, OutputError
from algorithm.fissure_points.export import write_fissure_markups
from algorithm.fissure_points.fit import refine_with_points
from algorithm.fissure_points.reading import FissurePoints, read_points
from algorithm.io.reading import case_name, read_image
from algorithm.io.writing import ensure_output_dir, output_path, write_json, write_mask
from algorithm.labels import Lobe, label_map
from algorithm.preprocessing import CANONICAL_ORIENTATION, orientation_of, to_canonical
from algorithm.report.volumes import volumes_ml
from algorithm.version import __version__

GEOMETRY_TOLERANCE_MM = 1e-3  # the CT and the mask must share their grid (as written by predict)


def add_refine_parser(commands, formatter_class) -> None:
    """The ``refine`` sub-command's options."""
    refine = commands.add_parser(
        "refine", help="correct an existing lobe mask with points on the fissures (no network)",
        formatter_class=formatter_class, description=__doc__.split("\n\n", 1)[1],
    )
    refine.add_argument("ct", type=Path, help="the CT (file or DICOM folder) the mask was made from")
    refine.add_argument("mask", type=Path, help="its lobe mask (labels 0-5, same grid), e.g. NAME_lobes.mha")
    refine.add_argument("--fissure-points", type=Path, required=True,
                        help="points on the fissures: 3D Slicer markups (.mrk.json), grand-challenge points JSON or CSV")
    refine.add_argument("-o", "--output", type=Path, required=True, help="output folder (created if needed)")
    refine.add_argument("--fissures", choices=("network", "fit"), default="network",
                        help="unmarked fissures: network keeps the mask's borders, fit refits them to the scan")


def run_refine(args: argparse.Namespace) -> int:
    """The command; returns the exit code (1 with one line on stderr for bad input)."""
    started = time.perf_counter()
    try:
        points = read_points(args.fissure_points)
        image = read_image(args.ct).image
        mask = read_mask(args.mask, image)
        refined, section, surfaces = refine_mask_with_points(image, mask, points, args.fissures)
        name = case_name(args.ct) if args.ct.is_file() else args.ct.name
        ensure_output_dir(args.output)
        document = {
            "case": name,
            "software": {"name": "ctsunet-lobes", "version": __version__},
            "input": {"ct": str(args.ct), "mask": str(args.mask), "fissure_points": str(args.fissure_points)},
            "label_map": label_map(),
            "volumes_ml": volumes_ml(refined),
            "fissures": section,
            "run_time_s": {"total": round(time.perf_counter() - started, 3)},
        }
        write_mask(refined, output_path(args.output, f"{name}_lobes.mha"))
        write_fissure_markups(surfaces, output_path(args.output, f"{name}_fissures.mrk.json"))
        write_json(document, output_path(args.output, f"{name}_lobes.json"))
    except (InputError, OutputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    guided = ", ".join(f"{k} (largest residual {v['max_residual_mm']:.2f} mm)" for k, v in section["user_points"]["fissures"].items())
    print(f"{name}: refitted {guided} in {time.perf_counter() - started:.1f} s -> {args.output}")
    return 0


def read_mask(path: Path, image: sitk.Image) -> sitk.Image:
    """The lobe mask at ``path`` as uint8, checked against the CT's grid and the label set."""
    mask = read_image(path).image
    same = (
        mask.GetSize() == image.GetSize()
        and np.allclose(mask.GetSpacing(), image.GetSpacing(), atol=GEOMETRY_TOLERANCE_MM)
        and np.allclose(mask.GetOrigin(), image.GetOrigin(), atol=GEOMETRY_TOLERANCE_MM)
        and np.allclose(mask.GetDirection(), image.GetDirection(), atol=1e-6)
    )
    if not same:
        raise InputError(f"{path.name}: the mask's grid (size {mask.GetSize()}, spacing, origin, direction) is not the CT's")
    values = np.unique(sitk.GetArrayViewFromImage(mask))
    if values.min() < 0 or values.max() > max(Lobe) or not np.all(values == np.round(values)):
        raise InputError(f"{path.name}: not a lobe mask (values {values[:8].tolist()}; labels are 0-{int(max(Lobe))})")
    out = sitk.Cast(mask, sitk.sitkUInt8)
    return out


def refine_mask_with_points(
    image: sitk.Image, mask: sitk.Image, points: FissurePoints, mode: str = "network"
) -> tuple[sitk.Image, dict, dict[str, np.ndarray]]:
    """(corrected mask on the input's grid and orientation, fissures section, surfaces in LPS)."""
    canonical = orientation_of(image) == CANONICAL_ORIENTATION
    image_c = image if canonical else to_canonical(image)
    mask_c = mask if canonical else to_canonical(mask)
    # no stray merge (the pipeline's, 8 s on 512 x 512 x 400): the mask's own strays were merged by
    # predict, and the relabelled slabs reach past the old border (relabel_margin_mm) leaving no sliver
    fitted = refine_with_points(image_c, sitk.GetArrayFromImage(mask_c), points, mode)
    refined = sitk.GetImageFromArray(fitted.labels)
    refined.CopyInformation(mask_c)
    if not canonical:
        refined = sitk.DICOMOrient(refined, orientation_of(mask))
    return refined, fitted.section, fitted.surfaces_lps
