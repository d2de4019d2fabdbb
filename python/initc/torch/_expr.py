"""Symbolic tensor values of a capture, and the view algebra that reads and writes them.

A captured value is an :class:`E` node: a small expression DAG over initc's IR ops, plus
``draw`` (a random draw whose key is chosen only at the end, once it is known which tensor the
value ends in), ``opaque`` (an op initc cannot express; an error if it reaches a parameter) and
``uninit`` (memory never written, from ``torch.empty``). Every storage holds one value of its
*canonical* shape; a view (any offset/sizes/strides into that storage) is read and written with
slices, reshapes, transposes and concatenations of it, so writes through ``w[i]``, ``w[:, a:b]``,
``w.t()`` or ``w.view(...)`` are ordinary IR.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Sequence

_serial = itertools.count()


class E:
    """One node: ``op`` with tensor operands ``args``, attributes ``attrs``, result type."""

    __slots__ = ("op", "args", "attrs", "shape", "dtype", "serial", "__weakref__")

    def __init__(self, op: str, args: Sequence[E], attrs: dict[str, Any], shape: Sequence[int], dtype: str):
        self.op = op
        self.args = tuple(args)
        self.attrs = attrs
        self.shape = tuple(int(d) for d in shape)
        self.dtype = dtype
        self.serial = next(_serial)

    def __repr__(self) -> str:
        return f"E({self.op}, {self.dtype}{list(self.shape)}, #{self.serial})"

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def bad(self) -> bool:
        return self.op in ("opaque", "uninit")


def full(shape: Sequence[int], dtype: str, value: float) -> E:
    return E("full", (), {"value": float(value)}, shape, dtype)


def opaque(shape: Sequence[int], dtype: str, op: str, where: str, reason: str = "") -> E:
    return E("opaque", (), {"op": op, "where": where, "reason": reason}, shape, dtype)


def uninit(shape: Sequence[int], dtype: str, where: str) -> E:
    return E("uninit", (), {"where": where}, shape, dtype)


def draw(kind: str, shape: Sequence[int], dtype: str, **attrs: Any) -> E:
    """A random draw: ``kind`` is ``init`` (an initc initializer, ``attrs['init']``), ``normal``
    or ``uniform`` (``min``, ``max``). Its key is assigned when the capture is lowered."""
    return E("draw", (), dict(attrs, kind=kind), shape, dtype)


def first_bad(xs: Sequence[E]) -> E | None:
    for x in xs:
        if x.bad:
            return x
    return None


def _propagate(args: Sequence[E], shape: Sequence[int], dtype: str) -> E | None:
    """An op over an opaque or uninitialized operand is that operand's kind of value."""
    b = first_bad(args)
    if b is None:
        return None
    return E(b.op, (), b.attrs, shape, dtype)


# ---- constructors with local simplification (they keep the IR small, not just tidy) ----


def convert(x: E, dtype: str) -> E:
    if x.dtype == dtype:
        return x
    if x.bad:
        return E(x.op, (), x.attrs, x.shape, dtype)
    if x.op == "full":
        return full(x.shape, dtype, x.attrs["value"]) if dtype != "bool" else full(x.shape, dtype, float(x.attrs["value"] != 0))
    return E("convert", (x,), {}, x.shape, dtype)


def reshape(x: E, shape: Sequence[int]) -> E:
    shape = tuple(int(d) for d in shape)
    if x.shape == shape:
        return x
    if x.bad or x.op == "full":
        return E(x.op, (), x.attrs, shape, x.dtype)
    if x.op == "reshape":
        return reshape(x.args[0], shape)
    return E("reshape", (x,), {}, shape, x.dtype)


def transpose(x: E, perm: Sequence[int]) -> E:
    perm = tuple(perm)
    if perm == tuple(range(len(perm))):
        return x
    shape = [x.shape[p] for p in perm]
    if x.bad or x.op == "full":
        return E(x.op, (), x.attrs, shape, x.dtype)
    return E("transpose", (x,), {"perm": perm}, shape, x.dtype)


def slice_(x: E, start: Sequence[int], limit: Sequence[int]) -> E:
    start, limit = tuple(start), tuple(limit)
    shape = tuple(l - s for s, l in zip(start, limit))
    if start == (0,) * len(start) and limit == x.shape:
        return x
    if x.bad or x.op == "full":
        return E(x.op, (), x.attrs, shape, x.dtype)
    if x.op == "slice":
        s0 = x.attrs["start"]
        return slice_(x.args[0], [a + b for a, b in zip(s0, start)], [a + b for a, b in zip(s0, limit)])
    if x.op == "concat":
        # slice(concat(pieces)) = concat(slices of the pieces it overlaps): drops pieces that
        # the slice leaves out (an unwritten remainder, say) instead of keeping them alive.
        d = x.attrs["dim"]
        parts, pos = [], 0
        for p in x.args:
            lo, hi = max(start[d], pos), min(limit[d], pos + p.shape[d])
            if lo < hi:
                s = list(start)
                l = list(limit)
                s[d], l[d] = lo - pos, hi - pos
                parts.append(slice_(p, s, l))
            pos += p.shape[d]
        return concat(parts, d)
    return E("slice", (x,), {"start": start, "limit": limit}, shape, x.dtype)


