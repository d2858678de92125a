"""bfloat16 against float32 convolution speed on each kind of x86-64 CPU, and what
``--precision auto`` picks there (docs/performance.md).

The kinds are reproduced on a CPU with native bfloat16 by capping oneDNN's and ATen's ISA, each in
its own process (both read the caps at start-up): AVX512 without BF16 (Skylake-SP ... Ice Lake)
and AVX2 only (Haswell ... , Zen 1-3). Timed: stage II's 14 convolutions at their channel widths
(Table II) on a small tile, padded, levels 24³, 12³, 6³, 3³: the arithmetic of stage II at a
size the emulated kernel finishes in seconds.

    python -m benchmarks.precision_speed [--threads 1] [--repeats 3] [--size 24]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CPU_KINDS = {  # name: environment that reproduces it
    "native bfloat16 (this CPU)": {},
    "AVX512 without BF16": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
    "AVX2 only": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
}


def stage2_layers(size: int) -> list[tuple[int, int, int]]:
    """(in channels, out channels, spatial edge) of stage II's 3x3x3 convolutions."""
    from algorithm.network.cascade import STAGE2_IN_CHANNELS
    from algorithm.network.cunet import STAGE2_WIDTHS as widths

    layers, channels, skips = [], STAGE2_IN_CHANNELS, []
    for level, (mid, out) in enumerate(widths.down):
        edge = size >> level
        layers += [(channels, mid, edge), (mid, out, edge)]
        channels = out
        skips.append((out, edge))
    edge = size >> len(widths.down)
    layers += [(channels, widths.bridge[0], edge), (widths.bridge[0], widths.bridge[1], edge)]
    channels = widths.bridge[1]
    for (mid, out), (skip, edge) in zip(widths.up, reversed(skips)):
        layers += [(channels + skip, mid, edge), (mid, out, edge)]
        channels = out
    return layers


def time_layers(dtype_name: str, size: int, repeats: int) -> float:
    """Best total seconds of one pass over the layers in ``dtype_name``."""
    import torch

    dtype = getattr(torch, dtype_name)
    torch.manual_seed(0)
    convs = [(torch.nn.Conv3d(i, o, 3, padding=1).to(dtype), torch.randn(1, i, e, e, e, dtype=dtype))
             for i, o, e in stage2_layers(size)]
    best = float("inf")
    with torch.no_grad():
        for conv, x in convs:  # warm-up: oneDNN builds its kernels on first use
            conv(x)
        for _ in range(repeats):
            started = time.perf_counter()
            for conv, x in convs:
                conv(x)
            best = min(best, time.perf_counter() - started)
            if best > 10.0:  # the emulated kernel: one pass says enough
                break
    return best


def child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    from algorithm.cpu_bf16 import bf16_support
    from algorithm.inference import compute_dtype

    support = bf16_support()
    fp32 = time_layers("float32", args.size, args.repeats)
    bf16 = time_layers("bfloat16", args.size, args.repeats)
    print(json.dumps({
        "aten": torch.backends.cpu.get_cpu_capability(), "native_bf16": support.native,
        "reason": support.reason, "auto": str(compute_dtype(torch.device("cpu"), "auto")).removeprefix("torch."),
        "float32_s": round(fp32, 3), "bfloat16_s": round(bf16, 3),
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=24, help="level-1 edge of the tile (halved per level)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    gflop = sum(2 * i * o * 27 * e**3 for i, o, e in stage2_layers(args.size)) / 1e9
    print(f"stage II's {len(stage2_layers(args.size))} convolutions, level-1 edge {args.size}: {gflop:.1f} GFLOP a pass; "
          f"{args.threads} thread(s), best of {args.repeats}\n")
    print("| CPU kind (reproduced by) | ATen | auto picks | float32 (s) | bfloat16 (s) | bfloat16 / float32 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, caps in CPU_KINDS.items():
        command = [sys.executable, "-m", "benchmarks.precision_speed", "--child", "--threads", str(args.threads),
                   "--repeats", str(args.repeats), "--size", str(args.size)]
        out = subprocess.run(command, env={**os.environ, **caps}, capture_output=True, text=True, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        how = " ".join(f"{k}={v}" for k, v in caps.items()) or "no cap"
        ratio = row["bfloat16_s"] / row["float32_s"]
        print(f"| {name} (`{how}`) | {row['aten']} | {row['auto']} | {row['float32_s']:.3f} | "
              f"{row['bfloat16_s']:.3f} | {ratio:.2f}× |", flush=True)


if __name__ == "__main__":
    main()
