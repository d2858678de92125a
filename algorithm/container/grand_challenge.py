"""The grand-challenge.org container mode: ``python -m algorithm gc`` (the image's entrypoint).

Current contract (``/input/inputs.json`` present): the CT of socket ``images/ct`` or
``images/chest-ct`` (or the only image socket) -> the lobe mask as the only file under
``/output/images/pulmonary-lobes/`` and the lobe statistics in
``/output/pulmonary-lobe-volumes.json``. An optional "Multiple points" socket holds user points on
the fissures (``algorithm.container.points``): the marked fissures pass through them.

Legacy contract (no inputs.json): each ``/input/*.mha|*.mhd|*.nii.gz`` -> ``/output/images/<name>.mha``
plus ``/output/results.json`` in the evalutils form, with ``error_messages``.

A failure prints its reason on stderr and exits 1; the current contract then leaves nothing in
/output, the legacy one leaves complete files only and says which case failed in results.json.
Paths and limits come from the environment (see ``algorithm.container.contract``).
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import SimpleITK as sitk
import torch

from algorithm.device import resolve_device
from algorithm.errors import InputError, OutputError, ResourceError, SettingsError
from algorithm.frontend import quality_lines, segment_file, write_case_outputs
from algorithm.container.contract import (
    MASK_SOCKET,
    VOLUMES_SOCKET,
    GCConfig,
    available_cpus,
    check_output_socket_empty,
    find_model_checkpoint,
    has_inputs_json,
    legacy_inputs,
    legacy_result_entry,
    locate_ct,
    output_stem,
)
from algorithm.container.points import locate_points
from algorithm.container.resources import MemoryPlan, cgroup_memory_limit_mb, plan_memory, read_header
from algorithm.io.writing import ensure_output_dir, write_json
from algorithm.labels import LOBES
from algorithm.network.checkpoint import CheckpointError
from algorithm.segmenter import LobeSegmenter, SegmentationResult

EXIT_OK, EXIT_FAILED = 0, 1
# Failures with a message for the user (the case's error in results.json, no traceback); a
# ResourceError is either the memory plan refusing the case or the pipeline's out-of-memory
# fallbacks exhausted.
USER_ERRORS = (InputError, OutputError, CheckpointError, ResourceError)


@dataclass
class Weights:
    segmenter: LobeSegmenter
    source: str  # "model tarball" or "baked into the image"


@dataclass
class CaseResult:
    mask: sitk.Image
    mask_name: str
    report: dict  # the JSON document of the case


@dataclass
class OutputTracker:
    """What this run created under /output, so that a failure can take it all back."""

    files: list[Path] = field(default_factory=list)
    folders: list[Path] = field(default_factory=list)

    def make_folder(self, folder: Path) -> None:
        missing = [p for p in (folder, *folder.parents) if not p.exists()]
        ensure_output_dir(folder)
        self.folders.extend(missing)  # deepest first: removal order

    def rollback(self) -> None:
        for path in self.files:
            if path.is_file():
                path.unlink()
        for folder in self.folders:
            try:
                folder.rmdir()
            except OSError:
                pass  # not empty or already gone: leave it


def main(environ: Mapping[str, str] | None = None) -> int:
    """Entry point; returns the exit code."""
    # torch sizes its pool from the host's cores; a container often gets fewer (docker --cpus)
    torch.set_num_threads(available_cpus())
    started = time.perf_counter()
    try:
        config = GCConfig.from_env(os.environ if environ is None else environ)
        if config.max_memory_mb is None:
            config = replace(config, max_memory_mb=cgroup_memory_limit_mb())
        if has_inputs_json(config.input_root):
            code = run_current(config)
        else:
            code = run_legacy(config)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = EXIT_FAILED
    except Exception as exc:  # a bug: the traceback goes with the one-line reason
        traceback.print_exc(file=sys.stderr)
        print(f"error: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        code = EXIT_FAILED
    print(f"grand-challenge mode finished in {time.perf_counter() - started:.1f} s, exit code {code}", file=sys.stderr)
    return code


# ----------------------------------------------------------------------------- current contract


def run_current(config: GCConfig) -> int:
    """inputs.json -> one mask in images/pulmonary-lobes/ and pulmonary-lobe-volumes.json."""
    socket = locate_ct(config.input_root)
    points = locate_points(config.input_root)  # the optional fissure points socket, read before any work
    mask_dir = config.output_root / MASK_SOCKET
    check_output_socket_empty(mask_dir)
    ensure_output_dir(config.output_root)
    device = resolve_device(config.device)
    weights = load_weights(config, device)
    if points is not None:
        weights = replace(weights, segmenter=weights.segmenter.with_options(fissure_points=points))
    outputs, complete = OutputTracker(), False
    try:
        socket_fields = {"socket": socket.slug, "relative_path": socket.relative_path, "image": socket.image_meta}
        result = process_case(socket.image_path, config, weights, device, socket_fields, "inputs.json")
        write_current_outputs(result, config.output_root, outputs)
        complete = True
    finally:
        if not complete:  # whatever went wrong, leave no half of the outputs behind
            outputs.rollback()
    print_summary(result)
    return EXIT_OK


def write_current_outputs(result: CaseResult, output_root: Path, outputs: OutputTracker) -> None:
    """Mask first, JSON last, each written atomically; the tracker can undo both."""
    mask_dir = output_root / MASK_SOCKET
    outputs.make_folder(mask_dir)
    # each file is tracked once written: a failed write leaves nothing of ours
    write_case_outputs(
        result.mask, result.report, mask_dir / result.mask_name, output_root / VOLUMES_SOCKET, written=outputs.files.append
    )


# ------------------------------------------------------------------------------ legacy contract


def run_legacy(config: GCConfig) -> int:
    """Each /input/*.mha|*.mhd|*.nii.gz -> /output/images/<name>.mha, and results.json."""
    files = legacy_inputs(config.input_root)
    ensure_output_dir(config.output_root)
    try:
        device = resolve_device(config.device)
        weights = load_weights(config, device)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        entries = [legacy_result_entry(p.name, None, [str(exc)], None) for p in files]
        write_json(entries, config.output_root / "results.json")
        return EXIT_FAILED
    entries = [legacy_case(path, config, weights, device) for path in files]
    write_json(entries, config.output_root / "results.json")
    failed = sum(1 for entry in entries if entry["error_messages"])
    if failed:
        print(f"error: {failed} of {len(entries)} cases failed (see results.json)", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


def legacy_case(path: Path, config: GCConfig, weights: Weights, device: torch.device) -> dict:
    """One results.json entry; a failing case is reported there and on stderr, not raised."""
    try:
        result = process_case(path, config, weights, device, {}, "legacy")
        images = config.output_root / "images"
        ensure_output_dir(images)
        write_case_outputs(result.mask, result.report, images / result.mask_name)
    except USER_ERRORS as exc:
        print(f"error: {path.name}: {exc}", file=sys.stderr)
        return legacy_result_entry(path.name, None, [str(exc)], None)
    except Exception as exc:  # keep going with the other cases; the traceback helps a bug report
        traceback.print_exc(file=sys.stderr)
        message = f"internal error: {type(exc).__name__}: {exc}"
        print(f"error: {path.name}: {message}", file=sys.stderr)
        return legacy_result_entry(path.name, None, [message], None)
    print_summary(result)
    return legacy_result_entry(path.name, result.mask_name, [], result.report)


# ----------------------------------------------------------------------------------- shared


def load_weights(config: GCConfig, device: torch.device) -> Weights:
    """A checkpoint from the model tarball (/opt/ml/model) wins over the baked-in weights.

    The precision is checked before the weights load (float16 needs CUDA).
    """
    uploaded = find_model_checkpoint(config.model_root)
    try:
        segmenter = LobeSegmenter(uploaded, device, precision=config.precision, fissures=config.fissures)
    except SettingsError as exc:
        raise InputError(f"GC_PRECISION: {exc}") from exc
    return Weights(segmenter, "model tarball" if uploaded else "baked into the image")


def process_case(
    path: Path, config: GCConfig, weights: Weights, device: torch.device, input_fields: dict, contract: str
) -> CaseResult:
    """Plan memory from the header (before loading any voxel), read, segment."""
    segmenter = weights.segmenter
    header = read_header(path)
    plan = plan_memory(header, segmenter.settings.inplane_size, device, config.max_memory_mb)
    memory = {"limit_mb": plan.limit_mb, "estimate_mb": plan.host_estimate_mb, "tile_batch": plan.batch_size,
              "max_tile_in_voxels": plan.max_tile_in_voxels}
    run = segment_file(
        path, segment_within_memory(segmenter, plan), output_stem(path), {"file": path.name, **input_fields},
        weights_source=weights.source, extra={"memory": memory, "contract": contract},
    )
    return CaseResult(mask=run.mask, mask_name=f"{output_stem(path)}.mha", report=run.document)


def segment_within_memory(segmenter: LobeSegmenter, plan: MemoryPlan) -> Callable[..., SegmentationResult]:
    """The segmenter within the memory plan. Out of GPU memory, the network step's own policy
    applies (algorithm/inference.py: smaller tile batches, then the CPU); out of host memory is the
    container's limit, and says so."""
    planned = segmenter.with_options(max_tile_in_voxels=plan.max_tile_in_voxels, batch_size=plan.batch_size)

    def segment(image: sitk.Image, progress=None) -> SegmentationResult:
        try:
            return planned(image, progress)
        except MemoryError as exc:
            raise ResourceError("the container ran out of memory: raise the algorithm's memory limit") from exc

    return segment


def print_summary(result: CaseResult) -> None:
    volumes = result.report["volumes_ml"]
    lobes = "  ".join(f"{lobe.name} {volumes[lobe.name]:.1f}" for lobe in LOBES)
    weights = result.report["weights"]
    print(f"{result.report['case']}: lobe volumes (mL) {lobes}  total {volumes['total']:.1f}")
    print(f"  weights: {weights['path']} ({weights['source']}, sha256 {weights['sha256'][:12]}…)")
    for line in quality_lines(result.report):
        print(f"  {line}")
