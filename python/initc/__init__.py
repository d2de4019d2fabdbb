"""initc: sharding-invariant, ``jax.random``-exact model initialization.

Every element of every parameter is a pure function of (seed, parameter FQN, initializer,
global index); see the repository README for the key derivation.

- :class:`Tracer` builds an init program (initc's IR) op by op.
- :class:`Program` is a verified program: ``save``/``load`` as ``.txt`` (text IR) or ``.pb``
  (protobuf), which the ``initc`` CLI reads, and ``materialize_into`` (the CPU engine) writes any
  rectangle of a parameter into a caller's buffer.
- :mod:`initc.torch` captures a PyTorch module's initialization into a Program and fills the
  module (or its DTensor shards) in place.
- :mod:`initc.jax` gives a Program's parameters as ``jax.Array``s sharded over a
  ``jax.sharding.Mesh``, each process making only its addressable devices' shards.
- :mod:`initc.device` is initc's device runtime (its own PJRT client): shards made on a GPU and
  handed to torch or JAX through DLPack without a copy; ``initc.torch.materialize(...,
  device="cuda")`` and ``initc.jax.materialize`` on a GPU mesh use it.
- :mod:`initc.torchax` gives a torch model's parameters as torchax tensors over sharded
  ``jax.Array``s, in torchax's ``initialize_model_sharded`` call shape.
"""

from initc._native import InitcError, Program, Tracer, fqn_fold_data

__all__ = ["InitcError", "Program", "Tracer", "fqn_fold_data"]
