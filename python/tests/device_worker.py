"""Run by test_device.py in a fresh process on a machine with a GPU and a PJRT plugin: torch CUDA
and JAX in one process, each taking initc's device buffers over through DLPack.

What the GPU values are checked against (docs/DEVICE_RUNTIME.md): in JAX mode, bit for bit the
initializer's JAX expression under jax.jit on the same GPU; in every mode, the CPU engine within
`initc run --verify`'s tolerance (XLA:GPU contracts `x * scale + min` into one FMA, so an f32
uniform with arbitrary bounds can differ from XLA:CPU and the CPU engine by an ULP; JAX's own
values differ between its CPU and GPU backends the same way).

Checks (each prints `ok NAME` or raises):
- initc.torch.materialize(device="cuda") equals JAX on the GPU / the CPU engine as above (plain
  modules with ties and 16-bit parameters; torchtitan's Llama3 when it imports), rng jax and fast;
- DLPack: device, one hand-over per array, refused dl_device/stream 0/copy=True (the array stays
  available), legacy and versioned capsules, an unconsumed capsule frees its buffer, the
  consumer's tensor outlives the Runtime object, zero copy (torch's and JAX's pointers are
  initc's);
- initc.jax.materialize on the GPU mesh: JAX on the GPU / the CPU engine as above, the same
  shardings as backend="cpu";
- initc.torchax (when torchax imports): torchax tensors over the same jax.Arrays.
"""
import ctypes
import gc
import os
import sys

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # torch, JAX and initc share the GPU

import numpy as np
import torch
from torch import nn

import initc
import initc.device as D
import initc.torch as it

ROOT = sys.argv[1]
assert torch.cuda.is_available(), "no CUDA device"
assert D.find_plugin(), "no PJRT plugin"
sys.path.insert(0, os.path.join(ROOT, "tools", "oracle"))
import jax  # noqa: E402
from test_jax_compare import DTYPES, expr, param_key, raw  # noqa: E402

_jitted: dict = {}


def jax_bits(init, shape, dtype, seed, fqn):
    """The initializer's JAX expression under jax.jit on the GPU (tools/oracle/test_jax_compare.py)."""
    k = (init, tuple(shape), dtype)
    if k not in _jitted:
        _jitted[k] = jax.jit(expr(init, tuple(shape), DTYPES[dtype]))
    return np.frombuffer(raw(_jitted[k](param_key(seed, fqn))), np.uint8)


def check_values(prog, fqn, dtype, shape, init, seed, got, what):
    """`got` (bytes of the whole tensor from the GPU) against JAX on the GPU (JAX mode; not for
    assembled parameters, whose init string names their parts' initializer) and the CPU engine."""
    cpu = np.empty(got.size, np.uint8)
    prog.materialize_into(fqn, cpu, seed)
    if prog.rng == "jax" and fqn not in prog.fused:
        assert np.array_equal(got, jax_bits(init, shape, dtype, seed, fqn)), f"{what}: `{fqn}` ({init}) differs from JAX on the same GPU"
    differ, fail = D.compare(got, cpu, dtype)
    assert fail == 0, f"{what}: `{fqn}`: {fail} elements beyond --verify's tolerance of the CPU engine"
    return differ


def bits(t):
    t = t.detach().contiguous().cpu()
    return t.reshape(-1).view(torch.uint8).numpy() if t.numel() else np.zeros(0, np.uint8)


def ok(name):
    print("ok", name, flush=True)


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(300, 48)
        self.a = nn.Linear(48, 96)
        self.b = nn.Linear(96, 48, dtype=torch.bfloat16)
        self.c = nn.Linear(48, 32, bias=False, dtype=torch.float16)
        self.head = nn.Linear(48, 300, bias=False)
        self.head.weight = self.emb.weight


def build_tied():
    with torch.device("meta"):
        return Tied()


WORST: dict = {}


def compare_modules(make, name, rng):
    tp = it.trace(make(), rng=rng)
    gpu = it.materialize(make(), tp, seed=7, device="cuda")
    state = gpu.state_dict()
    for fqn, dt, shape, init in tp.program.params:
        b = state[fqn]
        assert b.device.type == "cuda", (fqn, b.device)
        d = check_values(tp.program, fqn, dt, shape, init, 7, bits(b), f"{name} {rng}")
        WORST[(name, rng, dt)] = WORST.get((name, rng, dt), 0) + d
    for p in gpu.parameters():
        assert p.is_leaf and p.device.type == "cuda"
    return gpu


# ---- torch ----
for rng in ("jax", "fast"):
    g = compare_modules(build_tied, "tied", rng)
    assert g.head.weight is g.emb.weight, "the tie is lost"
ok("torch_plain_modules_equal_jax_on_gpu")

