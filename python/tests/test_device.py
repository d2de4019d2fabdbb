"""initc's device runtime from Python on a GPU (torch CUDA and JAX in one fresh process:
device_worker.py). Skips where there is no CUDA device or no PJRT plugin (CI)."""
import os
import subprocess
import sys

import pytest
import torch

import initc.device as D
from conftest import ROOT, CpuRuntime


def test_no_plugin_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("INITC_PJRT_PLUGIN", str(tmp_path / "missing.so"))
    with pytest.raises(D.InitcError, match="missing.so"):
        D.Runtime(D.find_plugin())


def test_bad_client_options_are_refused(tmp_path):
    with pytest.raises(D.InitcError, match="memory_fraction"):
        D.Runtime(str(tmp_path / "x_cuda.so"), memory_fraction=2.0)


@pytest.mark.skipif(not torch.cuda.is_available() or D.find_plugin() is None, reason="needs a CUDA device and a PJRT plugin (jax[cuda13])")
def test_torch_and_jax_take_initc_device_buffers_over_dlpack():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "python", "tests"), os.environ.get("PYTHONPATH", "")]))
    p = subprocess.run([sys.executable, os.path.join(ROOT, "python", "tests", "device_worker.py"), ROOT], capture_output=True, text=True, timeout=900, env=env)
    print(p.stdout[-6000:])
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-6000:]
    assert "initc.device: all checks passed" in p.stdout


def _tied():
    from torch import nn

    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(30, 8)
            self.a = nn.Linear(8, 16, dtype=torch.bfloat16)
            self.head = nn.Linear(8, 30, bias=False)
            self.head.weight = self.emb.weight
            self.register_buffer("scale", torch.ones(4), persistent=False)

        def reset_parameters(self):
            self.scale.fill_(2.0)

    with torch.device("meta"):
        return Tied()


def test_the_torch_device_path_adopts_what_the_runtime_makes():
    """initc.torch.materialize(device="cuda:0") with a CPU stand-in runtime: each program tensor
    is asked for whole, once (the tie once), the model's parameters become the runtime's tensors
    with the CPU engine's values, ties stay ties, buffers left to torch are computed, and the
    timings reach `stats`."""
    import initc.torch as it
    from conftest import assert_same_bits

    tp = it.trace(_tied())
    rt = CpuRuntime()
    stats: dict = {}
    model = it.materialize(_tied(), tp, seed=3, device="cuda:0", runtime=rt, stats=stats)
    (reqs,) = rt.requests
    assert [f for f, _, _ in reqs[0][1]] == [f for f, *_ in tp.program.params] and reqs[0][0] == 0
    assert model.head.weight is model.emb.weight and isinstance(model.emb.weight, torch.nn.Parameter)
    want = it.materialize(_tied(), tp, seed=3)
    for (n, a), (m, b) in zip(want.state_dict().items(), model.state_dict().items()):
        assert n == m
        assert_same_bits(b, a, n)
    assert float(model.scale[0]) == 2.0, "the buffer left to torch"
    assert set(stats) == {"compile", "load", "run", "handoff", "executables", "cache_hits"}


def test_the_torch_device_path_needs_a_meta_model():
    import initc.torch as it

    tp = it.trace(_tied())
    model = _tied().to_empty(device="cpu")
    with pytest.raises(D.InitcError, match="build the model on meta"):
        it.materialize(model, tp, device="cuda:0", runtime=CpuRuntime())
    with pytest.raises(D.InitcError, match="not supported"):
        it.materialize(_tied(), tp, device="xpu", runtime=CpuRuntime())


def test_compare_is_verifys_tolerance():
    import numpy as np

    a = np.array([1.0, -0.5, 1e-9, 3.0], np.float32)
    b = a.copy()
    b[1] = np.nextafter(b[1], np.float32(0))  # 1 ULP
    b[2] = 3e-9  # many ULPs, but within 2^-16 of the largest magnitude
    assert D.compare(a.view(np.uint8), b.view(np.uint8), "f32") == (2, 0)
    b[3] = 3.1
    assert D.compare(a.view(np.uint8), b.view(np.uint8), "f32") == (3, 1)
    x, y = np.array([1, 2], np.uint32), np.array([1, 3], np.uint32)
    assert D.compare(x.view(np.uint8), y.view(np.uint8), "u32") == (1, 1), "integers must be equal"
    with pytest.raises(D.InitcError):
        D.compare(x.view(np.uint8), y.view(np.uint8)[:4], "u32")
