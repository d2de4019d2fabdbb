"""The capture: a TorchDispatchMode over meta tensors that records every write to every storage.

Each storage (``untyped_storage()``; a parameter, a buffer or a temporary) holds one symbolic
value (:class:`~initc.torch._expr.E`). Ops are run on the meta device for their metadata, and
their values are computed symbolically: view ops need nothing (a view is its storage plus
offset/sizes/strides); other ops read their inputs through their views, compute, and write
their outputs (in place through the written view). ``torch.nn.init.*`` functions are captured
whole, as initc initializers, by swapping their code objects for the duration of the capture
(``functools.partial(nn.init.trunc_normal_, std=0.02)`` holds the function object, so patching
the module attribute would not reach it).
"""

from __future__ import annotations

import inspect
import math
import os
import sys
import types
from typing import Any, Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

from initc.torch import _expr as X
from initc.torch._errors import CaptureError, DataDependentError, UnsupportedInitError, UnsupportedOpError

aten = torch.ops.aten

DTYPES = {
    torch.float32: "f32",
    torch.bfloat16: "bf16",
    torch.float16: "f16",
    torch.float64: "f64",
    torch.uint8: "u8",
    torch.int32: "i32",
    # torch's default integer dtype: initc has no i64; index arithmetic (arange) is done in i32
    # and such values only ever reach parameters through a cast to a float dtype.
    torch.int64: "i32",
    torch.bool: "bool",
}
_HALF = ("bf16", "f16")

_PKG_DIRS = tuple(os.path.dirname(p) + os.sep for p in (torch.__file__, os.path.dirname(__file__)))


def user_site() -> str:
    """``file:line`` of the innermost frame outside torch and initc (the user's code)."""
    f = sys._getframe(1)
    while f is not None:
        fn = f.f_code.co_filename
        if not fn.startswith(_PKG_DIRS) and not fn.startswith(("<frozen", "<initc")):
            return f"{fn}:{f.f_lineno}"
        f = f.f_back
    return "<unknown>"


def dtype_of(t: torch.Tensor) -> str | None:
    return DTYPES.get(t.dtype)


class Store:
    """A storage's value at its canonical shape (the shape of the tensor that created it)."""

    __slots__ = ("value", "canon", "tensor")

    def __init__(self, value: X.E, tensor: torch.Tensor):
        self.value = value
        self.canon = value.shape
        self.tensor = tensor  # keeps the storage alive, so its id is not reused


def storage_key(t: torch.Tensor) -> int:
    return t.untyped_storage()._cdata


