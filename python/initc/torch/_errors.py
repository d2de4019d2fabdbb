"""The errors of initc.torch. Each names the op or initializer, the tensor and the user's
``file:line``; all derive from :class:`initc.InitcError`."""

from __future__ import annotations

from initc._native import InitcError


class CaptureError(InitcError):
    """A capture cannot express what the init code does."""

    def __init__(self, message: str, where: str | None = None):
        self.where = where
        super().__init__(f"{message}\n  at {where}" if where else message)


class UnsupportedOpError(CaptureError):
    """An op initc has no equivalent for reached a parameter (or a view it cannot express)."""


class DataDependentError(CaptureError):
    """Init code needs a tensor's value (``.item()``, ``.tolist()``, ``nonzero``) while tracing."""


class UnsupportedInitError(CaptureError):
    """A ``torch.nn.init`` function initc does not implement (``orthogonal_``, ``sparse_``)."""


class UninitializedError(CaptureError):
    """A parameter (or part of one) is never written by the captured code."""


class ShardingError(InitcError):
    """A DTensor placement whose local shard is not one rectangle of the global tensor."""
