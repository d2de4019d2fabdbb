"""One process of a 2-process ``jax.distributed`` run on XLA:CPU (4 simulated devices each, 8 in
all), started by test_jax.py: ``jax_dist_worker.py ROOT COORDINATOR_PORT PROCESS_ID``.

Both processes call ``initc.jax.materialize`` with the same arguments on meshes that span both
processes. Checked in each process: it made exactly its own 4 devices' distinct shards (no other
process's, none twice); every addressable shard equals the unsharded values' slice bit for bit;
and, through JAX's own cross-process collective (``process_allgather``, gloo), the assembled
global array equals the unsharded values: the two processes agree with nothing of initc's own
between them."""
import os
import sys

os.environ["JAX_PLATFORMS"] = "cpu"
os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
import jax  # noqa: E402

ROOT, PORT, PID = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(coordinator_address=f"127.0.0.1:{PORT}", num_processes=2, process_id=PID)

import numpy as np  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402
from jax.sharding import Mesh, PartitionSpec as P  # noqa: E402

import initc  # noqa: E402
import initc.jax as ij  # noqa: E402

assert jax.process_count() == 2 and jax.process_index() == PID
assert len(jax.devices()) == 8 and len(jax.local_devices()) == 4, (jax.devices(), jax.local_devices())
src = os.path.join(ROOT, "examples", "llama3_tiny.toml")
program = initc.Program.from_toml(open(src).read(), src)
seed = 7
full = {f: ij.shard(program, f, [0] * len(s), s, seed) for f, _, s, _ in program.params}

# What this process computes: every rectangle _fill is asked for.
made: list = []
_fill = ij._fill


def counting_fill(prog, fqn, dtype, offset, shape, s):
    made.append((fqn, tuple(offset), tuple(shape)))
    return _fill(prog, fqn, dtype, offset, shape, s)


ij._fill = counting_fill


def bits(a):
    return np.asarray(a).reshape(-1).view(np.uint8)


devs = np.array(jax.devices())  # process 0's devices first, then process 1's
cases = [
    ("fsdp=8", Mesh(devs, ("fsdp",)), lambda f, s: P("fsdp") if len(s) == 2 else P()),
    ("fsdp=4 x tp=2", Mesh(devs.reshape(4, 2), ("fsdp", "tp")), lambda f, s: P("fsdp", "tp") if len(s) == 2 else P("tp")),
    ("dp=2 x fsdp=4", Mesh(devs.reshape(2, 4), ("dp", "fsdp")), lambda f, s: P(None, "fsdp") if len(s) == 2 else P()),
]
for name, mesh, specs in cases:
    made.clear()
    arrays = ij.materialize(program, mesh, specs, seed=seed)
    want = set()
    for fqn, a in arrays.items():
        assert a.shape == full[fqn].shape and a.dtype == full[fqn].dtype, fqn
        assert not a.is_fully_addressable, f"{fqn}: an array of a 2-process mesh is fully addressable here"
        assert len(a.addressable_shards) == 4, (fqn, len(a.addressable_shards))
        for s in a.addressable_shards:
            assert s.device.process_index == PID, (fqn, s.device)
            assert (bits(s.data) == bits(full[fqn][s.index])).all(), f"{name} {fqn} on {s.device}: differs from the unsharded slice"
            offset = tuple(sl.indices(n)[0] for sl, n in zip(s.index, a.shape))
            want.add((fqn, offset, tuple(s.data.shape)))
        whole = multihost_utils.process_allgather(a, tiled=True)
        assert (bits(whole) == bits(full[fqn])).all(), f"{name} {fqn}: the global array differs from the unsharded values"
    assert len(made) == len(set(made)), f"{name}: a rectangle was made twice in process {PID}"
    assert set(made) == want, f"{name}: process {PID} made {sorted(set(made) - want)[:3]} beyond its own shards, missed {sorted(want - set(made))[:3]}"
    print(f"ok {name} process {PID}: {len(made)} own shards made, {len(arrays)} global arrays equal the unsharded values", flush=True)
jax.distributed.shutdown()
print(f"initc.jax under jax.distributed: process {PID} passed", flush=True)