try:
    from titan_models import tiny_config  # python/tests

    have_titan = True
except Exception as e:  # torchtitan 0.3.0 may not import on the device's torch
    print("SKIPPED torchtitan:", type(e).__name__, str(e)[:200])
    have_titan = False
sys.path.insert(0, os.path.join(ROOT, "benches", "anchors"))
from titan_llama3 import Llama3  # noqa: E402  torchtitan 0.3.0's parameters and init (checked in CI)


def replica(dtype=torch.float32):
    with torch.device("meta"):
        return Llama3(dim=64, n_layers=2, n_heads=8, n_kv_heads=2, vocab=128, ffn=192, max_seq_len=64).to(dtype)


for rng in ("jax", "fast"):
    for dt in (torch.float32, torch.bfloat16):
        g = compare_modules(lambda: replica(dt), f"torchtitan-0.3.0 replica {dt}", rng)
        assert g.freqs_cis.device.type == "cuda" and g.freqs_cis.abs().max() > 0, "the RoPE buffer was not computed"
ok("torch_fused_wqkv_assembled_on_gpu")
print("elements differing from the CPU engine (within tolerance):", {k: v for k, v in WORST.items() if v})

if have_titan:
    def titan():
        with torch.device("meta"):
            return tiny_config(n_kv_heads=4).build()
    for rng in ("jax", "fast"):
        compare_modules(titan, "torchtitan tiny", rng)
    ok("torch_torchtitan_equal_jax_on_gpu")

# ---- DLPack protocol ----
src = os.path.join(ROOT, "examples", "llama3_tiny.toml")
program = initc.Program.from_toml(open(src).read(), src)
params = [(f, s) for f, _, s, _ in program.params if len(s) == 2][:6]
rt = D.runtime()
assert rt.platform == "cuda", rt.platform
(arrays,), timings = rt.materialize(program, [(0, [(f, [0, 0], s) for f, s in params])], seed=3)
assert set(timings) == {"compile", "load", "run", "executables", "cache_hits"}, timings
ref = {f: torch.from_numpy(np.frombuffer(a.to_bytes(), np.uint8).copy()) for (f, _), a in zip(params, arrays)}
assert arrays[0].__dlpack_device__() == (2, 0), arrays[0].__dlpack_device__()

t0 = torch.from_dlpack(arrays[0])
assert t0.device.type == "cuda" and list(t0.shape) == params[0][1]
assert t0.data_ptr() == arrays[0].exported_pointer != 0, "torch's tensor is not at initc's address (a copy)"
try:
    torch.from_dlpack(arrays[0])
    raise AssertionError("a second hand-over was accepted")
except BufferError:
    pass
a1 = arrays[1]
for kwargs, exc in (({"dl_device": (1, 0)}, BufferError), ({"stream": 0}, initc.InitcError), ({"copy": True}, BufferError)):
    try:
        a1.__dlpack__(**kwargs)
        raise AssertionError(f"__dlpack__({kwargs}) was accepted")
    except exc:
        pass
    assert a1.available, f"a refused __dlpack__({kwargs}) took the buffer"
ok("dlpack_one_handover_and_refusals")

cap = a1.__dlpack__(stream=1)
name = ctypes.pythonapi.PyCapsule_GetName
name.restype, name.argtypes = ctypes.c_char_p, [ctypes.py_object]
assert name(cap) == b"dltensor", name(cap)
t1 = torch.utils.dlpack.from_dlpack(cap)
assert np.array_equal(bits(t1), ref[params[1][0]].numpy())
before = rt.memory_stats(0)["bytes_in_use"]
cap2 = arrays[2].__dlpack__(max_version=(1, 0))
assert name(cap2) == b"dltensor_versioned", name(cap2)
del cap2
gc.collect()
after = rt.memory_stats(0)["bytes_in_use"]
assert before - after >= arrays[2].nbytes, f"an unconsumed capsule kept its buffer ({before} -> {after} bytes in use)"
ok("dlpack_legacy_and_versioned_capsules")

# the consumer outlives the Runtime object and the DeviceArray
keep = torch.from_dlpack(arrays[3])
del arrays, rt
D._RUNTIMES.clear()
gc.collect()
torch.cuda.synchronize()
assert np.array_equal(bits(keep), ref[params[3][0]].numpy()), "the tensor changed after its Runtime was dropped"
assert np.array_equal(bits(t0), ref[params[0][0]].numpy())
del keep, t0, t1
gc.collect()
ok("dlpack_consumer_outlives_runtime")

# ---- JAX ----
import initc.jax as ij  # noqa: E402
from jax.sharding import Mesh, PartitionSpec as P  # noqa: E402

