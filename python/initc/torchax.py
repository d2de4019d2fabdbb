"""initc.torchax: a torch model's parameters as torchax tensors over sharded ``jax.Array``s.

The call shape is torchax's own ``Mesh.initialize_model_sharded(ModelClass, args, kwargs)``::

    import torchax, initc.torchax
    from torchax.mesh_util import Mesh

    mesh = Mesh.fsdp_mesh()                       # a 1-D mesh over every JAX device
    model = initc.torchax.initialize_model_sharded(MyModel, (config,), mesh=mesh, seed=0)
    # model's parameters are torchax Tensors; each wraps a jax.Array with a NamedSharding

torchax's version jits the constructor, so its values depend on the order of the constructor's
random ops and on JAX's compile (minutes for a large model). Here the constructor runs once on
meta under initc's capture (:func:`initc.torch.trace`), and every parameter is made by
:func:`initc.jax.materialize`: on GPU meshes each device makes its own shard (initc's device
runtime, DLPack), and the values follow the value contract (the same bits for every mesh and
sharder; README "Key derivation").
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from initc._native import InitcError

__all__ = ["initialize_model_sharded"]


def _torchax():
    try:
        import torchax
        import torchax.tensor
    except Exception as e:  # torchax 0.0.13 fails to import on torch >= 2.15 (aten.prod.dim_Dimname)
        raise InitcError(f"initc.torchax: torchax does not import here ({type(e).__name__}: {e})") from e
    return torchax


def initialize_model_sharded(model_class: Callable[..., torch.nn.Module], init_args: Sequence[Any] = (), init_kwargs: dict | None = None, *,
                             mesh, sharder: Callable[[str, torch.Tensor], Any] | None = None, seed: int | None = None,
                             rng: str = "jax", backend: str = "auto", env=None) -> torch.nn.Module:
    """Builds ``model_class(*init_args, **init_kwargs)`` with every parameter and buffer of its
    state dict as a torchax Tensor over a ``jax.Array`` sharded on ``mesh``.

    ``mesh`` is a ``torchax.mesh_util.Mesh`` (its sharder is the default) or a
    ``jax.sharding.Mesh``. ``sharder(name, tensor) -> PartitionSpec`` overrides it, as
    torchax's ``override_sharder`` does (``tensor`` is the meta tensor). ``rng`` is initc's
    random mode (``"jax"``: ``jax.random``-exact; ``"fast"``). ``backend`` as in
    :func:`initc.jax.materialize`. ``env`` is the torchax environment (default
    ``torchax.default_env()``).
    """
    import initc.jax as ij
    import initc.torch as it

    torchax = _torchax()
    env = env if env is not None else torchax.default_env()
    init_kwargs = init_kwargs or {}
    jax_mesh = getattr(mesh, "jax_mesh", mesh)
    sharder = sharder or getattr(mesh, "_sharder", None)
    if sharder is None:
        raise InitcError("initc.torchax: give a sharder (name, tensor) -> PartitionSpec, or a torchax Mesh that has one")

    def build():
        with torch.device("meta"), torchax.disable_temporarily():
            return model_class(*init_args, **init_kwargs)

    with torchax.disable_temporarily():
        tp = it.trace(build, seed=0 if seed is None else seed, rng=rng)
    model = tp.module
    states = model.state_dict(keep_vars=True)
    program_fqns = {f for f, *_ in tp.program.params}
    names = {f: [f] + tp.aliases.get(f, []) for f in program_fqns}
    missing = [n for n in states if n not in {a for v in names.values() for a in v}]
    if missing:
        raise InitcError(f"initc.torchax: state entries {missing[:5]} are not in the program (initc captures parameters and persistent buffers it can express)")
    specs = {f: sharder(f, states[f]) for f in program_fqns}
    arrays = ij.materialize(tp.program, jax_mesh, specs, seed, backend=backend)
    weights = {}
    for fqn, arr in arrays.items():
        t = torchax.tensor.Tensor(arr, env)
        for n in names[fqn]:
            if n in states:
                weights[n] = t
    model.load_state_dict(weights, assign=True)
    return model
