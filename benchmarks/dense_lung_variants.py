"""The dense-lung step's settings compared on the real scans with simulated lesions (issue 31):
the numbers of docs/design.md, "Dense lung".

    python -m benchmarks.dense_lung_variants [SCAN ...] [--set grow_steps=0 --set max_outward_deg=110 ...]

Per scan: the shipped steps up to the lung step once on the scan and once with the issue's three
lesions drawn in (``benchmarks.consolidation_real``, placed on the lesion-free lung step's lobes);
then ``recover_dense_lung`` alone, with the shipped settings and with each ``--set`` (one setting
changed at a time), on what the lung step handed it. Prints the lesions' kept share (their
lesion-free lobes as the reference) and the mL the step adds to the lesion-free scan.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields, replace

import numpy as np
import SimpleITK as sitk

from algorithm.dense_lung import DenseLungSettings, recover_dense_lung
from algorithm.io.reading import read_image
from algorithm.segmenter import LobeSegmenter
from benchmarks.consolidation_real import DEFAULT_LESIONS, lesion_scores, simulate_lesions
from benchmarks.harness import before_fissures
from benchmarks.real_scans import REAL_DIR


def _setting(text: str) -> dict:
    name, value = text.split("=", 1)
    kinds = {f.name: f.type for f in fields(DenseLungSettings)}
    if name not in kinds:
        raise argparse.ArgumentTypeError(f"unknown setting {name!r}; choose from {', '.join(kinds)}")
    return {name: int(value) if kinds[name] == "int" else float(value)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scans", nargs="*", help="names in ../shared/data/real (default: A0001 and the 1.5 mm chest)")
    parser.add_argument("--set", dest="changes", action="append", type=_setting, default=[], help="NAME=VALUE of DenseLungSettings")
    args = parser.parse_args(argv)
    segmenter = LobeSegmenter(device="cpu")
    for name in args.scans or ["lung-pet-ct-dx-A0001-dicom", "totalseg-chest-cta-1.5mm.nii.gz"]:
        clean = before_fissures(segmenter, read_image(REAL_DIR / name).image)
        canonical = clean.scan.canonical
        spacing = clean.scan.canonical_spacing_mm_zyx
        truth = clean.lobes.sides.labels  # the lung step's lobes before the dense-lung step
        lesioned, lesions = simulate_lesions(canonical, truth, DEFAULT_LESIONS)
        sick = before_fissures(segmenter, lesioned)
        for change in [{}] + args.changes:
            settings = replace(DenseLungSettings(), **change)
            found = recover_dense_lung(sitk.GetArrayFromImage(lesioned), sick.lobes.sides.labels, spacing, settings)
            scores = lesion_scores(found.labels, truth, lesions, spacing)
            free = recover_dense_lung(sitk.GetArrayFromImage(canonical), truth, spacing, settings)
            added_ml = float(np.count_nonzero(free.labels != truth)) * float(np.prod(spacing)) / 1000.0
            per_lesion = ", ".join(f"{l['lobe']} {l['kept']:.2f}" for l in scores["lesions"])
            print(f"{name} {change or 'shipped'}: kept {scores['kept']:.3f} ({per_lesion}); "
                  f"lesion-free scan +{added_ml:.1f} mL, effusion {free.effusion_ml}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
