"""Run by test_jax.py in a fresh process with 8 simulated XLA:CPU devices: initc.jax.materialize
on several meshes and PartitionSpecs equals the unsharded values bit for bit, makes each
distinct shard once, and places every shard on its own device."""
import os
import sys

os.environ["JAX_PLATFORMS"] = "cpu"
os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: E402

import initc  # noqa: E402
import initc.jax as ij  # noqa: E402

ROOT = sys.argv[1]
assert len(jax.devices()) == 8, jax.devices()
src = os.path.join(ROOT, "examples", "llama3_tiny.toml")
program = initc.Program.from_toml(open(src).read(), src)
mixed = initc.Program.from_toml(open(os.path.join(ROOT, "examples", "mlp.toml")).read(), "mlp.toml")  # f32, bf16, f16
seed = 2**40 + 3


def bits(a):
    a = np.asarray(a)
    return a.reshape(-1).view(np.uint8)


devs = np.array(jax.devices())
cases = [
    (Mesh(devs, ("fsdp",)), lambda f, s: P("fsdp") if len(s) == 2 else P()),
    (Mesh(devs.reshape(4, 2), ("fsdp", "tp")), lambda f, s: P("tp", "fsdp") if len(s) == 2 else P()),
    (Mesh(devs.reshape(4, 2), ("fsdp", "tp")), lambda f, s: P(("fsdp", "tp")) if len(s) == 2 else P("tp")),
    (Mesh(devs.reshape(2, 2, 2), ("dp", "fsdp", "tp")), lambda f, s: P("fsdp", "tp") if len(s) == 2 else P()),
    (Mesh(devs.reshape(2, 4), ("dp", "tp")), None),  # all replicated
]
for prog in (program, mixed):
    full = {f: ij.shard(prog, f, [0] * len(s), s, seed) for f, _, s, _ in prog.params}
    for mesh, specs in cases:
        if prog is mixed and specs is not None:
            specs = (lambda sp: (lambda f, s: sp(f, s) if all(d % 8 == 0 for d in s) else P()))(specs)
        arrays = ij.materialize(prog, mesh, specs, seed=seed)
        assert list(arrays) == [p[0] for p in prog.params], "program order"
        for fqn, a in arrays.items():
            assert isinstance(a.sharding, NamedSharding) and a.sharding.mesh == mesh, fqn
            assert a.dtype == full[fqn].dtype and a.shape == full[fqn].shape, (fqn, a.dtype, a.shape)
            assert (bits(a) == bits(full[fqn])).all(), f"{fqn} on {mesh.shape} {a.sharding.spec}: values differ from the unsharded run"
            for s in a.addressable_shards:  # each shard is on its device and is its slice
                assert (bits(s.data) == bits(full[fqn][s.index])).all(), (fqn, s.device)
                assert s.data.devices() == {s.device}
        print(f"ok {prog.name} mesh {dict(mesh.shape)}: {len(arrays)} arrays equal the unsharded values")

# a different seed gives different values; the program's own seed is the default
a0 = ij.materialize(program, Mesh(devs, ("fsdp",)))["tok_embeddings.weight"]
a1 = ij.materialize(program, Mesh(devs, ("fsdp",)), seed=program.seed + 1)["tok_embeddings.weight"]
assert (bits(a0) == bits(ij.shard(program, "tok_embeddings.weight", [0, 0], [1000, 256]))).all()
assert not (bits(a0) == bits(a1)).all()
# nested pytree and clear errors
tree = ij.materialize(program, Mesh(devs, ("fsdp",)), None, nested=True)
assert tree["layers"]["0"]["attention"]["wq"]["weight"].shape == (256, 256)
for bad, needle in [(lambda f, s: P("nope"), "mesh axis `nope`"), (lambda f, s: P("fsdp", None, None), "3 entries for rank"),
                    ({"head.weight": P("fsdp")}, "`head.weight` [10, 32]: dim 0 (size 10) is not divisible by fsdp = 8"),
                    ({"norm.weight": P("fsdp")}, None)]:
    prog = mixed if "head.weight" in str(needle) else program
    if needle is None:  # norm.weight [256] over fsdp=8 divides: fine
        ij.materialize(prog, Mesh(devs, ("fsdp",)), bad)
        continue
    try:
        ij.materialize(prog, Mesh(devs, ("fsdp",)), bad)
        raise AssertionError("expected an error")
    except initc.InitcError as e:
        assert needle in str(e), str(e)
# the device backend needs GPUs; an unknown backend is refused
for backend, needle in [("device", "needs a mesh of GPUs"), ("tpu", "backend must be")]:
    try:
        ij.materialize(program, Mesh(devs, ("fsdp",)), None, backend=backend)
        raise AssertionError(f"backend={backend!r} was accepted")
    except initc.InitcError as e:
        assert needle in str(e), str(e)
stats: dict = {}
ij.materialize(program, Mesh(devs, ("fsdp",)), None, stats=stats)  # "auto" on CPU devices: the CPU engine
assert stats == {}, stats
print("initc.jax: all checks passed")
