"""Are the lobe masks bit-identical before and after a change? (issue 28: a refactor changes no voxel)

    python -m benchmarks.mask_identity record OUT_DIR [--code ROOT] [--only NAME ...] [--fissures network]
    python -m benchmarks.mask_identity compare BEFORE_DIR AFTER_DIR

``record`` runs ``python -m algorithm predict`` (the shipped weights, CPU, default options) with the
code of ``ROOT`` (default: this checkout; for "before", an export of the old commit, e.g.
``git archive HEAD | tar -x -C /tmp/base``) on the sample CTs (samples/ct/*.mha), the same
reoriented to RAI, and the real scans of ../shared/data/real/, one at a time under ``nice``, and writes ``OUT_DIR/hashes.json``: per case
the sha256 of the mask's voxel array (uint8, (Z, Y, X) C order; the file's bytes carry a header and
compression that may change without the mask changing) and its geometry. ``compare`` prints one
line per case and exits 1 when any mask or geometry differs or a case is missing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from benchmarks.lung_extent import REAL_SCANS  # every real scan once: a DICOM folder, .mha, .nrrd, two .nii.gz
from benchmarks.real_scans import REAL_DIR, REPO_ROOT


REORIENTED = "RAI"  # every scan here is LPS: the samples again in another orientation test the way back


def cases(out_dir: Path) -> dict[str, Path]:
    """Case name -> input path: the sample CTs, each again reoriented to REORIENTED (written into
    ``out_dir/inputs``), then the real scans that are present."""
    samples = sorted((REPO_ROOT / "samples" / "ct").glob("*.mha"))
    found = {p.name: p for p in samples}
    (out_dir / "inputs").mkdir(parents=True, exist_ok=True)
    for path in samples:
        reoriented = out_dir / "inputs" / f"{path.stem}-{REORIENTED}.mha"
        if not reoriented.is_file():
            sitk.WriteImage(sitk.DICOMOrient(sitk.ReadImage(str(path)), REORIENTED), str(reoriented))
        found[reoriented.name] = reoriented
    found.update({name: REAL_DIR / name for name in REAL_SCANS if (REAL_DIR / name).exists()})
    return found


def mask_digest(path: Path) -> dict:
    """sha256 of a mask file's voxel array, with its shape and geometry."""
    image = sitk.ReadImage(str(path))
    voxels = np.ascontiguousarray(sitk.GetArrayViewFromImage(image), dtype=np.uint8)
    return {
        "sha256": hashlib.sha256(voxels.tobytes()).hexdigest(),
        "shape_zyx": list(voxels.shape),
        "spacing": [round(s, 6) for s in image.GetSpacing()],
        "origin": [round(o, 4) for o in image.GetOrigin()],
        "direction": [round(d, 6) for d in image.GetDirection()],
        "lung_voxels": int(np.count_nonzero(voxels)),
    }


def record(out_dir: Path, code_root: Path, only: list[str] | None, fissures: str | None = None) -> int:
    out_dir.mkdir(parents=True, exist_ok=True)
    hashes_path = out_dir / "hashes.json"
    for name, source in cases(out_dir).items():
        if only and name not in only:
            continue
        key = name if fissures is None else f"{name} --fissures {fissures}"
        case_dir = out_dir / (name if fissures is None else f"{name}-fissures-{fissures}")
        command = ["nice", "-n", "5", sys.executable, "-m", "algorithm", "predict", str(source), "-o", str(case_dir),
                   "--device", "cpu", "--quiet", "--no-preview", "--overwrite"]
        command += [] if fissures is None else ["--fissures", fissures]
        started = time.perf_counter()
        run = subprocess.run(command, cwd=code_root, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        masks = sorted(case_dir.glob("*_lobes.mha"))
        if run.returncode != 0 or len(masks) != 1:
            entry = {"error": (run.stderr or run.stdout).strip().splitlines()[-1:]}
        else:
            entry = mask_digest(masks[0]) | {"seconds": round(seconds, 1)}
        print(f"{key}: {entry.get('sha256', entry.get('error'))} ({seconds:.0f} s)", flush=True)
        # read again just before writing: another record run may have added cases meanwhile
        hashes = json.loads(hashes_path.read_text()) if hashes_path.is_file() else {}
        hashes_path.write_text(json.dumps(hashes | {key: entry}, indent=1) + "\n")
    return 0


def compare(before_dir: Path, after_dir: Path) -> int:
    before = json.loads((before_dir / "hashes.json").read_text())
    after = json.loads((after_dir / "hashes.json").read_text())
    failed = False
    for name in sorted(set(before) | set(after)):
        a, b = before.get(name), after.get(name)
        keys = ("sha256", "shape_zyx", "spacing", "origin", "direction", "error")
        same = a is not None and b is not None and all(a.get(k) == b.get(k) for k in keys)
        failed |= not same
        detail = "identical" if same else f"DIFFERS: before {a} after {b}"
        print(f"{name}: {detail}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="predict every case and write OUT_DIR/hashes.json")
    rec.add_argument("out_dir", type=Path)
    rec.add_argument("--code", type=Path, default=REPO_ROOT, help="checkout whose code predicts (default: this one)")
    rec.add_argument("--only", nargs="+", help="case names (default: all)")
    rec.add_argument("--fissures", choices=("fit", "network"), default=None,
                     help="pass --fissures to predict (the cases are keyed 'NAME --fissures X'; default: predict's own)")
    cmp_ = sub.add_parser("compare", help="compare two hashes.json; exit 1 on any difference")
    cmp_.add_argument("before_dir", type=Path)
    cmp_.add_argument("after_dir", type=Path)
    args = parser.parse_args(argv)
    if args.command == "record":
        return record(args.out_dir, args.code.resolve(), args.only, args.fissures)
    return compare(args.before_dir, args.after_dir)


if __name__ == "__main__":
    raise SystemExit(main())
