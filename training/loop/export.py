"""``python -m training export CKPT --out algorithm/weights/ctsunet.pt``

Writes a training checkpoint (``last.pt`` / ``best.pt`` of a run folder, or the folder itself,
which picks best.pt when it exists) in the shipped format of ``algorithm.network.checkpoint``: fp16
weights, the InferenceSettings the run was trained with (grid, stage-II patch and tile, margin,
network switches), the label map and a sha256. The written file is loaded back and verified.
"""

from __future__ import annotations

import sys
from pathlib import Path


from algorithm.network.checkpoint import (
    InferenceSettings, build_model, load_checkpoint, read_training_checkpoint, save_checkpoint,
)
from algorithm.network import NetworkConfig
from training.config import TrainConfig, config_from_dict
from training.cli_help import command_parser


def resolve_checkpoint(path: Path) -> Path:
    """A run folder means its best.pt (else last.pt)."""
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                return path / name
        raise FileNotFoundError(f"no best.pt or last.pt in {path}")
    return path


def inference_settings(config: TrainConfig) -> InferenceSettings:
    """What a model trained with ``config`` expects at inference: grid, stage-II patch and tile, margin, network."""
    return InferenceSettings(
        inplane_size=config.inplane_size,
        train_patch_in=config.patch_in,
        tile_out=config.tile_out,
        bbox_margin_mm=config.bbox_margin_mm,
        network=NetworkConfig(nonlocal_mode=config.model.nonlocal_mode).to_dict(),
    )


def export(checkpoint: Path, out: Path, half_precision: bool = True) -> str:
    """Convert; returns the sha256 of the written checkpoint."""
    payload = read_training_checkpoint(checkpoint)
    config = config_from_dict(payload["config"])
    if config.model.kind != "ctsunet":
        raise ValueError("only CTSU-Net checkpoints can be shipped; the 3D U-Net baseline is for comparisons")
    model = build_model(config.model.kind, config.model.nonlocal_mode)
    model.load_state_dict(payload["model"])
    settings = inference_settings(config)
    extra = {
        "training": {
            "config_name": config.name,
            "step": int(payload["step"]),
            "max_iters": config.optim.max_iters,
            "best_validation": payload.get("best"),
            "source_checkpoint": checkpoint.name,
        }
    }
    digest = save_checkpoint(model, settings, out, config.trained_on or config.name, extra, half_precision)
    load_checkpoint(out)  # verify the file round-trips (format, sha256, shapes)
    return digest


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("python -m training export", __doc__)
    parser.add_argument("checkpoint", type=Path, help="training checkpoint (.pt) or run folder")
    parser.add_argument("--out", required=True, type=Path, help="shipped checkpoint to write")
    parser.add_argument("--fp32", action="store_true", help="keep float32 weights (default: float16 storage)")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    source = resolve_checkpoint(args.checkpoint)
    digest = export(source, args.out, half_precision=not args.fp32)
    print(f"wrote {args.out} from {source} (sha256 {digest})")
    return 0
