"""Times initc.torch on torchtitan 0.3.0 Llama3: building on meta, trace() (the capture and its
lowering), and materialize() on the CPU against the CPU engine alone on the same program.

    python3 tools/bench/torch_capture.py --flavor 405B            # capture only
    python3 tools/bench/torch_capture.py --flavor 1B --materialize  # + CPU materialize (1.5e9 elements)
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import initc.torch as it
from torchtitan.models.llama3 import llama3_configs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flavor", default="405B")
    ap.add_argument("--materialize", action="store_true")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    t0 = time.perf_counter()
    with torch.device("meta"):
        model = llama3_configs[a.flavor](attn_backend="flex").build()
    build = time.perf_counter() - t0
    best = float("inf")
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        prog = it.trace(model)
        best = min(best, time.perf_counter() - t0)
    n = sum(s for *_, shape, _ in [(0, 0, p[2], 0) for p in prog.params] for s in [int(np.prod(shape))])
    print(f"{a.flavor}: build on meta {build:.2f} s; trace {best:.3f} s (best of {a.repeat}); {len(prog.params)} tensors, {n:.3e} elements")
    if a.materialize:
        # the engine alone, into one preallocated buffer per tensor (no torch), then materialize
        t0 = time.perf_counter()
        for fqn, dt, shape, _ in prog.params:
            buf = np.empty(int(np.prod(shape)) * (2 if dt in ("bf16", "f16") else 4), np.uint8)
            prog.program.materialize_into(fqn, buf, 0)
        eng = time.perf_counter() - t0
        t0 = time.perf_counter()
        it.materialize(model, prog, seed=0, buffers=False)
        mat = time.perf_counter() - t0
        print(f"CPU engine alone {eng:.2f} s ({n / eng / 1e6:.0f} M elements/s); materialize {mat:.2f} s ({n / mat / 1e6:.0f} M elements/s, incl. to_empty)")

if __name__ == "__main__":
    main()