gpus = [d for d in jax.devices() if d.platform == "gpu"]
assert gpus, jax.devices()
mesh = Mesh(np.array(gpus[:1]), ("fsdp",))
mixed = initc.Program.from_toml(open(os.path.join(ROOT, "examples", "mlp.toml")).read(), "mlp.toml")
for prog in (program, mixed):
    on_gpu = ij.materialize(prog, mesh, lambda f, s: P("fsdp") if len(s) == 2 else P(), seed=11)
    on_cpu = ij.materialize(prog, mesh, lambda f, s: P("fsdp") if len(s) == 2 else P(), seed=11, backend="cpu")
    for f, dt, shape, init in prog.params:
        got = np.asarray(on_gpu[f]).reshape(-1).view(np.uint8)
        check_values(prog, f, dt, shape, init, 11, got, "initc.jax")
        assert on_gpu[f].sharding == on_cpu[f].sharding and list(on_gpu[f].devices())[0].platform == "gpu"
rt = D.runtime(visible_devices=[gpus[0].local_hardware_id])
(arrs,), _ = rt.materialize(program, [(0, [(params[0][0], [0, 0], params[0][1])])])
x = jax.dlpack.from_dlpack(arrs[0])
assert x.unsafe_buffer_pointer() == arrs[0].exported_pointer, "JAX copied the buffer"
ok("jax_arrays_equal_jax_on_gpu_zero_copy")

# torch and JAX hold initc buffers at once, in one process
tt = it.materialize(build_tied(), it.trace(build_tied()), seed=1, device="cuda")
assert float(np.asarray(x).astype(np.float32).std()) > 0 and tt.a.weight.device.type == "cuda"
ok("torch_and_jax_in_one_process")

# ---- the persistent compile cache (INITC_COMPILE_CACHE) ----
import tempfile  # noqa: E402

with tempfile.TemporaryDirectory() as cache_dir:
    os.environ["INITC_COMPILE_CACHE"] = cache_dir
    try:
        req = [(0, [(f, [0] * len(s), list(s)) for f, _, s, _ in mixed.params])]
        (first,), s1 = rt.materialize(mixed, req, 3)
        entries = [n for n in os.listdir(cache_dir) if n.endswith(".pjrt")]
        assert s1["executables"] > 0 and s1["cache_hits"] == 0 and len(entries) == s1["executables"], (s1, entries)
        (second,), s2 = rt.materialize(mixed, req, 3)
        assert s2["cache_hits"] == s2["executables"] == s1["executables"], (s1, s2)
        want = [bits(torch.from_dlpack(a)) for a in first]
        for a, w in zip(second, want):
            assert np.array_equal(bits(torch.from_dlpack(a)), w), f"`{a.fqn}`: a cached executable gave other values"
        # a damaged entry is a compile, not an error, and is written again
        with open(os.path.join(cache_dir, entries[0]), "wb") as f:
            f.write(b"not an executable")
        (third,), s3 = rt.materialize(mixed, req, 3)
        assert s3["cache_hits"] == s3["executables"] - 1, s3
        assert os.path.getsize(os.path.join(cache_dir, entries[0])) > 100, "the damaged entry was not replaced"
        for a, w in zip(third, want):
            assert np.array_equal(bits(torch.from_dlpack(a)), w), f"`{a.fqn}`: values after a damaged cache entry differ"
    finally:
        del os.environ["INITC_COMPILE_CACHE"]
ok(f"compile_cache_{s1['executables']}_executables_hit_equal_values")

# ---- torchax ----
try:
    import torchax  # noqa: F401
    import initc.torchax as itx
    from torchax.mesh_util import Mesh as TxMesh, SingleAxisSharder

    have_tx = True
except Exception as e:
    print("SKIPPED torchax:", type(e).__name__, str(e)[:200])
    have_tx = False
if have_tx:
    class Small(nn.Module):
        def __init__(self, d):
            super().__init__()
            self.a = nn.Linear(d, 2 * d)
            self.b = nn.Linear(2 * d, d, bias=False)

    txm = TxMesh(mesh, SingleAxisSharder("fsdp", 1, True))  # torchax 0.0.13's default sharder reads a missing attribute
    model = itx.initialize_model_sharded(Small, (64,), mesh=txm, seed=5)
    prog = it.trace(lambda: Small(64), seed=5)
    want = ij.materialize(prog.program, mesh, None, seed=5)
    for n, p in model.state_dict().items():
        arr = p._elem if hasattr(p, "_elem") else p.jax()
        assert np.array_equal(np.asarray(arr).reshape(-1).view(np.uint8), np.asarray(want[n]).reshape(-1).view(np.uint8)), n
    ok("torchax_tensors_equal_initc_jax")

print("initc.device: all checks passed")