class Capture:
    """The state of one capture: storages, names of the module's tensors, draws in order."""

    def __init__(self, names: dict[int, str] | None = None):
        self.stores: dict[int, Store] = {}
        self.names = names or {}  # storage key -> FQN (for messages while capturing)

    # ---- values of tensors ----

    def store(self, t: torch.Tensor) -> Store:
        k = storage_key(t)
        s = self.stores.get(k)
        if s is None:
            n = t.untyped_storage().nbytes() // max(t.element_size(), 1)
            dt = dtype_of(t) or "f32"
            if t.device.type == "meta":
                shape = tuple(t.shape) if t.is_contiguous() and t.storage_offset() == 0 and t.numel() == n else (n,)
                name = self.names.get(k)
                where = f"`{name}` before the capture" if name else "a tensor created before the capture"
                s = Store(X.uninit(shape, dt, where), t)
            else:
                s = Store(self._constant(t), t)
            self.stores[k] = s
        return s

    def _constant(self, t: torch.Tensor) -> X.E:
        """A real (non-meta) tensor used as an operand: a literal, when small."""
        dt = dtype_of(t) or "f32"
        base = torch.as_strided(t, (t.untyped_storage().nbytes() // max(t.element_size(), 1),), (1,), 0) if t.numel() else t.reshape(-1)
        if base.numel() > 4096 or dtype_of(t) is None:
            return X.opaque(tuple(base.shape), dt, "a real tensor operand", user_site(), "only small CPU tensors are copied into the program")
        vals = [float(v) for v in base.tolist()]
        if len(set(vals)) <= 1:
            return X.full(base.shape, dt, vals[0] if vals else 0.0)
        return X.concat([X.full([1], dt, v) for v in vals], 0)

    def value(self, t: torch.Tensor) -> X.E:
        s = self.store(t)
        try:
            v = X.read(s.value, t.storage_offset(), tuple(t.shape), tuple(t.stride()))
        except X.ViewError as e:
            raise UnsupportedOpError(f"reading a view of {self.describe(t)}: {e}", user_site()) from None
        dt = dtype_of(t) or v.dtype
        return X.convert(v, dt) if v.dtype != dt else v

    def assign(self, t: torch.Tensor, v: X.E) -> None:
        """Writes ``v`` (broadcast and cast as ``copy_`` does) through ``t``'s view."""
        s = self.store(t)
        shape = tuple(t.shape)
        v = X.broadcast_to(v, shape) if v.shape != shape else v
        v = X.convert(v, s.value.dtype)
        try:
            s.value = X.write(s.value, t.storage_offset(), shape, tuple(t.stride()), v)
        except X.ViewError as e:
            raise UnsupportedOpError(f"writing {self.describe(t)}: {e}", user_site()) from None

    def fresh(self, t: torch.Tensor, v: X.E) -> None:
        """Registers a newly allocated output tensor with value ``v``."""
        v = X.convert(X.broadcast_to(v, tuple(t.shape)), dtype_of(t) or v.dtype)
        k = storage_key(t)
        if t.storage_offset() == 0 and t.is_contiguous():
            self.stores[k] = Store(X.reshape(v, tuple(t.shape)), t)
        else:
            self.stores.pop(k, None)
            s = self.store(t)
            s.value = X.write(s.value, t.storage_offset(), tuple(t.shape), tuple(t.stride()), v)

    def describe(self, t: torch.Tensor) -> str:
        name = self.names.get(storage_key(t)) if t.device.type == "meta" else None
        return f"`{name}`" if name else f"a {tuple(t.shape)} {str(t.dtype).replace('torch.', '')} tensor"


# ---- op semantics ----

Handler = Callable[["CaptureMode", Any, tuple, dict, Any], "X.E | None"]
_OPS: dict[str, Handler] = {}


def _op(*names: str):
    def reg(f: Handler) -> Handler:
        for n in names:
            _OPS[n] = f
        return f

    return reg


def _compute_dtype(dt: str) -> str:
    return "f32" if dt in _HALF else dt


class _Lit:
    """An operand whose value is already computed (``alpha * other`` of ``add``)."""

    def __init__(self, e: X.E):
        self.e = e


def _scalar_or_value(m: "CaptureMode", x: Any, shape, dtype: str) -> X.E:
    """An operand at the op's shape and compute dtype: a tensor's value, or a scalar splat."""
    if isinstance(x, _Lit):
        return X.convert(X.broadcast_to(x.e, shape), dtype)
    if isinstance(x, torch.Tensor):
        v = m.cap.value(x)
        return X.convert(X.broadcast_to(v, shape), dtype)
    if isinstance(x, bool):
        x = float(x)
    return X.full(shape, dtype, float(x))


def _elementwise(m: "CaptureMode", ir: str, name: str, operands: list, out: torch.Tensor, **attrs) -> X.E:
    """An elementwise op computed as torch computes it: in f32 for 16-bit floats, then rounded."""
    odt = dtype_of(out)
    shape = tuple(out.shape)
    cdt = _compute_dtype(odt)
    vals = [_scalar_or_value(m, x, shape, cdt) for x in operands]
    if ir in ("unary", "binary"):
        r = X.op(ir, vals, shape, cdt, name=name)
    else:
        r = X.op(ir, vals, shape, cdt, **attrs)
    return X.convert(r, odt)


def _binary(name):
    def h(m, func, args, kwargs, out):
        a, b = args[0], args[1]
        alpha = kwargs.get("alpha", args[2] if len(args) > 2 else 1)
        if alpha != 1:
            b = _mul_scalar(m, b, alpha, out)
        return _elementwise(m, "binary", name, [a, b], out)

    return h


def _mul_scalar(m, b, alpha, out):
    if isinstance(b, torch.Tensor):
        cdt = _compute_dtype(dtype_of(out))
        v = X.convert(X.broadcast_to(m.cap.value(b), tuple(out.shape)), cdt)
        return _Lit(X.op("binary", [v, X.full(v.shape, cdt, float(alpha))], v.shape, cdt, name="mul"))
    return b * alpha


for _n, _ir in [("add", "add"), ("sub", "sub"), ("mul", "mul"), ("div", "div"), ("pow", "pow"), ("maximum", "max"), ("minimum", "min")]:
    _OPS[_n] = _binary(_ir)


@_op("rsub")
def _rsub(m, func, args, kwargs, out):
    return _elementwise(m, "binary", "sub", [args[1], args[0]], out)


@_op("div")
def _div(m, func, args, kwargs, out):
    if kwargs.get("rounding_mode") is not None:
        raise _unsupported(m, func, args, f"division with rounding_mode={kwargs['rounding_mode']!r}")
    return _elementwise(m, "binary", "div", [args[0], args[1]], out)


for _n in ["neg", "abs", "sqrt", "rsqrt", "exp", "log"]:
    _OPS[_n] = (lambda name: lambda m, func, args, kwargs, out: _elementwise(m, "unary", name, [args[0]], out))(_n)


@_op("reciprocal")
def _recip(m, func, args, kwargs, out):
    return _elementwise(m, "binary", "div", [1.0, args[0]], out)


@_op("clamp", "clamp_min", "clamp_max")
def _clamp(m, func, args, kwargs, out):
    name = func.overloadpacket.__name__.rstrip("_")
    lo = kwargs.get("min", args[1] if len(args) > 1 else None)
    hi = kwargs.get("max", args[2] if len(args) > 2 else None)
    if name == "clamp_max":
        lo, hi = None, lo
    cdt = _compute_dtype(dtype_of(out))
    shape = tuple(out.shape)
    v = _scalar_or_value(m, args[0], shape, cdt)
    if lo is not None:
        v = X.op("binary", [v, _scalar_or_value(m, lo, shape, cdt)], shape, cdt, name="max")
    if hi is not None:
        v = X.op("binary", [v, _scalar_or_value(m, hi, shape, cdt)], shape, cdt, name="min")
    return X.convert(v, dtype_of(out))


for _n, _d in [("eq", "eq"), ("ne", "ne"), ("lt", "lt"), ("le", "le"), ("gt", "gt"), ("ge", "ge")]:
    def _cmp(m, func, args, kwargs, out, _d=_d):
        a, b = args[0], args[1]
        dts = [dtype_of(x) for x in (a, b) if isinstance(x, torch.Tensor)]
        cdt = "f32" if any(d in _HALF or d == "f32" for d in dts) else (dts[0] if dts else "f32")
        shape = tuple(out.shape)
        va, vb = _scalar_or_value(m, a, shape, cdt), _scalar_or_value(m, b, shape, cdt)
        return X.op("compare", [va, vb], shape, "bool", dir=_d)

    _OPS[_n] = _cmp


@_op("where")
def _where(m, func, args, kwargs, out):
    shape, odt = tuple(out.shape), dtype_of(out)
    p = _scalar_or_value(m, args[0], shape, "bool")
    return X.op("select", [p, _scalar_or_value(m, args[1], shape, odt), _scalar_or_value(m, args[2], shape, odt)], shape, odt)


@_op("logical_not", "bitwise_not")
def _not(m, func, args, kwargs, out):
    if dtype_of(out) != "bool":
        raise _unsupported(m, func, args, "bitwise_not of integers")
    shape = tuple(out.shape)
    v = _scalar_or_value(m, args[0], shape, "bool")
    return X.op("select", [v, X.full(shape, "bool", 0.0), X.full(shape, "bool", 1.0)], shape, "bool")


@_op("clone", "contiguous", "_to_copy", "to", "lift_fresh_copy", "_copy_from")
def _copy(m, func, args, kwargs, out):
    return m.cap.value(args[0])


@_op("copy")
def _copy_into(m, func, args, kwargs, out):  # copy_(self, src): the written value is src
    return m.cap.value(args[1]) if len(args) > 1 else m.cap.value(args[0])


@_op("fill")
def _fill(m, func, args, kwargs, out):
    return _scalar_or_value(m, args[1], tuple(out.shape), dtype_of(out))


@_op("zero")
def _zero(m, func, args, kwargs, out):
    return X.full(out.shape, dtype_of(out), 0.0)


@_op("zeros", "new_zeros", "zeros_like")
def _zeros(m, func, args, kwargs, out):
    return X.full(out.shape, dtype_of(out), 0.0)


@_op("ones", "new_ones", "ones_like")
def _ones(m, func, args, kwargs, out):
    return X.full(out.shape, dtype_of(out), 1.0)


@_op("full", "new_full", "full_like")
def _full(m, func, args, kwargs, out):
    """``full(size, fill_value)``, ``new_full(self, size, fill_value)``, ``full_like(self, fill_value)``."""
    pos = {"full": 1, "new_full": 2, "full_like": 1}[func.overloadpacket.__name__]
    v = args[pos] if len(args) > pos else kwargs["fill_value"]
    return _scalar_or_value(m, v, tuple(out.shape), dtype_of(out))


@_op("scalar_tensor")
def _scalar_tensor(m, func, args, kwargs, out):
    return X.full((), dtype_of(out), float(args[0]))


@_op("empty", "new_empty", "empty_like", "empty_strided", "new_empty_strided", "empty_permuted")
def _empty(m, func, args, kwargs, out):
    return X.uninit(tuple(out.shape), dtype_of(out), f"torch.{func.overloadpacket.__name__} at {user_site()}")


@_op("arange")
def _arange(m, func, args, kwargs, out):
    """``arange.default(end)``, ``arange.start(start, end)``, ``arange.start_step(start, end, step)``."""
    n = out.shape[0]
    ov = func._overloadname
    start = args[0] if ov in ("start", "start_step", "start_out") else 0
    step = (args[2] if len(args) > 2 else kwargs.get("step", 1)) if ov in ("start_step", "start_out") else 1
    odt = dtype_of(out)
    cdt = "f64" if odt in ("f32", "bf16", "f16", "f64") else odt
    i = X.E("iota", (), {"dim": 0}, (n,), cdt)
    if step != 1:
        i = X.op("binary", [i, X.full((n,), cdt, float(step))], (n,), cdt, name="mul")
    if start != 0:
        i = X.op("binary", [i, X.full((n,), cdt, float(start))], (n,), cdt, name="add")
    return X.convert(i, odt)


@_op("eye")
def _eye(m, func, args, kwargs, out):
    shape = tuple(out.shape)
    r = X.E("iota", (), {"dim": 0}, shape, "i32")
    c = X.E("iota", (), {"dim": 1}, shape, "i32")
    p = X.op("compare", [r, c], shape, "bool", dir="eq")
    odt = dtype_of(out)
    return X.op("select", [p, X.full(shape, odt, 1.0), X.full(shape, odt, 0.0)], shape, odt)


def _draw(kind, out, **attrs):
    """A raw draw into ``out``: in f32, rounded to a 16-bit dtype afterwards (never a 16-bit
    draw op: JAX's 16-bit transforms keep only 7 random bits)."""
    odt = dtype_of(out)
    ddt = "f64" if odt == "f64" and kind == "uniform" else "f32"
    return X.draw(kind, tuple(out.shape), ddt, **attrs), odt


def _affine(v: X.E, mean: float, std: float) -> X.E:
    if std != 1.0:
        v = X.op("binary", [v, X.full(v.shape, v.dtype, float(std))], v.shape, v.dtype, name="mul")
    if mean != 0.0:
        v = X.op("binary", [v, X.full(v.shape, v.dtype, float(mean))], v.shape, v.dtype, name="add")
    return v


@_op("normal")
def _normal(m, func, args, kwargs, out):
    if any(isinstance(x, torch.Tensor) for x in args[1:3]):
        raise _unsupported(m, func, args, "normal_ with tensor mean/std")
    mean = kwargs.get("mean", args[1] if len(args) > 1 else 0.0)
    std = kwargs.get("std", args[2] if len(args) > 2 else 1.0)
    d, odt = _draw("normal", out)
    return X.convert(_affine(d, float(mean), float(std)), odt)


@_op("uniform")
def _uniform(m, func, args, kwargs, out):
    lo = kwargs.get("from", args[1] if len(args) > 1 else 0.0)
    hi = kwargs.get("to", args[2] if len(args) > 2 else 1.0)
    d, odt = _draw("uniform", out, min=float(lo), max=float(hi))
    return X.convert(d, odt)


@_op("randn", "randn_like")
def _randn(m, func, args, kwargs, out):
    d, odt = _draw("normal", out)
    return X.convert(d, odt)


@_op("rand", "rand_like")
def _rand(m, func, args, kwargs, out):
    d, odt = _draw("uniform", out, min=0.0, max=1.0)
    return X.convert(d, odt)


@_op("cat")
def _cat(m, func, args, kwargs, out):
    ts = [t for t in args[0] if not (t.dim() == 1 and t.shape[0] == 0)]
    dim = kwargs.get("dim", args[1] if len(args) > 1 else 0)
    dim = dim % out.dim()
    odt = dtype_of(out)
    return X.concat([X.convert(m.cap.value(t), odt) for t in ts], dim)


@_op("stack")
def _stack(m, func, args, kwargs, out):
    dim = kwargs.get("dim", args[1] if len(args) > 1 else 0) % out.dim()
    odt = dtype_of(out)
    parts = []
    for t in args[0]:
        v = X.convert(m.cap.value(t), odt)
        s = list(v.shape)
        s.insert(dim, 1)
        parts.append(X.reshape(v, s))
    return X.concat(parts, dim)


@_op("expand_copy", "repeat")
def _repeat(m, func, args, kwargs, out):
    if func.overloadpacket.__name__ == "repeat":
        v = m.cap.value(args[0])
        reps = list(args[1])
        shape = [1] * (len(reps) - len(v.shape)) + list(v.shape)
        v = X.reshape(v, shape)
        # repeat = broadcast to [r0, s0, r1, s1, ...] then reshape
        inter = []
        for r, s in zip(reps, shape):
            inter += [r, s]
        b = X.E("broadcast", (v,), {"dims": tuple(range(1, 2 * len(shape), 2))}, inter, v.dtype) if not v.bad else v
        return X.reshape(b, out.shape)
    return X.broadcast_to(m.cap.value(args[0]), out.shape)


@_op("outer")
def _outer(m, func, args, kwargs, out):
    a, b = m.cap.value(args[0]), m.cap.value(args[1])
    shape = tuple(out.shape)
    odt = dtype_of(out)
    cdt = _compute_dtype(odt)
    va = X.E("broadcast", (X.convert(a, cdt),), {"dims": (0,)}, shape, cdt)
    vb = X.E("broadcast", (X.convert(b, cdt),), {"dims": (1,)}, shape, cdt)
    return X.convert(X.op("binary", [va, vb], shape, cdt, name="mul"), odt)


_DATA_DEPENDENT = {
    "_local_scalar_dense": "`.item()` (or `float()`/`int()`/`bool()`/`.tolist()` of a tensor)",
    "item": "`.item()`",
    "is_nonzero": "`bool()` of a tensor",
    "nonzero": "`nonzero`",
    "nonzero_static": "`nonzero`",
    "masked_select": "`masked_select`",
    "unique": "`unique`",
    "_unique2": "`unique`",
    "equal": "`torch.equal`",
    "allclose": "`allclose`",
    "_assert_async": "an assertion on tensor values",
}

_RANDOM_UNSUPPORTED = {"bernoulli", "exponential", "geometric", "log_normal", "cauchy", "random", "randint", "randint_like", "randperm", "multinomial", "normal_functional"}


def _unsupported(m: "CaptureMode", func, args, what: str | None = None) -> CaptureError:
    tensors = [t for t in tree_flatten(args)[0] if isinstance(t, torch.Tensor)]
    named = [m.cap.describe(t) for t in tensors if t.device.type == "meta" and m.cap.names.get(storage_key(t))]
    about = f" on {named[0]}" if named else ""
    return UnsupportedOpError(f"`{_opname(func)}`{about} is not supported by initc" + (f" ({what})" if what else ""), user_site())


def _opname(func) -> str:
    return f"aten.{func.overloadpacket.__name__}"


_WRITES: dict[Any, tuple] = {}


def _mutated(func, args, kwargs) -> list[torch.Tensor]:
    """The tensors an op writes in place (`self` of `mul_`, `out=`)."""
    w = _WRITES.get(func)
    if w is None:
        w = _WRITES[func] = tuple((i, a.name, a.kwarg_only) for i, a in enumerate(func._schema.arguments) if a.alias_info is not None and a.alias_info.is_write)
    outs = []
    for i, name, kwarg_only in w:
        v = kwargs.get(name) if kwarg_only or i >= len(args) else args[i]
        if isinstance(v, torch.Tensor):
            outs.append(v)
    return outs


def _leaves_meta(name: str, args, kwargs) -> bool:
    """Whether an op copies a meta tensor's values to a real device (they do not exist)."""
    if name == "_to_copy":
        dev = kwargs.get("device")
        return dev is not None and torch.device(dev).type != "meta" and args[0].device.type == "meta"
    if name in ("copy_", "_copy_from") and len(args) > 1 and isinstance(args[1], torch.Tensor):
        return args[0].device.type != "meta" and args[1].device.type == "meta"
    return False


class EagerDispatchMode(TorchDispatchMode):
    """A ``TorchDispatchMode`` whose ``__torch_dispatch__`` torch does not wrap in
    ``torch._disable_dynamo``. That wrapper imports ``torch._dynamo`` (and sympy) the first time
    any mode's op runs (0.7-6 s, by machine). initc's modes run eagerly, never under
    ``torch.compile``, so there is nothing for the wrapper to keep Dynamo out of;
    ``_should_skip_dynamo`` is torch's own switch for it (torch/utils/_python_dispatch.py). Some
    of torch's Python meta kernels (``cat``'s) make the same import on their first call, with or
    without a mode; a process that imports torchtitan or uses ``torch.compile`` has it already."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False


class CaptureMode(EagerDispatchMode):
    """Runs every op on meta and records its value (see the module docs)."""

    def __init__(self, cap: Capture):
        super().__init__()
        self.cap = cap

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        base = name[:-1] if name.endswith("_") and not name.startswith("_") else name
        if base in _DATA_DEPENDENT:
            tensors = [t for t in tree_flatten(args)[0] if isinstance(t, torch.Tensor)]
            about = f" of {self.cap.describe(tensors[0])}" if tensors else ""
            raise DataDependentError(f"{_DATA_DEPENDENT[base]}{about} needs a tensor's value while tracing; initc records init code without running it", user_site())
        if _leaves_meta(name, args, kwargs):
            tensors = [t for t in tree_flatten(args)[0] if isinstance(t, torch.Tensor) and t.device.type == "meta"]
            about = f" of {self.cap.describe(tensors[0])}" if tensors else ""
            raise DataDependentError(f"copying values{about} off the meta device (`.tolist()`, `.cpu()`, `.numpy()`) needs a tensor's value while tracing; initc records init code without running it", user_site())
        if base in _RANDOM_UNSUPPORTED:
            raise _unsupported(self, func, args, "no initc distribution for it: use normal_/uniform_ or an nn.init function")
        if func.is_view or name in ("detach", "alias", "lift_fresh", "set_") or base in ("_has_compatible_shallow_copy_type",):
            return func(*args, **kwargs)
        if (func.namespace, name) in (("prim", "device"), ("aten", "sym_size"), ("aten", "sym_stride"), ("aten", "sym_numel"), ("aten", "sym_storage_offset")):
            return func(*args, **kwargs)
        handler = _OPS.get(base)
        mutated = _mutated(func, args, kwargs)
        out = func(*args, **kwargs)
        if handler is None:
            if not mutated and not any(isinstance(o, torch.Tensor) for o in tree_flatten(out)[0]):
                return out  # a metadata query
            where = user_site()
            if mutated:
                # the written tensors hold an op initc cannot express: an error only if it
                # reaches a parameter (a RoPE table computed with `polar` stays torch's)
                for t in mutated:
                    self.cap.assign(t, X.opaque(tuple(t.shape), dtype_of(t) or "f32", _opname(func), where))
            else:
                for o in tree_flatten(out)[0]:
                    if isinstance(o, torch.Tensor):
                        self.cap.fresh(o, X.opaque(tuple(o.shape), dtype_of(o) or "f32", _opname(func), where))
            return out
        if isinstance(out, torch.Tensor):
            target = mutated[0] if mutated else out
            if dtype_of(target) is None:
                v = X.opaque(tuple(target.shape), "f32", _opname(func), user_site(), f"dtype {target.dtype} has no initc dtype")
            else:
                v = handler(self, func, args, kwargs, target)
            if mutated:
                self.cap.assign(target, v)
            else:
                self.cap.fresh(out, v)
            return out
        raise _unsupported(self, func, args, "an op with several outputs")


class Literals(torch.overrides.TorchFunctionMode):
    """``torch.tensor(data)`` / ``torch.as_tensor(data)`` under the meta device would drop the
    data: built on the CPU instead, they become a literal of the program (small ones only)."""

    def __init__(self, cap: Capture):
        super().__init__()
        self.cap = cap

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.tensor, torch.as_tensor) and args and not isinstance(args[0], torch.Tensor):
            dev = kwargs.get("device")
            if dev is None or torch.device(dev).type == "meta":
                cpu = func(*args, **{**kwargs, "device": "cpu"})
                with torch._C._DisableTorchDispatch():
                    out = torch.empty(cpu.shape, dtype=cpu.dtype, device="meta")
                self.cap.stores[storage_key(out)] = Store(self.cap._constant(cpu), out)
                return out
        return func(*args, **kwargs)


# ---- torch.nn.init: captured whole, as initc initializers ----

_INIT_FUNCS = ["uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_", "sparse_"]
_HOOK = "__initc_init_hook__"


def _init_spec(name: str, a: dict) -> dict | float:
    """The initc initializer of an nn.init call (a float for constant fills)."""
    if name == "uniform_":
        return {"kind": "uniform", "a": float(a["a"]), "b": float(a["b"])}
    if name == "normal_":
        return {"kind": "normal", "mean": float(a["mean"]), "std": float(a["std"])}
    if name == "trunc_normal_":
        return {"kind": "trunc_normal", "mean": float(a["mean"]), "std": float(a["std"]), "a": float(a["a"]), "b": float(a["b"])}
    if name == "constant_":
        return float(a["val"])
    if name == "ones_":
        return 1.0
    if name == "zeros_":
        return 0.0
    if name in ("xavier_uniform_", "xavier_normal_"):
        return {"kind": name[:-1], "gain": float(a["gain"])}
    if name in ("kaiming_uniform_", "kaiming_normal_"):
        return {"kind": name[:-1], "a": float(a["a"]), "mode": a["mode"], "nonlinearity": a["nonlinearity"]}
    raise KeyError(name)


def _template(f: types.FunctionType, name: str) -> types.CodeType:
    """A code object with ``f``'s signature that calls the hook with its arguments."""
    parts, seen_kwonly = [], False
    for p in inspect.signature(f).parameters.values():
        if p.kind == p.KEYWORD_ONLY and not seen_kwonly:
            parts.append("*")
            seen_kwonly = True
        if p.kind == p.VAR_POSITIONAL:
            parts.append("*" + p.name)
            seen_kwonly = True
        elif p.kind == p.VAR_KEYWORD:
            parts.append("**" + p.name)
        else:
            parts.append(p.name)
        if p.kind == p.POSITIONAL_ONLY:
            pass
    src = f"def {f.__name__}({', '.join(parts)}):\n    return {_HOOK}({name!r}, locals())\n"
    ns: dict[str, Any] = {}
    exec(compile(src, f"<initc capture of torch.nn.init.{name}>", "exec"), ns)
    return ns[f.__name__].__code__


class InitHooks:
    """Swaps the code of ``torch.nn.init``'s functions so calls reach ``hook`` (restored on exit)."""

    def __init__(self, hook: Callable[[str, dict, Callable], Any]):
        self.hook = hook
        self.saved: dict[str, types.CodeType] = {}

    def __enter__(self):
        mod = torch.nn.init
        originals = {}
        for n in _INIT_FUNCS:
            f = getattr(mod, n)
            originals[n] = types.FunctionType(f.__code__, f.__globals__, n, f.__defaults__, f.__closure__)
            originals[n].__kwdefaults__ = f.__kwdefaults__
            self.saved[n] = f.__code__
        hook = self.hook

        def dispatch(name, arguments):
            return hook(name, arguments, originals[name])

        mod.__dict__[_HOOK] = dispatch
        for n in _INIT_FUNCS:
            getattr(mod, n).__code__ = _template(getattr(mod, n), n)
        return self

    def __exit__(self, *exc):
        mod = torch.nn.init
        for n, code in self.saved.items():
            getattr(mod, n).__code__ = code
        mod.__dict__.pop(_HOOK, None)
        return False


def init_hook(cap: Capture):
    def hook(name: str, a: dict, original: Callable):
        t = a.get("tensor")
        if not isinstance(t, torch.Tensor) or t.device.type != "meta":
            return original(**a) if "kwargs" not in a else original(*a.get("args", ()), **a)
        if name in ("orthogonal_", "sparse_"):
            what = "a QR decomposition" if name == "orthogonal_" else "a random choice of zeroed rows"
            raise UnsupportedInitError(f"torch.nn.init.{name} on {cap.describe(t)} needs {what}, which initc has no op for; use another initializer for it", user_site())
        if dtype_of(t) is None or dtype_of(t) in ("i32", "u8", "bool"):
            raise UnsupportedInitError(f"torch.nn.init.{name} on {cap.describe(t)} of dtype {t.dtype}: initializers need a float dtype", user_site())
        spec = _init_spec(name, a)
        if isinstance(spec, float):
            v = X.full(tuple(t.shape), dtype_of(t), spec)
        else:
            if name.startswith(("xavier", "kaiming")) and t.dim() < 2:
                raise UnsupportedInitError(f"torch.nn.init.{name} on {cap.describe(t)}: fan in/out needs at least 2 dimensions, shape is {list(t.shape)}", user_site())
            v = X.draw("init", tuple(t.shape), dtype_of(t), init=spec, where=user_site())
        cap.assign(t, v)
        return t

    return hook
