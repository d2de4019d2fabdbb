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


def test_under_jax_distributed_each_process_makes_only_its_own_shards():
    """Two processes under jax.distributed (4 XLA:CPU devices each): see jax_dist_worker.py."""
    import socket

    with socket.socket() as s:  # a free port for JAX's coordinator
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    worker = os.path.join(ROOT, "python", "tests", "jax_dist_worker.py")
    procs = [subprocess.Popen([sys.executable, worker, ROOT, str(port), str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outs = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        outs.append((p.returncode, out, err))
    for i, (rc, out, err) in enumerate(outs):
        assert rc == 0, f"process {i}:\n{out[-3000:]}{err[-4000:]}"
        assert f"process {i} passed" in out, out
        assert out.count("ok ") == 3, out
