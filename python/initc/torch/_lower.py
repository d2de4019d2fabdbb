"""Lowering a capture to an initc program: key assignment and IR emission.

Keys (the README's derivation, applied to where each value *ends*): a draw is keyed by the FQN
of the first program tensor (in state-dict order) whose final value contains it. A tensor whose
value holds one draw uses its key ``fold_in(PRNGKey(seed), u32(SHA-256(fqn)))``; one holding
``n > 1`` draws (a fused weight drawn in pieces, a matrix whose rows are re-drawn) gives its
``i``-th draw in program order ``split(key, n)[i]``. Overwritten draws do not count.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from initc._native import Program, Tracer
from initc.torch import _expr as X
from initc.torch._errors import UninitializedError, UnsupportedOpError


@dataclass
class Root:
    fqn: str
    value: X.E
    dtype: str
    shape: tuple[int, ...]
    is_param: bool
    aliases: list[str] = field(default_factory=list)


def _walk(e: X.E):
    """Every node reachable from ``e`` (each once)."""
    seen, stack = set(), [e]
    while stack:
        x = stack.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        yield x
        stack.extend(x.args)


def first_bad(e: X.E) -> X.E | None:
    return next((x for x in _walk(e) if x.bad), None)


def bad_message(r: Root, b: X.E) -> Exception:
    kind = "parameter" if r.is_param else "buffer"
    if b.op == "uninit":
        return UninitializedError(f"{kind} `{r.fqn}` is not (fully) written by the init code: it still holds memory from {b.attrs['where']}", None)
    reason = f" ({b.attrs['reason']})" if b.attrs.get("reason") else ""
    return UnsupportedOpError(f"{kind} `{r.fqn}`: its value comes from `{b.attrs['op']}`, which initc does not support{reason}", b.attrs["where"])


class Lowering:
    def __init__(self, name: str, seed: int, rng: str):
        self.t = Tracer(name)
        self.t.set_seed(seed)
        if rng != "jax":
            self.t.set_rng_mode(rng)
        self.memo: dict[int, int] = {}
        self.owner: dict[int, tuple[str, int, int]] = {}  # draw id -> (fqn, index, count)
        self.keep: list[X.E] = []

    def assign_draws(self, r: Root) -> list[X.E]:
        draws = sorted((x for x in _walk(r.value) if x.op == "draw" and id(x) not in self.owner), key=lambda x: x.serial)
        for i, d in enumerate(draws):
            self.owner[id(d)] = (r.fqn, i, len(draws))
        return draws

    def key(self, d: X.E) -> int | None:
        fqn, i, n = self.owner[id(d)]
        if n == 1:
            return None
        return self.t.key_at(self.t.split(self.t.param_key(fqn), n), i)

    def emit(self, r: Root) -> None:
        draws = self.assign_draws(r)
        v = r.value
        if v.shape == r.shape and v.dtype == r.dtype:
            if v.op == "draw" and v.attrs["kind"] == "init" and len(draws) == 1 and draws[0] is v:
                self.memo[id(v)] = self.t.param(r.fqn, r.dtype, list(r.shape), v.attrs["init"])
                return
            if v.op == "full":
                self.t.param(r.fqn, r.dtype, list(r.shape), {"kind": "constant", "value": v.attrs["value"]})
                return
        self.t.param(r.fqn, r.dtype, list(r.shape), {"kind": "zeros"})
        x = self.lower(X.convert(X.reshape(v, r.shape), r.dtype))
        self.t.assign(r.fqn, x)

    def lower(self, root: X.E) -> int:
        # post-order without recursion (init code can build long chains)
        stack = [(root, False)]
        while stack:
            e, ready = stack.pop()
            if id(e) in self.memo:
                continue
            if not ready:
                stack.append((e, True))
                stack.extend((a, False) for a in e.args if id(a) not in self.memo)
                continue
            self.memo[id(e)] = self._node(e, [self.memo[id(a)] for a in e.args])
            self.keep.append(e)
        return self.memo[id(root)]

    def _node(self, e: X.E, a: list[int]) -> int:
        t, at, shape = self.t, e.attrs, list(e.shape)
        op = e.op
        if op == "full":
            return t.full(e.dtype, shape, at["value"])
        if op == "iota":
            return t.iota(e.dtype, shape, at["dim"])
        if op == "draw":
            key = self.key(e)
            fqn = self.owner[id(e)][0]
            if at["kind"] == "init":
                return t.init_value(fqn, e.dtype, shape, at["init"], key)
            k = t.param_key(fqn) if key is None else key
            if at["kind"] == "normal":
                return t.normal(k, e.dtype, shape)
            return t.uniform(k, e.dtype, shape, at["min"], at["max"])
        if op == "unary":
            return t.unary(at["name"], a[0])
        if op == "binary":
            return t.binary(at["name"], a[0], a[1])
        if op == "compare":
            return t.compare(at["dir"], a[0], a[1])
        if op == "select":
            return t.select(a[0], a[1], a[2])
        if op == "convert":
            return t.convert(a[0], e.dtype)
        if op == "broadcast":
            return t.broadcast(a[0], shape, list(at["dims"]))
        if op == "reshape":
            return t.reshape(a[0], shape)
        if op == "transpose":
            return t.transpose(a[0], list(at["perm"]))
        if op == "slice":
            return t.slice(a[0], list(at["start"]), list(at["limit"]))
        if op == "concat":
            return t.concat(a, at["dim"])
        raise AssertionError(f"unlowerable node {e!r}")

    def finish(self) -> Program:
        return self.t.finish()
