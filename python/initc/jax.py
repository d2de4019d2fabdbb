"""initc programs as sharded ``jax.Array``s.

:func:`materialize` gives every parameter of a program as a ``jax.Array`` with a
``NamedSharding`` on a ``jax.sharding.Mesh``. Only the shards of this process's addressable
devices are made, each once per distinct rectangle (replicas share it), and the array is
assembled with ``jax.make_array_from_single_device_arrays``. Under ``jax.distributed`` every
process calls it with the same arguments and makes only its own devices' shards: that is how
it scales past one host, on JAX's runtime, with nothing of initc's own between the processes.

Values are the program's (README "Key derivation"): the same bits for every mesh and every
PartitionSpec, equal to the unsharded values.

Today a shard is computed by initc's CPU engine on the host and put on its device
(``jax.device_put``); only that shard crosses to the device, never the whole parameter. Making
shards on the accelerator itself and handing them over without a copy is the device runtime's
DLPack path (not built yet).

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


def materialize(program: Program, mesh, specs: Specs = None, seed: int | None = None, nested: bool = False) -> dict:
    """Every parameter of ``program`` as a ``jax.Array`` sharded over ``mesh``.

    ``specs`` gives each parameter's ``PartitionSpec``: a mapping from FQN (missing FQNs are
    replicated), a callable ``(fqn, shape) -> PartitionSpec``, or None (all replicated).
    ``seed`` (u64) overrides the program's seed. Returns ``{fqn: jax.Array}`` in program order,
    or with ``nested=True`` a nested dict split at the dots of the FQNs (a Flax-style pytree).
    """
    import jax
    from jax.sharding import NamedSharding

    out: dict = {}
    for fqn, dtype, shape, _ in program.params:
        shape = tuple(shape)
        spec = _spec_for(specs, fqn, shape)
        _check_spec(fqn, shape, spec, mesh)
        try:
            sharding = NamedSharding(mesh, spec)
            indices = sharding.addressable_devices_indices_map(shape)
        except Exception as e:  # what JAX refuses beyond _check_spec
            raise InitcError(f"initc.jax: parameter `{fqn}` {list(shape)}: {spec} on mesh {dict(mesh.shape)}: {e}") from e
        made: dict = {}
        arrays = []
        for device, index in indices.items():
            offset, local = _region(index, shape)
            key = (tuple(offset), tuple(local))
            if key not in made:
                made[key] = _fill(program, fqn, dtype, offset, local, seed)
            arrays.append(jax.device_put(made[key], device))
        try:
            out[fqn] = jax.make_array_from_single_device_arrays(shape, sharding, arrays)
        except Exception as e:
            raise InitcError(f"initc.jax: parameter `{fqn}` {list(shape)} with {sharding.spec}: {e}") from e
    return _nest(out) if nested else out


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
