"""initc.jax on 8 simulated XLA:CPU devices (a fresh process: XLA's device count is fixed at
JAX's first import)."""
import os
import subprocess
import sys

from conftest import ROOT


def test_sharded_jax_arrays_equal_the_unsharded_values_on_every_mesh():
    p = subprocess.run([sys.executable, os.path.join(ROOT, "python", "tests", "jax_worker.py"), ROOT], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]
    assert "initc.jax: all checks passed" in p.stdout
    assert p.stdout.count("ok ") == 10, p.stdout
