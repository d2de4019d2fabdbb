"""initc programs as sharded ``jax.Array``s.

:func:`materialize` gives every parameter of a program as a ``jax.Array`` with a
``NamedSharding`` on a ``jax.sharding.Mesh``. Only the shards of this process's addressable
devices are made, each once per distinct rectangle (replicas share it), and the array is
assembled with ``jax.make_array_from_single_device_arrays``. Under ``jax.distributed`` every
process calls it with the same arguments and makes only its own devices' shards: that is how
it scales past one host, on JAX's runtime, with nothing of initc's own between the processes.

Values are the program's (README "Key derivation"): the same bits for every mesh and every
PartitionSpec, equal to the unsharded values.

Where a shard is made: on a GPU mesh, by initc's device runtime on that GPU (its own PJRT
client on the plugin JAX uses), handed to JAX through DLPack without a copy
(``jax.dlpack.from_dlpack``); elsewhere (CPU devices, or ``backend="cpu"``) by initc's CPU
engine on the host, and only that shard is put on its device (``jax.device_put``).

Example::

    import jax, numpy as np
    from jax.sharding import Mesh, PartitionSpec as P
    import initc, initc.jax

    program = initc.Program.from_toml(open("examples/llama3_tiny.toml").read(), "examples/llama3_tiny.toml")
    mesh = Mesh(np.array(jax.devices()).reshape(-1), ("fsdp",))
    params = initc.jax.materialize(program, mesh, lambda fqn, shape: P("fsdp") if len(shape) == 2 else P(), seed=0)
    params["tok_embeddings.weight"].sharding   # NamedSharding(mesh, P('fsdp'))
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence, Union

import numpy as np

from initc._native import InitcError, Program

Specs = Union[None, Mapping[str, Any], Callable[[str, Sequence[int]], Any]]

_NP_DTYPE = {"f32": np.float32, "f16": np.float16, "f64": np.float64, "u8": np.uint8, "u16": np.uint16,
             "u32": np.uint32, "u64": np.uint64, "i32": np.int32, "bool": np.bool_}


def _np_dtype(name: str):
    if name == "bf16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    if name not in _NP_DTYPE:
        raise InitcError(f"initc.jax: parameters of dtype {name} have no jax.Array form")
    return np.dtype(_NP_DTYPE[name])


def _spec_for(specs: Specs, fqn: str, shape: Sequence[int]):
    from jax.sharding import PartitionSpec

    if specs is None:
        return PartitionSpec()
    if callable(specs):
        return specs(fqn, tuple(shape))
    return specs.get(fqn, PartitionSpec())


def _region(index: tuple, shape: Sequence[int]) -> tuple[list[int], list[int]]:
    """A device's index (a tuple of slices) as a rectangle: global offset and local shape."""
    offset, local = [], []
    for sl, n in zip(index, shape):
        start, stop, step = sl.indices(n)
        if step != 1:
            raise InitcError(f"initc.jax: a strided shard index {sl} is not a rectangle")
        offset.append(start)
        local.append(max(0, stop - start))
    return offset, local


def shard(program: Program, fqn: str, offset: Sequence[int], shape: Sequence[int], seed: int | None = None) -> np.ndarray:
    """The rectangle ``offset``/``shape`` of parameter ``fqn`` as a numpy array (CPU engine)."""
    dtype = next((d for f, d, _, _ in program.params if f == fqn), None)
    if dtype is None:
        raise InitcError(f"initc.jax: the program has no parameter `{fqn}`")
    return _fill(program, fqn, dtype, offset, shape, seed)


def _fill(program: Program, fqn: str, dtype: str, offset: Sequence[int], shape: Sequence[int], seed: int | None) -> np.ndarray:
    out = np.empty(tuple(shape), _np_dtype(dtype))
    if out.size:
        program.materialize_into(fqn, out.reshape(-1).view(np.uint8), seed, list(offset), list(shape))
    return out


