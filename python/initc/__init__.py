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
"""

from initc._native import InitcError, Program, Tracer, fqn_fold_data

__all__ = ["InitcError", "Program", "Tracer", "fqn_fold_data"]
