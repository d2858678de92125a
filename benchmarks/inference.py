"""Inference speed and memory on phantom scans of growing size.

    python -m benchmarks.inference [--device cpu|cuda] [--sizes 100,200,400] [--weights PATH]

Per scan size (512 x 512 x N slices) it reports, per stage (read, preprocess, stage I, stage II,
back to the input grid and clean-up, write), wall time, voxels per second, peak RAM (RSS) and peak
GPU memory, for: this project's default path; the paper-faithful reference path (116^3 -> 28^3
valid tiles without overlap over the whole scan, float32) with the same weights, and the mean IoU
agreement of the two; and lungmask's LTRCLobes pipeline (2D U-Net with random weights, its real
weights being a download; post-processing off). Each measurement runs in its own process so peak
RSS is its own. Results go to results/performance.json and results/performance.md (docs/performance.md quotes
the table).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import SimpleITK as sitk

from training.evaluation.metrics import mean_lobe_iou

REPO_ROOT = Path(__file__).resolve().parents[1]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _gpu_peak_mb(device) -> float | None:
    import torch

    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def worker_ours(ct_path: Path, args: argparse.Namespace, reference: bool) -> dict:
    import torch

    from algorithm.device import resolve_device
    from algorithm.io.reading import read_image
    from algorithm.segmenter import LobeSegmenter
    from algorithm.io.writing import write_json, write_mask

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if reference:  # the paper-faithful path: 28^3 tiles over the whole scan, float32
        segmenter = LobeSegmenter(args.weights, device, precision="float32", tile_out=28, crop_to_lungs=False)
    else:
        segmenter = LobeSegmenter(args.weights, device, precision=args.precision, tile_out=args.tile_out,
                                  batch_size=args.batch_size)
    timings = {}
    t = time.perf_counter()
    image = read_image(ct_path).image
    timings["read"] = time.perf_counter() - t
    if device.type == "cuda" and not reference:
        torch.backends.cudnn.benchmark = True
    result = segmenter(image)
    report = result.report.to_dict()
    timings.update(result.timings_s)
    t = time.perf_counter()
    out_dir = Path(tempfile.mkdtemp())
    write_mask(result.mask, out_dir / "mask.mha")
    write_json(report, out_dir / "report.json")
    timings["write"] = time.perf_counter() - t
    if args.keep_mask:
        sitk.WriteImage(result.mask, str(args.keep_mask))
    return {
        "timings_s": timings,
        "total_s": sum(timings.values()),
        "peak_rss_mb": _peak_rss_mb(),
        "peak_gpu_mb": _gpu_peak_mb(device),
        "tile_out_zyx": report["network_grid"]["stage2_tile_out_zyx"],
        "stage2_tiles": report["network_grid"]["stage2_tiles"],
        "precision": report["network_grid"]["precision"],
    }


def worker_lungmask(ct_path: Path, args: argparse.Namespace) -> dict:
    import torch
    from lungmask import mask as lm_mask
    from lungmask.resunet import UNet

    if args.threads:
        torch.set_num_threads(args.threads)
    # LTRCLobes architecture (6 classes) with random weights: same compute as the real model.
    model = UNet(n_classes=6, padding=True, depth=5, up_mode="upsample", batch_norm=True, residual=False)
    weights = Path(tempfile.mkdtemp()) / "ltrclobes-random.pth"
    torch.save(model.state_dict(), weights)
    inferer = lm_mask.LMInferer(
        modelpath=str(weights), force_cpu=args.device == "cpu", volume_postprocessing=False
    )
    t = time.perf_counter()
    image = sitk.ReadImage(str(ct_path))
    read_s = time.perf_counter() - t
    t = time.perf_counter()
    inferer.apply(image)
    return {
        "timings_s": {"read": read_s, "predict": time.perf_counter() - t},
        "total_s": read_s + time.perf_counter() - t,
        "peak_rss_mb": _peak_rss_mb(),
    }


def _run_worker(mode: str, ct_path: Path, args: argparse.Namespace, keep_mask: Path | None = None) -> dict:
    command = [sys.executable, "-m", "benchmarks.inference", "--worker", mode, "--ct", str(ct_path), "--device", args.device]
    for flag, value in (("--weights", args.weights), ("--threads", args.threads), ("--tile-out", args.tile_out),
                        ("--batch-size", args.batch_size), ("--keep-mask", keep_mask),
                        ("--precision", args.precision)):
        if value:
            command += [flag, str(value)]
    proc = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _make_phantom(n_slices: int, folder: Path, seed: int) -> tuple[Path, Path]:
    """The CT and its lobe labels (the truth both paths are also scored against)."""
    from training.phantoms import PhantomOptions, generate_case

    path = folder / f"phantom-512x512x{n_slices}.mha"
    label_path = folder / f"phantom-512x512x{n_slices}-labels.mha"
    if not (path.exists() and label_path.exists()):
        case = generate_case(seed, PhantomOptions(size_xyz=(512, 512, n_slices), pathology="none"))
        sitk.WriteImage(case.image, str(path), useCompression=True)
        sitk.WriteImage(case.label, str(label_path), useCompression=True)
    return path, label_path


def _mean_iou(a_path: Path, b_path: Path) -> float:
    a = sitk.GetArrayFromImage(sitk.ReadImage(str(a_path)))
    b = sitk.GetArrayFromImage(sitk.ReadImage(str(b_path)))
    return mean_lobe_iou(a, b)


def run(args: argparse.Namespace) -> dict:
    sizes = [int(s) for s in args.sizes.split(",")]
    reference_sizes = {int(s) for s in args.reference_sizes.split(",")} if args.reference_sizes else set()
    folder = Path(args.cache)
    folder.mkdir(parents=True, exist_ok=True)
    results = {"device": args.device, "host": platform.processor() or platform.machine(),
               "cpu_count": os.cpu_count(), "threads": args.threads, "runs": []}
    for n in sizes:
        ct, truth = _make_phantom(n, folder, seed=900_000 + n)
        voxels = 512 * 512 * n
        entry = {"size": [512, 512, n], "voxels": voxels}
        ours_mask = folder / f"ours-{n}.mha"
        entry["ours"] = _run_worker("ours", ct, args, keep_mask=ours_mask)
        if n in reference_sizes:
            ref_mask = folder / f"reference-{n}.mha"
            entry["reference"] = _run_worker("reference", ct, args, keep_mask=ref_mask)
            if "error" not in entry["reference"] and "error" not in entry["ours"]:
                entry["agreement_mean_iou"] = _mean_iou(ours_mask, ref_mask)
                # the other reading of "IoU difference": accuracy against the phantom truth, ours minus reference
                entry["truth_mean_iou"] = {"ours": _mean_iou(ours_mask, truth), "reference": _mean_iou(ref_mask, truth)}
                entry["speedup_vs_reference"] = entry["reference"]["total_s"] / entry["ours"]["total_s"]
        if not args.no_peer and (not args.peer_sizes or str(n) in args.peer_sizes.split(",")):
            entry["lungmask"] = _run_worker("lungmask", ct, args)
            if "error" not in entry["lungmask"] and "error" not in entry["ours"]:
                entry["speedup_vs_lungmask"] = entry["lungmask"]["total_s"] / entry["ours"]["total_s"]
        results["runs"].append(entry)
        print(json.dumps(entry), file=sys.stderr)
    return results


def to_markdown(results: dict, command: str) -> str:
    lines = [
        "# Inference performance",
        "",
        f"Reproduce: `{command}`",
        "",
        f"Device: {results['device']}; CPU cores: {results['cpu_count']}; torch threads: {results['threads'] or 'default'}.",
        "",
        "| scan | path | read | preprocess | stage I | stage II | back + clean-up | write | total (s) | voxels/s | peak RSS (MB) | peak GPU (MB) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for entry in results["runs"]:
        size = "×".join(str(s) for s in entry["size"])
        for path in ("ours", "reference", "lungmask"):
            run = entry.get(path)
            if run is None:
                continue
            if "error" in run:
                lines.append(f"| {size} | {path} | failed: {run['error']} |" + " |" * 10)
                continue
            t = run["timings_s"]
            cell = lambda key: f"{t[key]:.2f}" if key in t else "–"  # noqa: E731
            stage2 = cell("stage2") if path != "lungmask" else cell("predict")
            gpu = f"{run['peak_gpu_mb']:.0f}" if run.get("peak_gpu_mb") else "–"
            label = f"{path} ({run['precision']})" if run.get("precision") else path
            lines.append(
                f"| {size} | {label} | {cell('read')} | {cell('preprocess')} | {cell('stage1')} | {stage2} | "
                f"{cell('postprocess')} | {cell('write')} | {run['total_s']:.2f} | {entry['voxels'] / run['total_s']:,.0f} | "
                f"{run['peak_rss_mb']:.0f} | {gpu} |"
            )
        if "speedup_vs_lungmask" in entry:
            lines.append(f"| {size} | ours vs lungmask | speed-up {entry['speedup_vs_lungmask']:.1f}× |" + " |" * 10)
        if "agreement_mean_iou" in entry:
            lines.append(
                f"| {size} | ours vs reference | speed-up {entry['speedup_vs_reference']:.1f}×, mean lobe IoU agreement "
                f"{entry['agreement_mean_iou']:.4f}; mean lobe IoU against the phantom truth: ours "
                f"{entry['truth_mean_iou']['ours']:.4f}, reference {entry['truth_mean_iou']['reference']:.4f} |" + " |" * 10
            )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--sizes", default="100,200,400", help="slice counts of the 512x512xN phantoms")
    parser.add_argument("--reference-sizes", default="100", help="sizes that also run the paper-faithful path")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--tile-out", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--precision", default="auto", help="ours: auto, float32, bfloat16, float16 (the reference is float32)")
    parser.add_argument("--no-peer", action="store_true", help="skip lungmask")
    parser.add_argument("--peer-sizes", default="", help="sizes that run lungmask (default: all)")
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "ctsunet-bench"))
    parser.add_argument("--out", default=str(REPO_ROOT / "results" / "performance"))
    parser.add_argument("--worker", choices=["ours", "reference", "lungmask"], help=argparse.SUPPRESS)
    parser.add_argument("--ct", help=argparse.SUPPRESS)
    parser.add_argument("--keep-mask", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        ct = Path(args.ct)
        result = worker_lungmask(ct, args) if args.worker == "lungmask" else worker_ours(ct, args, args.worker == "reference")
        print(json.dumps(result))
        return 0
    results = run(args)
    command = "python -m benchmarks.inference " + " ".join(argv if argv is not None else sys.argv[1:])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    out.with_suffix(".md").write_text(to_markdown(results, command.strip()))
    print(out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
