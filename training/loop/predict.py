"""``python -m training predict RUN --images DIR|--cases CSV [--split test] --out DIR``: lobe masks from a
training checkpoint (for a folder of CTs, or one split of a cases CSV such as import-dataset's).

For the comparisons of docs/results.md (Tables III and IV) every model, the one-stage 3D U-Net
included, goes through the shipped pipeline's steps: reading, preprocessing to the network grid,
clean-up, back to the input grid. Cascades (any non-local mode) tile stage II as
``algorithm predict`` does; the 3D U-Net tiles its trained output size over the whole scan (it has
no stage I to find the lungs). Masks are written as ``<case>_lobes.mha``, the names
``algorithm predict`` uses, so ``python -m training evaluate --pred OUT`` reads either.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import SimpleITK as sitk
import torch

from algorithm.io.reading import case_name, is_image_file, read_image
from algorithm.io.writing import write_mask
from algorithm.network.checkpoint import build_model, read_training_checkpoint
from algorithm.segmenter import LobeSegmenter
from training.config import TrainConfig, config_from_dict
from training.data.cases import read_case_csv
from training.loop.export import resolve_checkpoint
from training.loop.infer import segmenter_for
from training.cli_help import command_parser


def load_training_model(checkpoint: Path) -> tuple[torch.nn.Module, TrainConfig, int]:
    """The model of a training checkpoint in eval mode, its config and its step."""
    payload = read_training_checkpoint(checkpoint)
    config = config_from_dict(payload["config"])
    model = build_model(config.model.kind, config.model.nonlocal_mode)
    model.load_state_dict(payload["model"])
    return model.eval(), config, int(payload["step"])


@torch.no_grad()
def predict_case(model: torch.nn.Module, config: TrainConfig, image: sitk.Image) -> sitk.Image:
    """Lobe mask of one CT (HU) on its own grid."""
    return segmenter_for(model, config)(image).mask


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("python -m training predict", __doc__)
    parser.add_argument("checkpoint", type=Path, help="training checkpoint (.pt) or run folder (best.pt, else last.pt)")
    source_group = parser.add_mutually_exclusive_group(required=True)
    source_group.add_argument("--images", type=Path, help="folder of CT images")
    source_group.add_argument("--cases", type=Path, help="a cases CSV (import-dataset's cases.csv): its --split cases")
    parser.add_argument("--split", default="test", help="with --cases: which split (default test)")
    parser.add_argument("--out", required=True, type=Path, help="folder for <case>_lobes.mha")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.threads:
        torch.set_num_threads(args.threads)
    source = resolve_checkpoint(args.checkpoint)
    model, config, step = load_training_model(source)
    if args.cases:
        images = [c.image for c in read_case_csv(args.cases) if c.split == args.split]
    else:
        images = sorted(p for p in args.images.iterdir() if is_image_file(p))
    if not images:
        print(f"error: no images in {args.images or f'the {args.split} split of {args.cases}'}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    segmenter = segmenter_for(model, config)
    for path in images:
        mask = segmenter(read_image(path).image).mask
        write_mask(mask, args.out / f"{case_name(path)}_lobes.mha")  # atomic: no half-written mask
    elapsed = time.perf_counter() - started
    print(f"{len(images)} masks from {source} (step {step}, {config.model.kind}/{config.model.nonlocal_mode}) "
          f"in {elapsed:.0f} s -> {args.out}")
    return 0
