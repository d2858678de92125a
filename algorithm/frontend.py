"""What the command line and the container share: read a file, segment it, write its outputs, say so.

One path for both (``python -m algorithm predict`` and ``python -m algorithm gc``):
``segment_file`` reads and segments a case and composes its JSON document;
``write_case_outputs`` writes the mask first and the JSON last, each atomically; ``print_volumes``
and ``print_flags`` tell the console.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import SimpleITK as sitk

from algorithm.io.reading import LoadedImage, read_image
from algorithm.io.writing import write_json, write_mask
from algorithm.labels import LOBES
from algorithm.segmenter import LobeSegmenter, Progress, SegmentationResult

# the keys of report.volumes_ml, in printing order: the lobes of the label map, the lungs, the total
VOLUME_KEYS = (*(lobe.name for lobe in LOBES), "left_lung", "right_lung", "total")


@dataclass(frozen=True)
class CaseRun:
    """One segmented case: what was read, what came out, and the JSON document written beside it."""

    name: str
    loaded: LoadedImage
    result: SegmentationResult
    document: dict

    @property
    def mask(self) -> sitk.Image:
        return self.result.mask


def warn(name: str, message: str) -> None:
    print(f"warning: {name}: {message}", file=sys.stderr)


def segment_file(
    path: Path,
    segmenter: LobeSegmenter | Callable[..., SegmentationResult],
    name: str,
    input_fields: dict,
    progress: Progress | None = None,
    weights_source: str | None = None,
    extra: dict | None = None,
) -> CaseRun:
    """Read ``path``, segment it with ``segmenter`` (or a callable like it) and compose its document.

    The document is ``{"case", "input": {**input_fields, "read", "warnings"}, **report,
    **extra, "run_time_s"}``; ``weights_source`` (the container: model tarball or baked-in) joins
    the report's ``weights``. Warnings of the reading and of the segmentation go to stderr.
    """
    started = time.perf_counter()
    loaded = read_image(path)
    for message in loaded.warnings:
        warn(name, message)
    result = segmenter(loaded.image, progress=progress)
    for message in result.warnings:
        warn(name, message)
    document = {
        "case": name,
        "input": {**input_fields, "read": loaded.description, "warnings": loaded.warnings},
        **result.report.to_dict(),
    }
    if weights_source is not None:
        document["weights"] = {**document["weights"], "source": weights_source}
    document.update(extra or {})
    document["run_time_s"] = {**result.timings_s, "total": round(time.perf_counter() - started, 3)}
    return CaseRun(name, loaded, result, document)


def write_case_outputs(
    mask: sitk.Image,
    document: dict,
    mask_path: Path,
    json_path: Path | None = None,
    extras: Sequence[tuple[Path, Callable[[Path], None]]] = (),
    written: Callable[[Path], None] | None = None,
) -> None:
    """The mask first, then ``extras`` (preview, DICOM-SEG), the JSON last: a JSON means the case is complete.

    Every file is written atomically; ``written(path)`` is told of each as soon as it exists (the
    container's rollback of a failed case).
    """
    done = written or (lambda path: None)
    write_mask(mask, mask_path)
    done(mask_path)
    for path, write in extras:
        write(path)
        done(path)
    if json_path is not None:
        write_json(document, json_path)
        done(json_path)


def print_summary(name: str, document: dict, paths: Sequence[tuple[str, Path]] = ()) -> None:
    """On stdout: the volumes table, the quality flags of severity error and warning, where the outputs are."""
    volumes = document["volumes_ml"]
    print(f"{name}: lobe volumes (mL)")
    for key in VOLUME_KEYS:
        print(f"  {key:10s} {volumes[key]:9.1f}")
    for line in quality_lines(document):
        print(f"  {line}")
    for label, path in paths:
        print(f"  {label}: {path}")


def quality_lines(document: dict) -> list[str]:
    """The quality flags of severity error, then warning, one line each ("error" here is a flag
    about the result, not a failed run: those print "error:" on stderr)."""
    flags = document.get("quality_flags") or []
    return [f"quality {severity}: {flag['message']}"
            for severity in ("error", "warning") for flag in flags if flag.get("severity") == severity]
