"""Network arithmetic: what "auto" picks on each kind of CPU, that the choice reaches the
convolutions, bad choices.

Every test here is independent of the host's kernels: the network that runs in bfloat16 is a
two-channel CTSU-Net (the real code path, tiny arithmetic), so a CPU that only emulates bfloat16
(AVX2: a generic kernel 10-100x slower than float32) runs it in a second. The CPU kinds are
reproduced in subprocesses with oneDNN's and ATen's ISA caps (docs/performance.md).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from algorithm.cpu_bf16 import Bf16Support, bf16_support
from algorithm.inference import TilingSettings, compute_dtype, cpu_has_native_bf16, predict_network_grid
from algorithm.network import CTSUNet
from algorithm.network.cascade import STAGE2_IN_CHANNELS
from algorithm.network.cunet import CUNet, UNetWidths

CPU = torch.device("cpu")
TINY_WIDTHS = UNetWidths(down=((2, 2), (2, 2), (2, 2)), bridge=(2, 2), up=((2, 2), (2, 2), (2, 2)))
AVX2_ONLY = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}  # as .ci/run's second run
AVX512_WITHOUT_BF16 = {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}  # Skylake-SP ... Ice Lake


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


@pytest.mark.parametrize("caps", [AVX2_ONLY, AVX512_WITHOUT_BF16, {"ATEN_CPU_CAPABILITY": "avx2"}])
def test_a_cap_below_native_bfloat16_is_honoured(caps):
    support = bf16_support(environ=caps) if "ONEDNN_MAX_CPU_ISA" in caps else None
    if support is not None:
        assert not support.native and caps["ONEDNN_MAX_CPU_ISA"] in support.reason
    # the whole chain, as a user on such a CPU runs it: oneDNN and ATen read their caps at start-up
    code = "import torch; from algorithm.inference import compute_dtype; print(compute_dtype(torch.device('cpu'), 'auto'))"
    env = {**os.environ, **caps}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, encoding="utf-8", timeout=120, check=True)
    assert out.stdout.strip() == "torch.float32"


def test_an_uncapped_cpu_with_the_instructions_is_native():
    if not bf16_support(environ={}).native:
        pytest.skip(f"this host has no native bfloat16: {bf16_support(environ={}).reason}")
    for cap in ("AVX512_CORE_BF16", "AVX512_CORE_AMX", "avx10_1_512", "ALL"):
        assert bf16_support(environ={"ONEDNN_MAX_CPU_ISA": cap}).native, cap


def _tiny_model() -> CTSUNet:
    """The real cascade with two channels per layer: bfloat16 costs little even when emulated."""
    torch.manual_seed(0)
    model = CTSUNet()
    model.stage1 = CUNet(1, TINY_WIDTHS, padded=True)
    model.stage2 = CUNet(STAGE2_IN_CHANNELS, TINY_WIDTHS, padded=False)
    with torch.no_grad():  # stage I calls every voxel lung, so stage II runs
        model.stage1.lobe_head.bias.copy_(torch.tensor([0.0, 3.0, 0.0, 0.0, 0.0, 0.0]))
    return model.eval()


def _conv_dtypes(model: torch.nn.Module, precision: str, scan: np.ndarray) -> tuple[set, np.ndarray]:
    seen: set = set()
    hooks = [m.register_forward_hook(lambda _m, _i, out: seen.add(out.dtype))
             for m in model.modules() if isinstance(m, torch.nn.Conv3d)]
    try:
        labels = predict_network_grid(model, scan, CPU, TilingSettings(tile_out=12, precision=precision)).labels
    finally:
        for hook in hooks:
            hook.remove()
    return seen, labels


def test_the_chosen_precision_reaches_the_convolutions():
    model = _tiny_model()
    scan = np.random.default_rng(0).random((12, 12, 12), dtype=np.float32)
    fp32_dtypes, fp32 = _conv_dtypes(model, "float32", scan)
    bf16_dtypes, bf16 = _conv_dtypes(model, "bfloat16", scan)
    auto_dtypes, _ = _conv_dtypes(model, "auto", scan)
    assert fp32_dtypes == {torch.float32}
    assert bf16_dtypes == {torch.bfloat16}
    assert auto_dtypes == {compute_dtype(CPU, "auto")}
    assert bf16.shape == fp32.shape == scan.shape and (bf16 > 0).any()


def test_forced_bfloat16_on_an_emulating_cpu_is_warned_about(monkeypatch):
    import algorithm.inference

    model, scan = _tiny_model(), np.zeros((12, 12, 12), np.float32)
    settings = TilingSettings(tile_out=12, precision="bfloat16")
    monkeypatch.setattr(algorithm.inference, "bf16_support", lambda: bf16_support(environ=AVX512_WITHOUT_BF16))
    warned = predict_network_grid(model, scan, CPU, settings).warnings
    assert any("bfloat16 was asked for" in w and "float32" in w for w in warned), warned
    monkeypatch.setattr(algorithm.inference, "bf16_support", lambda: Bf16Support(True, "native"))
    assert not predict_network_grid(model, scan, CPU, settings).warnings
