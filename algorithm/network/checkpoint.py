"""The shipped checkpoint: one file with the weights and everything inference needs.

Format (a ``torch.save`` dict of tensors and plain values, loaded with ``weights_only=True`` so a
checkpoint is data, never code):

    {"format": "ctsunet-checkpoint", "format_version": 1,
     "meta": {...InferenceSettings, label map, version, training data...},
     "state_dict": {name: tensor (float16 storage allowed)},
     "sha256": hex digest of the meta JSON and every tensor's name, dtype, shape and bytes}
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from algorithm.version import __version__
from algorithm.constants import INPLANE_SIZE, STAGE2_TRAIN_PATCH_IN, STAGE2_TRAIN_PATCH_OUT
from algorithm.io.atomic import atomic_path
from algorithm.labels import label_map
from algorithm.network import CTSUNet, NetworkConfig, UNet3D

FORMAT = "ctsunet-checkpoint"
FORMAT_VERSION = 1
TRAINING_FORMAT = "ctsunet-training"  # a run folder's last.pt / best.pt (training.loop.train)
MODEL_KINDS = ("ctsunet", "unet3d")  # the cascade, or the one-stage 3D U-Net baseline
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "ctsunet.pt"


class CheckpointError(Exception):
    """A checkpoint that is missing, corrupt, tampered with or does not fit the network."""


@dataclass
class InferenceSettings:
    """Grid and tiling a checkpoint was trained for (recorded inside it)."""

    inplane_size: int = INPLANE_SIZE  # preprocessed in-plane matrix
    train_patch_in: int = STAGE2_TRAIN_PATCH_IN  # stage-II training patch (valid convs)
    tile_out: int = STAGE2_TRAIN_PATCH_OUT  # the training recipe's stage-II tile (8k - 28), for the record: inference plans its own
    bbox_margin_mm: float = 10.0  # margin around the stage-I lung bounding box
    network: dict = field(default_factory=lambda: NetworkConfig().to_dict())


@dataclass
class Checkpoint:
    model: CTSUNet
    settings: InferenceSettings
    meta: dict
    path: Path
    sha256: str


def build_model(kind: str = "ctsunet", nonlocal_mode: str = "geometric") -> torch.nn.Module:
    """A freshly initialised network: CTSU-Net with ``nonlocal_mode``, or the 3D U-Net baseline."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"model kind must be one of {MODEL_KINDS}, not {kind!r}")
    if kind == "unet3d":
        return UNet3D()
    return CTSUNet(NetworkConfig(nonlocal_mode=nonlocal_mode))


def read_training_checkpoint(path: str | os.PathLike) -> dict:
    """The payload of a training checkpoint (model, optimizer, config, step, RNG states).

    Loaded with ``weights_only=False`` (it holds RNG states): the trust placed in one's own run
    folder. Raises ``CheckpointError`` for anything else, a shipped checkpoint included.
    """
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(payload, dict) or payload.get("format") != TRAINING_FORMAT:
        raise CheckpointError(f"{path} is not a training checkpoint ({TRAINING_FORMAT})")
    return payload


def state_digest(meta: dict, state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 over the meta (canonical JSON) and every tensor, in name order."""
    digest = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def save_checkpoint(
    model: CTSUNet,
    settings: InferenceSettings,
    path: str | os.PathLike,
    trained_on: str,
    extra_meta: dict | None = None,
    half_precision: bool = True,
) -> str:
    """Write a checkpoint atomically; returns its sha256."""
    state = {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu()
        if half_precision and tensor.is_floating_point():
            tensor = tensor.half()
        state[name] = tensor.contiguous()
    meta = {
        "settings": asdict(settings),
        "label_map": label_map(),
        "software_version": __version__,
        "trained_on": trained_on,
        **(extra_meta or {}),
    }
    digest = state_digest(meta, state)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "meta": meta,
        "state_dict": state,
        "sha256": digest,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # 0644: the weights are read by other users (the container's non-root user)
    with atomic_path(path, mode=0o644) as tmp:
        torch.save(payload, tmp)
    return digest


def load_checkpoint(path: str | os.PathLike | None = None, device: torch.device | str = "cpu") -> Checkpoint:
    """Load, verify (format, sha256, label map, shapes) and build the network in eval mode."""
    path = Path(path) if path is not None else DEFAULT_WEIGHTS
    if not path.is_file():
        raise CheckpointError(
            f"no weights at {path}: pass --weights PATH (train them with 'python -m training train')"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, pickle with code, not a torch file...
        raise CheckpointError(f"{path} is not a readable CTSU-Net checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a CTSU-Net checkpoint (format field missing)")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format {payload.get('format_version')}, expected {FORMAT_VERSION}")
    meta, state = payload["meta"], payload["state_dict"]
    digest = state_digest(meta, state)
    if digest != payload.get("sha256"):
        raise CheckpointError(f"{path} failed its sha256 check: the file is corrupt or was modified")
    if meta.get("label_map") != label_map():
        raise CheckpointError(f"{path} was trained with another label map: {meta.get('label_map')}")
    settings = InferenceSettings(**meta["settings"])
    model = CTSUNet(NetworkConfig.from_dict(settings.network))
    expected = model.state_dict()
    mismatched = [
        name for name in expected if name not in state or tuple(state[name].shape) != tuple(expected[name].shape)
    ]
    unexpected = [name for name in state if name not in expected]
    if mismatched or unexpected:
        raise CheckpointError(
            f"{path} does not fit the CTSU-Net architecture: "
            f"{len(mismatched)} missing/mismatched and {len(unexpected)} unexpected tensors "
            f"(first: {(mismatched + unexpected)[0]})"
        )
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
    model.to(device).eval()
    return Checkpoint(model=model, settings=settings, meta=meta, path=path, sha256=digest)
