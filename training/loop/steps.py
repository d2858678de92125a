"""One training step as a module, so that DistributedDataParallel sees a single forward.

``CascadeStep`` runs stage I on the whole scan, computes its two losses, mines hard windows from
its error (no extra forward pass), crops the stage-II patches, runs stage II and returns every
loss term. ``UNetStep`` is the one-stage 3D U-Net baseline on random patches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from algorithm.constants import STAGE1_DOWNSAMPLE
from algorithm.labels import NUM_CLASSES
from algorithm.network import CTSUNet, UNet3D
from algorithm.network.cunet import valid_output_size
from training.loop import losses
from training.loop import ohem
from training.config import TrainConfig


@dataclass
class StepInputs:
    """What one step needs besides the scan; all randomness comes from ``rng``."""

    step: int
    progress: float  # fraction of the OHEM decay done, in [0, 1]
    stage1_only: bool
    rng: np.random.Generator


def crop_padded(volume: torch.Tensor, starts_zyx: torch.Tensor, size: int, fill: float = 0) -> torch.Tensor:
    """Cubes volume[s:s+size] of a (..., Z, Y, X) tensor for each start (P, 3), ``fill`` outside.

    Returns (P, ..., size, size, size).
    """
    lead = volume.shape[:-3]
    out = torch.full((starts_zyx.shape[0], *lead, size, size, size), fill, dtype=volume.dtype, device=volume.device)
    dims = volume.shape[-3:]
    for p, start in enumerate(starts_zyx.tolist()):
        src, dst = [], []
        for s, d in zip(start, dims):
            lo, hi = max(s, 0), min(s + size, d)
            if hi <= lo:
                break
            src.append(slice(lo, hi))
            dst.append(slice(lo - s, hi - s))
        else:
            out[(p, *(slice(None) for _ in lead), *dst)] = volume[(..., *src)]
    return out


def half_resolution_reference(labels: torch.Tensor, border: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage-I references: soft one-hot lobes by 2x2x2 averaging (exact class fractions; voxels
    past the scan edge count as background) and border by 2x2x2 max (a thin border survives).

    labels, border: (Z, Y, X) -> (1, 6, z, y, x), (1, 1, z, y, x) with z = ceil(Z / 2) etc.
    """
    f = STAGE1_DOWNSAMPLE
    pads = []
    for size in reversed(labels.shape):
        pads += [0, (-size) % f]
    lab = F.pad(labels[None, None].long(), pads, value=0)[0, 0]
    lobes = torch.stack(
        [F.avg_pool3d((lab == c).float()[None, None], f)[0, 0] for c in range(NUM_CLASSES)], dim=0
    )[None]
    bord = F.max_pool3d(F.pad(border[None, None].float(), pads, value=0.0), f)
    return lobes, bord