def materialize(program: Program, mesh, specs: Specs = None, seed: int | None = None, nested: bool = False, *,
                backend: str = "auto", runtime=None, batch: int | None = None, stats: dict | None = None) -> dict:
    """Every parameter of ``program`` as a ``jax.Array`` sharded over ``mesh``.

    ``specs`` gives each parameter's ``PartitionSpec``: a mapping from FQN (missing FQNs are
    replicated), a callable ``(fqn, shape) -> PartitionSpec``, or None (all replicated).
    ``seed`` (u64) overrides the program's seed. Returns ``{fqn: jax.Array}`` in program order,
    or with ``nested=True`` a nested dict split at the dots of the FQNs (a Flax-style pytree).

    ``backend``: ``"device"`` makes every shard on its GPU with initc's device runtime and hands
    it to JAX through DLPack (no copy); ``"cpu"`` computes shards with the CPU engine and
    ``device_put``s them; ``"auto"`` (default) is ``"device"`` when the mesh's devices are GPUs.
    ``runtime`` is an :class:`initc.device.Runtime` (default :func:`initc.device.runtime` over
    the mesh's GPUs); ``batch`` caps its launches per PJRT execute. Sharding never changes
    a bit. ``"cpu"`` gives the CPU engine's values (XLA:CPU's bits); ``"device"`` in JAX mode
    gives the JAX expression's bits on that GPU, whose f32 elements may differ from the CPU
    engine's in their last bits (XLA:GPU's FMAs; :func:`initc.device.compare`'s tolerance). A ``stats`` dict receives the device backend's timings in
    seconds: ``compile``, ``load``, ``run`` (the device runtime's) and ``handoff`` (DLPack); and
    ``executables`` (distinct programs) and ``cache_hits`` (of them, loaded from
    ``INITC_COMPILE_CACHE=DIR``).
    """
    import jax
    from jax.sharding import NamedSharding

    if backend not in ("auto", "device", "cpu"):
        raise InitcError(f"initc.jax: backend must be 'auto', 'device' or 'cpu', got {backend!r}")
    plan = []
    for fqn, dtype, shape, _ in program.params:
        shape = tuple(shape)
        spec = _spec_for(specs, fqn, shape)
        _check_spec(fqn, shape, spec, mesh)
        try:
            sharding = NamedSharding(mesh, spec)
            indices = sharding.addressable_devices_indices_map(shape)
        except Exception as e:  # what JAX refuses beyond _check_spec
            raise InitcError(f"initc.jax: parameter `{fqn}` {list(shape)}: {spec} on mesh {dict(mesh.shape)}: {e}") from e
        plan.append((fqn, dtype, shape, sharding, [(d, *_region(i, shape)) for d, i in indices.items()]))
    devices = [d for *_, places in plan for d, _, _ in places]
    on_gpu = bool(devices) and all(d.platform == "gpu" for d in devices)
    if backend == "device" and not on_gpu:
        raise InitcError(f"initc.jax: backend='device' needs a mesh of GPUs; this one has {sorted({d.platform for d in devices})}")
    use_device = backend == "device" or (backend == "auto" and on_gpu)
    shards = _device_shards(program, plan, seed, runtime, batch, stats) if use_device else None
    out: dict = {}
    for k, (fqn, dtype, shape, sharding, places) in enumerate(plan):
        made: dict = {}
        arrays = []
        for device, offset, local in places:
            if shards is not None:
                arrays.append(shards[(k, device.id)])
                continue
            key = (tuple(offset), tuple(local))
            if key not in made:
                made[key] = _fill(program, fqn, dtype, offset, local, seed)
            arrays.append(jax.device_put(made[key], device))
        try:
            out[fqn] = jax.make_array_from_single_device_arrays(shape, sharding, arrays)
        except Exception as e:
            raise InitcError(f"initc.jax: parameter `{fqn}` {list(shape)} with {sharding.spec}: {e}") from e
    return _nest(out) if nested else out


def _device_shards(program: Program, plan, seed, runtime, batch, stats) -> dict:
    """Every addressable shard made on its own GPU by initc's device runtime, as a
    single-device ``jax.Array`` over initc's buffer (DLPack): ``{(param index, device id): array}``."""
    import jax
    import initc.device as D

    ordinals = sorted({d.local_hardware_id for *_, places in plan for d, _, _ in places})
    rt = runtime if runtime is not None else D.runtime(visible_devices=ordinals)
    per_device: dict = {}
    for k, (fqn, _dtype, _shape, _sharding, places) in enumerate(plan):
        for device, offset, local in places:
            per_device.setdefault(device, []).append((k, fqn, offset, local))
    jax_devices = list(per_device)
    requests = [(D.device_index(rt, d.local_hardware_id), [(fqn, off, loc) for _, fqn, off, loc in per_device[d]]) for d in jax_devices]
    arrays, timings = rt.materialize(program, requests, seed, batch)
    t0 = time.perf_counter()
    out = {}
    for d, made in zip(jax_devices, arrays):
        for (k, fqn, _off, _loc), arr in zip(per_device[d], made):
            x = jax.dlpack.from_dlpack(arr)
            if x.devices() != {d}:
                raise InitcError(f"initc.jax: `{fqn}` came back from DLPack on {x.devices()}, not on {d}")
            out[(k, d.id)] = x
    if stats is not None:
        stats.update(timings, handoff=time.perf_counter() - t0)
    return out


def _check_spec(fqn: str, shape: tuple, spec, mesh) -> None:
    """initc's sharding rules, which JAX does not all enforce: a spec no longer than the rank
    (JAX ignores extra trailing entries) and dims divisible by their axes (no padded shards)."""
    entries = tuple(spec)
    if len(entries) > len(shape):
        raise InitcError(f"initc.jax: parameter `{fqn}` {list(shape)}: PartitionSpec {spec} has {len(entries)} entries for rank {len(shape)}")
    for d, e in enumerate(entries):
        axes = () if e is None else (e,) if isinstance(e, str) else tuple(e)
        for a in axes:
            if a not in mesh.shape:
                raise InitcError(f"initc.jax: parameter `{fqn}`: mesh axis `{a}` of {spec} is not in the mesh {dict(mesh.shape)}")
        n = int(np.prod([mesh.shape[a] for a in axes])) if axes else 1
        if shape[d] % n:
            raise InitcError(f"initc.jax: parameter `{fqn}` {list(shape)}: dim {d} (size {shape[d]}) is not divisible by {'x'.join(axes)} = {n}")


def _nest(flat: dict) -> dict:
    tree: dict = {}
    for fqn, v in flat.items():
        *path, leaf = fqn.split(".")
        node = tree
        for p in path:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise InitcError(f"initc.jax: `{fqn}` nests below another parameter; use nested=False")
        node[leaf] = v
    return tree