def concat(xs: Sequence[E], dim: int) -> E:
    xs = [x for x in xs if x.shape[dim] > 0] or list(xs[:1])
    if len(xs) == 1:
        return xs[0]
    shape = list(xs[0].shape)
    shape[dim] = sum(x.shape[dim] for x in xs)
    return E("concat", xs, {"dim": dim}, shape, xs[0].dtype)


def broadcast_to(x: E, shape: Sequence[int]) -> E:
    """numpy/torch broadcasting of ``x`` to ``shape`` (trailing dims aligned)."""
    shape = tuple(int(d) for d in shape)
    if x.shape == shape:
        return x
    if x.bad or x.op == "full":
        return E(x.op, (), x.attrs, shape, x.dtype)
    lead = len(shape) - len(x.shape)
    return E("broadcast", (x,), {"dims": tuple(range(lead, len(shape)))}, shape, x.dtype)


def op(kind: str, args: Sequence[E], shape: Sequence[int], dtype: str, /, **attrs: Any) -> E:
    """An elementwise IR op (``unary``/``binary``/``compare``/``select``) over same-shaped args."""
    bad = _propagate(args, shape, dtype)
    return bad if bad is not None else E(kind, args, attrs, shape, dtype)


# ---- views: reading and writing an (offset, sizes, strides) view of a storage's value ----


def contiguous_strides(shape: Sequence[int]) -> tuple[int, ...]:
    st, acc = [], 1
    for d in reversed(shape):
        st.append(acc)
        acc *= d
    return tuple(reversed(st))


class ViewError(Exception):
    """A view initc cannot express (overlapping strides); the caller names the op and tensor."""


