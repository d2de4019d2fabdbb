"""initc's device runtime from Python on a GPU (torch CUDA and JAX in one fresh process:
device_worker.py). Skips where there is no CUDA device or no PJRT plugin (CI)."""
import os
import subprocess
import sys

import pytest
import torch

import initc.device as D
from conftest import ROOT


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
