"""Network arithmetic: what "auto" picks, that the choice reaches the convolutions, bad choices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from algorithm.network.checkpoint import load_checkpoint
from algorithm.inference import TilingSettings, compute_dtype, cpu_has_native_bf16, predict_network_grid

CPU = torch.device("cpu")


def test_auto_is_bfloat16_only_where_the_cpu_has_it():
    expected = torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    assert compute_dtype(CPU, "auto") == expected
    assert compute_dtype(CPU, "float32") == torch.float32
    assert compute_dtype(CPU, "bfloat16") == torch.bfloat16
    assert compute_dtype(torch.device("cuda"), "auto") == torch.float16


@pytest.mark.parametrize("precision", ["float16", "double", ""])
def test_bad_precision_on_cpu_is_refused(precision):
    with pytest.raises(ValueError):
        compute_dtype(CPU, precision)


def _conv_dtypes(model: torch.nn.Module, precision: str, scan: np.ndarray) -> tuple[set, np.ndarray]:
    seen: set = set()
    hooks = [m.register_forward_hook(lambda _m, _i, out: seen.add(out.dtype))
             for m in model.modules() if isinstance(m, torch.nn.Conv3d)]
    try:
        labels = predict_network_grid(model, scan, CPU, TilingSettings(tile_out=36, precision=precision)).labels
    finally:
        for hook in hooks:
            hook.remove()
    return seen, labels


def test_the_chosen_precision_reaches_the_convolutions(test_weights):
    model = load_checkpoint(test_weights).model
    scan = np.random.default_rng(0).random((40, 40, 40), dtype=np.float32)
    fp32_dtypes, fp32 = _conv_dtypes(model, "float32", scan)
    bf16_dtypes, bf16 = _conv_dtypes(model, "bfloat16", scan)
    assert fp32_dtypes == {torch.float32}
    assert bf16_dtypes == {torch.bfloat16}
    assert bf16.shape == fp32.shape and (bf16 > 0).any()