def _box(canon: Sequence[int], offset: int, sizes: Sequence[int], strides: Sequence[int]):
    """If the view is a box of the canonical array (each view dim walks one canonical dim with
    unit step), returns ``(start, limit, order)``: the box and, per non-unit view dim in view
    order, its canonical dim. Otherwise ``None``."""
    cs = contiguous_strides(canon)
    order, used = [], set()
    for n, s in zip(sizes, strides):
        if n == 1:
            continue
        d = next((k for k in range(len(canon)) if cs[k] == s and canon[k] != 1 and k not in used), None)
        if d is None:
            return None
        used.add(d)
        order.append(d)
    start, rem = [], offset
    for k in range(len(canon)):
        start.append(rem // cs[k] if cs[k] else 0)
        rem -= start[-1] * cs[k]
    if rem != 0:
        return None
    ext = [1] * len(canon)
    for d, n in zip(order, [n for n in sizes if n != 1]):
        ext[d] = n
    limit = [s + e for s, e in zip(start, ext)]
    if any(l > c for l, c in zip(limit, canon)) or any(s >= c and c > 0 for s, c in zip(start, canon)):
        return None
    return start, limit, order


def read(value: E, offset: int, sizes: Sequence[int], strides: Sequence[int]) -> E:
    """The value of a view of a storage whose canonical value is ``value``."""
    sizes, strides = tuple(sizes), tuple(strides)
    canon = value.shape
    numel = math.prod(sizes)
    if sizes == canon and (strides == contiguous_strides(canon) or numel <= 1) and offset == 0:
        return value
    if offset == 0 and numel == value.numel and strides == contiguous_strides(sizes):
        return reshape(value, sizes)
    if numel == 0:
        return full(sizes, value.dtype, 0.0)
    # expanded dims (stride 0) are read once and broadcast
    if any(s == 0 and n > 1 for n, s in zip(sizes, strides)):
        red = [1 if s == 0 else n for n, s in zip(sizes, strides)]
        base = read(value, offset, red, strides)
        return E("broadcast", (base,), {"dims": tuple(range(len(sizes)))}, sizes, value.dtype) if not base.bad else E(base.op, (), base.attrs, sizes, base.dtype)
    box = _box(canon, offset, sizes, strides)
    if box is not None:
        start, limit, order = box
        x = slice_(value, start, limit)
        kept = sorted(order)
        x = reshape(x, [x.shape[d] for d in kept])
        x = transpose(x, [kept.index(d) for d in order])
        return reshape(x, sizes)
    return _read_flat(value, offset, sizes, strides)


def _sorted_dims(sizes, strides):
    dims = [(n, s, i) for i, (n, s) in enumerate(zip(sizes, strides)) if n != 1]
    dims.sort(key=lambda t: -t[1])
    for (n0, s0, _), (n1, s1, _) in zip(dims, dims[1:]):
        if n1 * s1 > s0:
            raise ViewError(f"a view with sizes {list(sizes)} and strides {list(strides)} overlaps itself")
    return dims


def _read_flat(value: E, offset: int, sizes, strides) -> E:
    n_all = value.numel
    x = reshape(value, [n_all])
    dims = _sorted_dims(sizes, strides)
    if not dims:
        return reshape(slice_(x, [offset], [offset + 1]), sizes)
    length = dims[0][0] * dims[0][1]
    end = min(offset + length, n_all)
    w = slice_(x, [offset], [end])
    if end - offset < length:
        w = concat([w, full([length - (end - offset)], value.dtype, 0.0)], 0)
    prefix: list[int] = []
    cur = w
    for k, (n, s, _) in enumerate(dims):
        cur = slice_(cur, [0] * len(prefix) + [0], prefix + [n * s])
        cur = reshape(cur, prefix + [n, s])
        prefix = prefix + [n]
    cur = reshape(slice_(cur, [0] * (len(prefix) + 1), prefix + [1]), prefix)
    # sorted order -> view order (of the non-unit dims), then the unit dims back
    view_pos = [i for (_, _, i) in dims]
    perm = sorted(range(len(view_pos)), key=lambda j: view_pos[j])
    cur = transpose(cur, perm)
    return reshape(cur, sizes)


def write(value: E, offset: int, sizes: Sequence[int], strides: Sequence[int], new: E) -> E:
    """The canonical value after writing ``new`` (already of the view's shape and the storage's
    dtype) through the view."""
    sizes, strides = tuple(sizes), tuple(strides)
    canon = value.shape
    numel = math.prod(sizes)
    if numel == 0:
        return value
    if offset == 0 and numel == value.numel and (strides == contiguous_strides(sizes) or numel == 1):
        return reshape(new, canon)
    if any(s == 0 and n > 1 for n, s in zip(sizes, strides)):
        raise ViewError("a write through an expanded view (stride 0) writes one element several times")
    box = _box(canon, offset, sizes, strides)
    if box is not None:
        start, limit, order = box
        kept = sorted(order)
        v = reshape(new, [n for n in sizes if n != 1])
        v = transpose(v, [order.index(d) for d in kept])
        v = reshape(v, [l - s for s, l in zip(start, limit)])
        return _update_box(value, start, limit, v, 0)
    return _write_flat(value, offset, sizes, strides, new)


def _update_box(x: E, start, limit, v: E, d: int) -> E:
    if d == len(start):
        return v
    lo, hi = start[d], limit[d]
    full_lo = [0] * len(start)
    inner = slice_(x, [lo if k == d else 0 for k in range(len(start))], [hi if k == d else x.shape[k] for k in range(len(start))])
    inner = _update_box(inner, start, limit, v, d + 1)
    parts = []
    if lo > 0:
        parts.append(slice_(x, full_lo, [lo if k == d else x.shape[k] for k in range(len(start))]))
    parts.append(inner)
    if hi < x.shape[d]:
        parts.append(slice_(x, [hi if k == d else 0 for k in range(len(start))], list(x.shape)))
    return concat(parts, d)


def _write_flat(value: E, offset: int, sizes, strides, new: E) -> E:
    n_all = value.numel
    x = reshape(value, [n_all])
    dims = _sorted_dims(sizes, strides)
    order = [i for (_, _, i) in dims]
    v = reshape(new, [sizes[i] for i in sorted(order)])
    v = transpose(v, [sorted(order).index(i) for i in order])
    if not dims:
        return reshape(concat([slice_(x, [0], [offset]), reshape(new, [1]), slice_(x, [offset + 1], [n_all])], 0), value.shape)
    length = dims[0][0] * dims[0][1]
    end = min(offset + length, n_all)
    w = slice_(x, [offset], [end])
    if end - offset < length:
        w = concat([w, full([length - (end - offset)], value.dtype, 0.0)], 0)

    def upd(cur: E, k: int, prefix: list[int]) -> E:
        n, s, _ = dims[k]
        width = cur.shape[-1]
        win = slice_(cur, [0] * (len(prefix) + 1), prefix + [n * s])
        w2 = reshape(win, prefix + [n, s])
        if k == len(dims) - 1:
            col = reshape(v, prefix + [n, 1])
            rest = slice_(w2, [0] * len(prefix) + [0, 1], prefix + [n, s])
            w2 = concat([col, rest], len(prefix) + 1) if s > 1 else col
        else:
            w2 = upd(w2, k + 1, prefix + [n])
        win = reshape(w2, prefix + [n * s])
        if n * s < width:
            win = concat([win, slice_(cur, [0] * len(prefix) + [n * s], prefix + [width])], len(prefix))
        return win

    w = upd(w, 0, [])
    w = slice_(w, [0], [end - offset])
    return reshape(concat([slice_(x, [0], [offset]), w, slice_(x, [end], [n_all])], 0), value.shape)