class CascadeStep(nn.Module):
    """CTSU-Net end to end: four GDL terms (+ optional top-K CE), OHEM for stage II."""

    def __init__(self, model: CTSUNet, config: TrainConfig) -> None:
        super().__init__()
        self.model = model
        self.config = config
        self.size_in = config.patch_in
        self.size_out = valid_output_size(config.patch_in)

    def forward(
        self, image: torch.Tensor, labels: torch.Tensor, border: torch.Tensor, inputs: StepInputs
    ) -> dict[str, torch.Tensor]:
        """image (1, 1, Z, Y, X) float; labels, border (Z, Y, X) uint8 on the same device."""
        cfg = self.config
        stage1 = self.model.forward_stage1(image)
        ref_half, border_half = half_resolution_reference(labels, border)
        terms = {
            "stage1_lobe": losses.lobe_gdl(stage1.lobe_logits, ref_half),
            "stage1_border": losses.border_gdl(stage1.border_logits, border_half),
        }
        if cfg.loss.topk_ce_weight > 0:
            terms["stage1_topk_ce"] = _soft_topk_ce(stage1.lobe_logits, ref_half, cfg.loss.topk_fraction)
        info: dict[str, torch.Tensor] = {}
        if not inputs.stage1_only:
            out_starts, info = self._mine(stage1, ref_half, inputs)
            in_starts = out_starts - (self.size_in - self.size_out) // 2
            patches = self.model.stage2_inputs(image, stage1, in_starts, self.size_in)
            lobe2, border2 = self.model.forward_stage2(patches.to(image.dtype), in_starts, stage1.full_shape_zyx)
            lab2 = crop_padded(labels, out_starts.cpu(), self.size_out).long()
            bor2 = crop_padded(border, out_starts.cpu(), self.size_out)
            terms["stage2_lobe"] = losses.lobe_gdl(lobe2, lab2)
            terms["stage2_border"] = losses.border_gdl(border2, bor2)
            if cfg.loss.topk_ce_weight > 0:
                terms["stage2_topk_ce"] = losses.topk_cross_entropy(lobe2, lab2, cfg.loss.topk_fraction)
        terms["loss"] = self._total(terms)
        return {**terms, **info}

    def _total(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        cfg = self.config.loss
        total = cfg.stage1_weight * (terms["stage1_lobe"] + cfg.border_weight * terms["stage1_border"])
        total = total + cfg.stage1_weight * cfg.topk_ce_weight * terms.get("stage1_topk_ce", 0.0)
        if "stage2_lobe" in terms:
            total = total + cfg.stage2_weight * (terms["stage2_lobe"] + cfg.border_weight * terms["stage2_border"])
            total = total + cfg.stage2_weight * cfg.topk_ce_weight * terms.get("stage2_topk_ce", 0.0)
        return total

    def _mine(self, stage1, ref_half: torch.Tensor, inputs: StepInputs) -> tuple[torch.Tensor, dict]:
        """Output-window starts of the step's stage-II patches, from stage I's error."""
        cfg = self.config.ohem
        full = stage1.full_shape_zyx
        size = self.size_out
        phase = tuple(int(inputs.rng.integers(size)) for _ in range(3)) if cfg.random_grid_phase else (0, 0, 0)
        starts = ohem.window_grid(full, size, size, phase)
        with torch.no_grad():
            probs = torch.softmax(stage1.lobe_logits.detach().float(), dim=1)
            error = ohem.stage1_error_map(probs, ref_half)[0]
            error_full = ohem.upsample_nearest(error, full, STAGE1_DOWNSAMPLE)
        scan_voxels = full[0] * full[1] * full[2]
        if cfg.enabled:
            k = ohem.hard_set_size(len(starts), size**3, scan_voxels, inputs.progress, cfg.final_coverage)
        else:
            k = len(starts)
        generator = torch.Generator().manual_seed(int(inputs.rng.integers(2**62)))
        chosen, sums = ohem.select_hard_windows(error_full.cpu(), starts, size, k, cfg.patches_per_step, generator)
        info = {
            "ohem_k": torch.tensor(float(k)),
            "ohem_windows": torch.tensor(float(len(starts))),
            "stage1_mse": error.mean().detach(),
        }
        return chosen.to(ref_half.device), info


def _soft_topk_ce(logits: torch.Tensor, soft_ref: torch.Tensor, fraction: float) -> torch.Tensor:
    """Top-K cross-entropy against a soft reference (stage I's half-resolution fractions)."""
    ce = -(soft_ref * torch.log_softmax(logits.float(), dim=1)).sum(dim=1).flatten()
    k = losses.topk_count(ce.numel(), fraction)
    return torch.topk(ce, k, sorted=False).values.mean()


class UNetStep(nn.Module):
    """One-stage 3D U-Net baseline: ``patches_per_step`` random patches per scan (IV.B.1)."""

    def __init__(self, model: UNet3D, config: TrainConfig) -> None:
        super().__init__()
        self.model = model
        self.config = config
        self.size_in = config.patch_in
        self.size_out = valid_output_size(config.patch_in)

    def forward(
        self, image: torch.Tensor, labels: torch.Tensor, border: torch.Tensor, inputs: StepInputs
    ) -> dict[str, torch.Tensor]:
        full = labels.shape
        # output windows uniformly placed so that each overlaps the scan by at least half a window
        starts = torch.tensor(
            [
                [int(inputs.rng.integers(-self.size_out // 2, max(d - self.size_out // 2, 1 - self.size_out // 2) + 1)) for d in full]
                for _ in range(self.config.ohem.patches_per_step)
            ]
        )
        in_starts = starts - (self.size_in - self.size_out) // 2
        x = crop_padded(image[0, 0], in_starts, self.size_in)[:, None]
        lobe, bord = self.model(x)
        lab = crop_padded(labels, starts, self.size_out).long()
        bor = crop_padded(border, starts, self.size_out)
        terms = {"stage2_lobe": losses.lobe_gdl(lobe, lab), "stage2_border": losses.border_gdl(bord, bor)}
        cfg = self.config.loss
        total = terms["stage2_lobe"] + cfg.border_weight * terms["stage2_border"]
        if cfg.topk_ce_weight > 0:
            terms["stage2_topk_ce"] = losses.topk_cross_entropy(lobe, lab, cfg.topk_fraction)
            total = total + cfg.topk_ce_weight * terms["stage2_topk_ce"]
        terms["loss"] = total
        return terms
