"""Sharding invariance under ``torchrun --nproc-per-node 4`` on gloo (see dist_worker.py):
Shard(0), Shard(1), a 2x2 mesh with [Shard(0), Shard(1)], FSDP2 ``fully_shard`` on meta, each
``full_tensor()`` equal to the unsharded values bit for bit, no collective while materializing,
and a Partial placement refused."""

from __future__ import annotations

import os
import subprocess
import sys


def test_sharding_invariance_on_4_ranks():
    here = os.path.dirname(os.path.abspath(__file__))
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "4", os.path.join(here, "dist_worker.py")], capture_output=True, text=True, timeout=600, env=env)
    ok = [l for l in r.stdout.splitlines() if l.startswith("ok ")]
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-6000:]
    assert ok == ["ok shard0", "ok shard1", "ok mesh2x2", "ok fsdp2", "ok fsdp2-device-path", "ok partial"], r.stdout
