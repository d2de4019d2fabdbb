"""Shared helpers of the initc Python tests (run by tools/test with the venv's pytest)."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def values(program, fqn: str, seed: int = 0) -> torch.Tensor:
    """A program tensor computed by the CPU engine into a fresh torch tensor."""
    import initc.torch as it

    dt = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16, "f64": torch.float64}
    (d, shape) = next((d, s) for f, d, s, _ in program.params if f == fqn)
    t = torch.empty(shape, dtype=dt[d])
    return it.fill_(t, program, fqn, seed)


def bits(t: torch.Tensor) -> np.ndarray:
    t = t.detach().contiguous().cpu()
    return t.reshape(-1).view(torch.uint8).numpy() if t.numel() else np.zeros(0, np.uint8)


def assert_same_bits(a: torch.Tensor, b: torch.Tensor, what: str = "") -> None:
    assert a.shape == b.shape and a.dtype == b.dtype, (what, a.shape, b.shape, a.dtype, b.dtype)
    eq = bits(a) == bits(b)
    assert eq.all(), f"{what}: {int((~eq).sum())} of {eq.size} bytes differ"


@pytest.fixture(scope="session")
def initc_cli() -> str:
    """The initc binary (target/release or target/debug; built in debug if neither exists)."""
    for prof in ("release", "debug"):
        p = os.path.join(ROOT, "target", prof, "initc")
        if os.path.exists(p):
            return p
    subprocess.run(["cargo", "build", "-q", "-p", "initc-cli"], cwd=ROOT, check=True)
    return os.path.join(ROOT, "target", "debug", "initc")


class CpuRuntime:
    """Stands in for initc.device.Runtime without a GPU: makes each requested rectangle with the
    CPU engine into a torch CPU tensor (which has __dlpack__), so the torch device path's request
    building, hand-over and adoption run in CI. Records the requests."""

    devices = [(0, 0, 0, "cpu stand-in")]
    plugin = "cpu-stand-in"

    def __init__(self):
        self.requests = []

    def materialize(self, program, requests, seed=None, batch=None):
        import initc.torch as it

        self.requests.append(requests)
        dt = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}
        table = {f: d for f, d, _, _ in program.params}
        out = []
        for _index, lst in requests:
            made = []
            for fqn, off, shape in lst:
                t = torch.empty(shape, dtype=dt[table[fqn]])
                it.fill_(t, program, fqn, seed, off, shape)
                made.append(t)
            out.append(made)
        return out, {"compile": 0.0, "load": 0.0, "run": 0.0, "executables": 0, "cache_hits": 0}
