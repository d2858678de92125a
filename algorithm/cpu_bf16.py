"""Whether this CPU runs bfloat16 convolutions natively, or only emulates them.

On the CPU, torch runs 3D convolutions through oneDNN. oneDNN runs bfloat16 natively only with
the AVX512-BF16 or AMX-BF16 instructions; torch's own check (``_is_mkldnn_bf16_supported``) is
also true on plain AVX512 CPUs (Skylake-SP ... Ice Lake), where oneDNN emulates bfloat16 at a
third of float32's speed, and false on AVX2 CPUs, where torch falls back to a generic kernel
that is 10-100x slower than float32 (docs/performance.md has the measurements). So native means:

1. the hardware has the instructions (cpuinfo, as torch reads it: ``torch.cpu``);
2. oneDNN is allowed to use them: ``ONEDNN_MAX_CPU_ISA`` (or the older ``DNNL_MAX_CPU_ISA``)
   does not cap it below ``AVX512_CORE_BF16``; this is how an older CPU is reproduced here;
3. torch's ATen kernels are not capped below AVX512 (``ATEN_CPU_CAPABILITY``): no CPU with
   bfloat16 instructions lacks AVX512, so such a cap means "behave like an older CPU";
4. oneDNN is built in, enabled and says bfloat16 is supported.

Other architectures (aarch64): torch's check there asks for the hardware's bfloat16 extension;
it is trusted (not measured by this project).
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass

import torch

# oneDNN ISA caps (its documented ONEDNN_MAX_CPU_ISA values) under which bfloat16 is not native.
ONEDNN_CAPS_WITHOUT_BF16 = frozenset(
    {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}
)
ONEDNN_CAP_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")  # oneDNN reads the first set
ATEN_CAPS_WITHOUT_BF16 = frozenset({"DEFAULT", "AVX2", "NONE"})  # torch.backends.cpu.get_cpu_capability()
# every variable that makes this CPU behave like another: child processes must inherit them all
CPU_CAP_VARIABLES = ("ATEN_CPU_CAPABILITY", *ONEDNN_CAP_VARIABLES)


@dataclass(frozen=True)
class Bf16Support:
    native: bool
    reason: str  # why, in words (printed by the tests that skip without it)


def bf16_support(environ: dict[str, str] | None = None) -> Bf16Support:
    """Whether bfloat16 convolutions run natively here, and why (see the module docstring)."""
    environ = os.environ if environ is None else environ
    if platform.machine().lower() not in {"x86_64", "amd64"}:
        native = _torch_says_bf16()
        return Bf16Support(native, f"{platform.machine()}: torch's oneDNN bfloat16 check says {native}")
    if not _hardware_has_bf16():
        return Bf16Support(False, "the CPU has neither AVX512-BF16 nor AMX-BF16: bfloat16 would be emulated")
    cap = _onednn_cap(environ)
    if cap in ONEDNN_CAPS_WITHOUT_BF16:
        return Bf16Support(False, f"oneDNN is capped at {cap} (ONEDNN_MAX_CPU_ISA): bfloat16 would be emulated")
    aten = torch.backends.cpu.get_cpu_capability().upper()
    if aten in ATEN_CAPS_WITHOUT_BF16:
        return Bf16Support(False, f"torch's kernels are capped at {aten} (ATEN_CPU_CAPABILITY): an older CPU is asked for")
    if not _torch_says_bf16():
        return Bf16Support(False, "oneDNN is disabled or reports no bfloat16 support")
    return Bf16Support(True, "AVX512-BF16/AMX-BF16 present and used by oneDNN")


def _hardware_has_bf16() -> bool:
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu.get_capabilities().get("amx_bf16"))
    except (AttributeError, RuntimeError):
        return False


def _onednn_cap(environ) -> str | None:
    for name in ONEDNN_CAP_VARIABLES:
        if environ.get(name):
            return environ[name].strip().upper()
    return None


def _torch_says_bf16() -> bool:
    try:
        return bool(
            torch.backends.mkldnn.is_available()
            and torch.backends.mkldnn.enabled
            and torch.ops.mkldnn._is_mkldnn_bf16_supported()
        )
    except (AttributeError, RuntimeError):
        return False
