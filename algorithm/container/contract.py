"""The grand-challenge.org I/O contract: where the inputs are, where the outputs go.

Nothing here runs the network. Everything read from ``inputs.json`` is untrusted: a path built
from it must stay inside the input root (no ``..``, no absolute path, no symlink out of it).

Paths and settings come from the environment: ``GC_DESCRIPTION`` below (``python -m algorithm gc --help``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from algorithm.constants import DEFAULT_FISSURES, FISSURE_MODES, PRECISIONS
from algorithm.errors import InputError, OutputError
from algorithm.io.formats import has_image_suffix, strip_image_suffix

GC_DESCRIPTION = """\
Reads the CT from the input root and writes the lobe mask and the volumes to the output root, as
a grand-challenge.org algorithm container does (docs/container.md).

current contract (INPUT/inputs.json present):
  in:  the CT of socket images/ct or images/chest-ct (or the only image socket)
  out: OUTPUT/images/pulmonary-lobes/<name>.mha and OUTPUT/pulmonary-lobe-volumes.json
legacy contract (no inputs.json):
  in:  each INPUT/*.mha|*.mhd|*.nii.gz
  out: OUTPUT/images/<name>.mha and OUTPUT/results.json (with error_messages per case)

environment variables (defaults: the platform's):
  GC_INPUT_DIR    input root (default /input)
  GC_OUTPUT_DIR   output root (default /output)
  GC_MODEL_DIR    model root (default /opt/ml/model): a *.pt checkpoint there replaces the
                  weights baked into the image
  GC_DEVICE       auto, cpu or cuda (default auto)
  GC_PRECISION    auto, float32, bfloat16 or float16 (CUDA) (default auto): the network's
                  arithmetic; test.sh pins float32 so its comparison holds on any CPU or GPU
  GC_FISSURES     fit or network (default fit): refit each fissure to the scan's vessel-sparse
                  band where the evidence is clear, or keep the network's borders (the paper's)
  GRAND_CHALLENGE_COMPONENT_MAX_MEMORY_MB
                  the container's memory limit (set by the platform; default: the cgroup's)

A failure prints one line starting with "error:" and exits 1; the current contract then leaves
nothing in the output root."""

INPUTS_JSON = "inputs.json"
# Chest-CT sockets in public containers: the paper authors', STOIC2021, DRAM use images/ct;
# LUNA25 uses images/chest-ct. Any other single image socket is accepted too.
PREFERRED_CT_SOCKETS = ("images/ct", "images/chest-ct")
MASK_SOCKET = "images/pulmonary-lobes"
VOLUMES_SOCKET = "pulmonary-lobe-volumes.json"
# The platform names socket files <uuid>.mha or <uuid>.tif; other ITK formats are tolerated
# so that the mode also runs on hand-made input folders.
SOCKET_IMAGE_SUFFIXES = (".mha", ".tif", ".tiff", ".mhd", ".nii.gz", ".nii", ".nrrd")
LEGACY_IMAGE_SUFFIXES = (".mha", ".mhd", ".nii.gz")
OUTPUT_IMAGE_SUFFIXES = (".mha", ".tif", ".tiff")


class ContractError(InputError):
    """The input folder does not follow the platform's contract (a user-facing message)."""


@dataclass(frozen=True)
class GCConfig:
    """Where the container reads and writes, taken from the environment once, then passed on."""

    input_root: Path
    output_root: Path
    model_root: Path
    device: str = "auto"
    max_memory_mb: int | None = None
    precision: str = "auto"
    fissures: str = DEFAULT_FISSURES

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "GCConfig":
        return cls(
            input_root=Path(environ.get("GC_INPUT_DIR", "/input")),
            output_root=Path(environ.get("GC_OUTPUT_DIR", "/output")),
            model_root=Path(environ.get("GC_MODEL_DIR", "/opt/ml/model")),
            device=environ.get("GC_DEVICE", "auto"),
            max_memory_mb=_parse_memory_limit(environ.get("GRAND_CHALLENGE_COMPONENT_MAX_MEMORY_MB")),
            precision=_parse_precision(environ.get("GC_PRECISION", "auto")),
            fissures=_parse_fissures(environ.get("GC_FISSURES", DEFAULT_FISSURES)),
        )


def _parse_fissures(value: str) -> str:
    if value not in FISSURE_MODES:
        raise InputError(f"GC_FISSURES={value!r} is not one of {', '.join(FISSURE_MODES)}")
    return value


def _parse_precision(value: str) -> str:
    if value not in PRECISIONS:
        raise InputError(f"GC_PRECISION={value!r} is not one of {', '.join(PRECISIONS)}")
    return value


def _parse_memory_limit(value: str | None) -> int | None:
    if value is None or not value.strip():
        return None
    try:
        limit = int(float(value))
    except ValueError:
        return None  # a malformed limit must not stop the job; the estimate just goes unchecked
    return limit if limit > 0 else None


@dataclass(frozen=True)
class CTSocket:
    """The chosen CT input: socket slug, its folder (relative) and the image file inside it."""

    slug: str
    relative_path: str
    image_path: Path
    image_meta: dict  # the entry's "image" object (pk, name) as given, for the report


# ----------------------------------------------------------------------------- current contract


def has_inputs_json(input_root: Path) -> bool:
    return (input_root / INPUTS_JSON).is_file()


def read_inputs_json(input_root: Path) -> list[dict]:
    path = input_root / INPUTS_JSON
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ContractError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, list) or not all(isinstance(entry, dict) for entry in data):
        raise ContractError(f"{path} is not a list of socket entries")
    return data


def socket_interface(entry: dict) -> dict:
    """The entry's "interface" object ({} when absent or not an object)."""
    interface = entry.get("interface")
    return interface if isinstance(interface, dict) else {}


def _is_image_socket(entry: dict) -> bool:
    interface = socket_interface(entry)
    kinds = {str(interface.get(key, "")).lower() for key in ("kind", "super_kind")}
    relative = interface.get("relative_path")
    return "image" in kinds or (isinstance(relative, str) and relative.startswith("images/"))


def choose_ct_entry(entries: list[dict]) -> dict:
    """The CT socket: images/ct or images/chest-ct, else the only image socket present."""
    images = [entry for entry in entries if _is_image_socket(entry)]
    if not images:
        raise ContractError("inputs.json lists no image socket: expected a chest CT (e.g. images/ct)")
    preferred = [e for e in images if socket_interface(e).get("relative_path") in PREFERRED_CT_SOCKETS]
    if len(preferred) == 1:
        return preferred[0]
    if len(preferred) > 1 or len(images) > 1:
        listed = ", ".join(str(socket_interface(e).get("relative_path")) for e in (preferred or images))
        raise ContractError(f"inputs.json lists several image sockets ({listed}): expected one chest CT")
    return images[0]


def safe_join(root: Path, relative: object) -> Path:
    """``root / relative`` for an untrusted relative path; refuses anything leading out of root."""
    if not isinstance(relative, str) or not relative or "\x00" in relative or "\\" in relative:
        raise ContractError(f"invalid relative_path {relative!r} in inputs.json")
    pure = PurePosixPath(relative)
    if pure.is_absolute() or any(part in ("..", "") for part in pure.parts):
        raise ContractError(f"relative_path {relative!r} in inputs.json leads outside the input folder")
    candidate = root.joinpath(*pure.parts)
    ensure_inside(root, candidate)
    return candidate


def ensure_inside(root: Path, path: Path) -> None:
    """Symlinks included: the real path must lie under the real root."""
    real_root = root.resolve()
    real = path.resolve()
    if real != real_root and real_root not in real.parents:
        raise ContractError(f"{path} leads outside the input folder {root}")


def single_image_in(folder: Path, input_root: Path) -> Path:
    """The one image file of a socket folder; none or several is a contract error."""
    if not folder.is_dir():
        raise ContractError(f"the CT socket folder {folder} does not exist")
    images = sorted(p for p in folder.iterdir() if not p.name.startswith(".") and has_image_suffix(p, SOCKET_IMAGE_SUFFIXES))
    if not images:
        raise ContractError(f"no CT image (.mha or .tif) in {folder}")
    if len(images) > 1:
        names = ", ".join(p.name for p in images)
        raise ContractError(f"{len(images)} images in {folder} ({names}): expected exactly one CT")
    ensure_inside(input_root, images[0])
    if not images[0].is_file():
        raise ContractError(f"{images[0]} is not a file")
    return images[0]


def locate_ct(input_root: Path) -> CTSocket:
    """Read inputs.json and find the CT image file, safely."""
    entry = choose_ct_entry(read_inputs_json(input_root))
    interface = socket_interface(entry)
    relative = interface.get("relative_path")
    folder = safe_join(input_root, relative)
    image = entry.get("image") if isinstance(entry.get("image"), dict) else {}
    return CTSocket(
        slug=str(interface.get("slug", relative)),
        relative_path=str(relative),
        image_path=single_image_in(folder, input_root),
        image_meta={key: image[key] for key in ("pk", "name") if key in image},
    )


# ------------------------------------------------------------------------------ legacy contract


def legacy_inputs(input_root: Path) -> list[Path]:
    """``/input/*.mha|*.mhd|*.nii.gz``, sorted; stems must be unique (one mask name each)."""
    if not input_root.is_dir():
        raise ContractError(f"input folder {input_root} does not exist")
    files = sorted(
        p for p in input_root.iterdir() if p.is_file() and not p.name.startswith(".") and has_image_suffix(p, LEGACY_IMAGE_SUFFIXES)
    )
    if not files:
        raise ContractError(
            f"no input: {input_root} holds neither {INPUTS_JSON} nor CT images (.mha, .mhd, .nii.gz)"
        )
    for path in files:
        ensure_inside(input_root, path)
    stems = [output_stem(p) for p in files]
    duplicated = sorted({s for s in stems if stems.count(s) > 1})
    if duplicated:
        raise ContractError(f"several inputs would give the same mask name: {', '.join(duplicated)}")
    return files


# ---------------------------------------------------------------------------------- outputs


def output_stem(image_path: Path) -> str:
    """A safe file stem from an input file name (the platform's uuid, normally)."""
    name = strip_image_suffix(image_path, SOCKET_IMAGE_SUFFIXES)
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")
    return safe or "pulmonary-lobes"


def check_output_socket_empty(folder: Path) -> None:
    """The platform fails a job whose image socket holds two images: refuse to add a second."""
    if folder.is_dir():
        present = [p.name for p in folder.iterdir() if has_image_suffix(p, OUTPUT_IMAGE_SUFFIXES)]
        if present:
            raise OutputError(
                f"{folder} already holds {', '.join(sorted(present))}: the socket takes exactly one image"
            )


# ---------------------------------------------------------------------------------- weights


def find_model_checkpoint(model_root: Path) -> Path | None:
    """A ``*.pt`` under the model root (the platform's model tarball), or None."""
    if not model_root.is_dir():
        return None
    found = sorted(p for p in model_root.rglob("*.pt") if p.is_file())
    if len(found) > 1:
        names = ", ".join(str(p.relative_to(model_root)) for p in found)
        raise ContractError(f"several checkpoints in {model_root} ({names}): the model tarball must hold one")
    return found[0] if found else None


def legacy_result_entry(input_name: str, mask_name: str | None, errors: list[str], report: dict | None) -> dict:
    """One results.json entry in the evalutils form (plus the lobe report when there is one)."""
    entry: dict = {
        "outputs": [{"type": "metaio_image", "filename": mask_name}] if mask_name else [],
        "inputs": [{"type": "metaio_image", "filename": input_name}],
        "error_messages": errors,
    }
    if report is not None:
        entry["pulmonary_lobe_volumes"] = report
    return entry


def available_cpus(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs this process may use: affinity, capped by a cgroup v2 quota (docker --cpus)."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = (cgroup_root / "cpu.max").read_text().split()[:2]
        if quota != "max":
            count = min(count, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota readable: affinity is the best we know
    return max(1, count)
