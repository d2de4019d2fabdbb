"""initc.torch: capture a PyTorch module's initialization as written, and materialize it.

::

    with torch.device("meta"):
        model = build_model()
    program = initc.torch.trace(model)             # runs model.init_states()/init_weights() on meta
    program.save("model.pb")                       # initc trace/lower/plan/run/verify read it
    initc.torch.materialize(model, program, seed=0)  # fills the model in place on the CPU

What is captured (a ``TorchDispatchMode`` over meta tensors, plus ``torch.nn.init``):

- every ``torch.nn.init`` call, as initc's initializer of the same name (``trunc_normal_`` is
  ``trunc_normal``, ...), so values equal the presets' and the README's JAX expressions;
  ``orthogonal_`` and ``sparse_`` raise :class:`UnsupportedInitError`;
- in-place methods (``normal_ uniform_ fill_ zero_ copy_ mul_ add_ sub_ div_ clamp_`` ...),
  writes through views and slices, factories (``randn rand zeros ones full arange empty eye``),
  arithmetic with scalars and tensors, casts, ``cat``/``stack``;
- assignment (``self.w = nn.Parameter(...)``, ``register_buffer``, ``param.data = ...``) and tied
  weights: one program tensor per storage, every alias gets its value.

Keys: a draw is keyed by the FQN of the tensor its value ends in; several draws in one tensor
take ``split(key, n)[i]`` in program order (:mod:`initc.torch._lower`). Raw draws on a 16-bit
tensor are drawn in f32, computed in f32 and rounded, as torch computes them.

Buffers: the program holds every parameter and every persistent buffer whose value initc can
express. Non-persistent buffers (RoPE tables, masks) and buffers of dtypes initc lacks (int64
counters) are left to torch: :func:`materialize` re-runs the init function for them with
random ops and parameter writes skipped (:attr:`TorchProgram.torch_buffers` says which and why).
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from initc._native import InitcError, Program
from initc.torch import _capture as C
from initc.torch import _expr as X
from initc.torch._errors import (
    CaptureError,
    DataDependentError,
    ShardingError,
    UninitializedError,
    UnsupportedInitError,
    UnsupportedOpError,
)
from initc.torch._lower import Lowering, Root, bad_message, first_bad

__all__ = [
    "trace",
    "materialize",
    "TorchProgram",
    "CaptureError",
    "DataDependentError",
    "ShardingError",
    "UninitializedError",
    "UnsupportedInitError",
    "UnsupportedOpError",
]


@dataclass
class TorchProgram:
    """A captured program and what :func:`materialize` needs besides it."""

    program: Program
    #: canonical FQN -> the other names of the same tensor (tied weights)
    aliases: dict[str, list[str]] = field(default_factory=dict)
    #: buffers left for torch to compute, with the reason
    torch_buffers: dict[str, str] = field(default_factory=dict)
    #: the module built by ``trace(constructor)`` (on meta)
    module: nn.Module | None = None
    init_fn: Callable[[nn.Module], Any] | None = None
    constructor: Callable[[], nn.Module] | None = None

    def save(self, path: str) -> None:
        """``.pb`` (protobuf) or text IR; the ``initc`` CLI reads both."""
        self.program.save(path)

    def text(self) -> str:
        return self.program.text()

    @property
    def params(self):
        return self.program.params


def _default_init(model: nn.Module) -> None:
    for name in ("init_states", "initialize_weights", "init_weights"):
        f = getattr(model, name, None)
        if callable(f):
            f()
            return
    for m in model.modules():
        r = getattr(m, "reset_parameters", None)
        if callable(r):
            r()


def _is_dtensor(t) -> bool:
    # No tensor is a DTensor before torch.distributed.tensor is imported (importing it costs
    # 0.5-2 s, which a model without DTensors should not pay).
    mod = sys.modules.get("torch.distributed.tensor")
    return mod is not None and isinstance(t, mod.DTensor)


@contextlib.contextmanager
def _global_meta(model: nn.Module):
    """DTensor parameters and buffers replaced by global-shape meta tensors while capturing."""
    swapped: list[tuple[dict, str, Any, Any]] = []
    repl: dict[int, Any] = {}
    for m in model.modules():
        for table in (m._parameters, m._buffers):
            for k, t in list(table.items()):
                if t is None or not _is_dtensor(t):
                    continue
                if id(t) not in repl:
                    g = torch.empty(t.shape, dtype=t.dtype, device="meta")
                    repl[id(t)] = nn.Parameter(g, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else g
                table[k] = repl[id(t)]
                swapped.append((table, k, t, repl[id(t)]))
    try:
        yield
    finally:
        for table, k, orig, placeholder in swapped:
            if table.get(k) is placeholder:
                table[k] = orig


def _named_tensors(model: nn.Module) -> list[tuple[str, torch.Tensor, bool]]:
    """(fqn, tensor, is_param) of every parameter, then every persistent buffer, with tied
    names repeated. Module FQNs, not ``state_dict()`` (whose hooks may rename or split tensors:
    torchtitan 0.3.0 presents the fused ``wqkv`` as ``wq``/``wk``/``wv`` slices)."""
    out = [(k, v, True) for k, v in model.named_parameters(remove_duplicate=False)]
    for mn, m in model.named_modules(remove_duplicate=False):
        skip = getattr(m, "_non_persistent_buffers_set", set())
        for k, v in m._buffers.items():
            if v is not None and k not in skip:
                out.append((f"{mn}.{k}" if mn else k, v, False))
    seen: set[str] = set()
    return [x for x in out if not (x[0] in seen or seen.add(x[0]))]


def _ident(t: torch.Tensor):
    return (C.storage_key(t), t.storage_offset(), tuple(t.shape), tuple(t.stride()))


def trace(
    model: nn.Module | Callable[[], nn.Module],
    init_fn: Callable[[nn.Module], Any] | None = None,
    *,
    name: str | None = None,
    seed: int = 0,
    rng: str = "jax",
) -> TorchProgram:
    """Captures a module's initialization into an initc program.

    ``model`` is a module whose parameters are on the meta device (plain or DTensor, e.g. after
    ``fully_shard``/``parallelize_module``), or a constructor called under the capture (its
    module is then :attr:`TorchProgram.module`). ``init_fn(model)`` is run under the capture too;
    by default, for a module: ``init_states()`` (torchtitan), else ``initialize_weights()``
    (Hugging Face; its ``init_weights()`` skips init on meta), else ``init_weights()``, else every
    submodule's ``reset_parameters()``; for a constructor: nothing more.
    """
    ctor = None
    if not isinstance(model, nn.Module):
        ctor, model = model, None
    cap = C.Capture()
    if model is not None:
        with _global_meta(model):
            cap.names = {C.storage_key(t): n for n, t, _ in _named_tensors(model) if t.device.type == "meta"}
            for n, t, _ in _named_tensors(model):
                if t.device.type != "meta":
                    raise CaptureError(f"`{n}` is on {t.device}, not meta: build the model under `with torch.device('meta'):` before tracing it")
            _run(cap, lambda: (init_fn or _default_init)(model))
            prog = _lower(cap, model, name or _model_name(model), seed, rng)
    else:
        built: list[nn.Module] = []

        def run():
            built.append(ctor())
            if init_fn is not None:
                init_fn(built[0])

        _run(cap, run)
        model = built[0]
        if not isinstance(model, nn.Module):
            raise CaptureError(f"the constructor returned {type(model).__name__}, not an nn.Module")
        prog = _lower(cap, model, name or _model_name(model), seed, rng)
        prog.module = model
    prog.init_fn = init_fn if ctor is not None else (init_fn or _default_init)
    prog.constructor = ctor
    return prog


def _model_name(model: nn.Module) -> str:
    """The module's class name; FSDP2's ``FSDP<Name>`` wrapper class is not the model's."""
    cls = next((c for c in type(model).__mro__ if not c.__module__.startswith("torch.distributed")), type(model))
    return cls.__name__


def _run(cap: C.Capture, fn: Callable[[], Any]) -> None:
    with torch.device("meta"), torch.no_grad(), C.Literals(cap), C.InitHooks(C.init_hook(cap)), C.CaptureMode(cap):
        fn()


def _lower(cap: C.Capture, model: nn.Module, name: str, seed: int, rng: str) -> TorchProgram:
    roots: list[Root] = []
    by_ident: dict[tuple, Root] = {}
    torch_buffers: dict[str, str] = {}
    nonpersistent = {f"{mn}.{b}" if mn else b for mn, m in model.named_modules() for b in getattr(m, "_non_persistent_buffers_set", ())}
    for fqn, t, is_param in _named_tensors(model):
        if t.device.type != "meta":
            raise CaptureError(f"`{fqn}` is on {t.device} after the init code; initc captures meta tensors only")
        ident = _ident(t)
        if ident in by_ident:
            by_ident[ident].aliases.append(fqn)
            continue
        dt = C.dtype_of(t)
        if dt is None or (t.dtype == torch.int64):
            if is_param:
                raise UnsupportedOpError(f"parameter `{fqn}` has dtype {t.dtype}, which initc does not have", None)
            torch_buffers[fqn] = f"dtype {str(t.dtype).replace('torch.', '')} has no initc dtype"
            continue
        r = Root(fqn, cap.value(t), dt, tuple(t.shape), is_param)
        b = first_bad(r.value)
        if b is not None:
            if is_param:
                raise bad_message(r, b)
            torch_buffers[fqn] = _reason(b)
            continue
        by_ident[ident] = r
        roots.append(r)
    for fqn in sorted(nonpersistent):
        torch_buffers.setdefault(fqn, "non-persistent buffer")
    low = Lowering(name, seed, rng)
    for r in roots:
        low.emit(r)
    try:
        program = low.finish()
    except InitcError as e:  # pragma: no cover - a lowering bug, not a user error
        raise CaptureError(f"the captured program does not verify: {e}") from None
    return TorchProgram(program, {r.fqn: r.aliases for r in roots if r.aliases}, torch_buffers)


def _reason(b: X.E) -> str:
    if b.op == "uninit":
        return f"not written by the init code ({b.attrs['where']})"
    return f"computed with `{b.attrs['op']}` at {b.attrs['where']}"


# ---- materialize ----

_TORCH_DTYPE = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16, "f64": torch.float64, "u8": torch.uint8, "i32": torch.int32, "bool": torch.bool}


def fill_(t: torch.Tensor, program: Program, fqn: str, seed: int | None = None, offset=None, shape=None) -> torch.Tensor:
    """Writes the region ``offset``/``shape`` (default: all) of ``fqn`` into CPU tensor ``t`` with
    the CPU engine, in place: straight into ``t``'s memory when it is contiguous, else through
    one temporary."""
    if t.numel() == 0:
        return t
    with torch.no_grad():
        if t.device.type == "cpu" and t.is_contiguous():
            out = t.detach().reshape(-1).view(torch.uint8).numpy()
            program.materialize_into(fqn, out, seed, offset, shape)
        else:
            tmp = torch.empty(t.shape, dtype=t.dtype, device="cpu")
            fill_(tmp, program, fqn, seed, offset, shape)
            t.copy_(tmp)
    return t


def _local_region(t) -> tuple[torch.Tensor, list[int], list[int]]:
    """A DTensor's local tensor and its rectangle (global offset, local shape)."""
    from torch.distributed.tensor import Partial, Replicate, Shard
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    for p in t.placements:
        if not isinstance(p, (Shard, Replicate)) or type(p) not in (Shard, Replicate):
            raise ShardingError(f"placement {p!r} of a {tuple(t.shape)} DTensor: initc fills Shard(d) and Replicate placements (Partial and strided shards are not one rectangle)")
    local = t._local_tensor
    shape, offset = compute_local_shape_and_global_offset(t.shape, t.device_mesh, t.placements)
    if tuple(local.shape) != tuple(shape):
        raise ShardingError(f"the local tensor of a {tuple(t.shape)} DTensor has shape {tuple(local.shape)}, its placements {t.placements} give {tuple(shape)}")
    return local, list(offset), list(shape)


def materialize(model: nn.Module, program: TorchProgram | Program, seed: int | None = None, *, buffers: bool = True,
                device: str | torch.device | None = None, runtime=None, batch: int | None = None, stats: dict | None = None) -> nn.Module:
    """Gives ``model``'s parameters and buffers ``program``'s values for ``seed`` (default: the
    program's). DTensor parameters get only their local shard, computed on this rank alone (no
    collective); the values do not depend on the mesh or the placements. Tied weights are
    re-tied. With ``buffers``, buffers left to torch are recomputed by re-running the init
    function with random ops and writes to program tensors skipped.

    ``device=None`` or ``"cpu"``: filled in place on the CPU by the CPU engine (meta tensors are
    first allocated with ``to_empty(device="cpu")``).

    ``device="cuda"`` (or ``"cuda:N"``, a ``torch.device``): each parameter (each DTensor's
    local shard) is made on that GPU by initc's device runtime and becomes the model's tensor
    through DLPack, with no host copy and no device-to-device copy: the model must still be on
    meta, and peak GPU memory is the parameters' bytes plus initc's small per-launch arguments.
    ``runtime`` is an :class:`initc.device.Runtime` (default: :func:`initc.device.runtime` for
    this GPU alone); ``batch`` caps the launches per PJRT execute. Values are the program's
    (its ``rng`` mode, ``jax`` or ``fast``, decides them) and never depend on the sharding; in
    JAX mode they are bit for bit the initializer's JAX expression on the same GPU, and against
    the CPU engine an f32 element may differ in its last bits (XLA:GPU contracts into FMAs),
    within :func:`initc.device.compare`'s tolerance. A ``stats`` dict receives the device
    path's timings in seconds: ``compile``, ``load``, ``run`` (the device runtime's),
    ``handoff`` (DLPack and putting the tensors into the model); and ``executables`` (distinct
    programs) and ``cache_hits`` (of them, loaded from ``INITC_COMPILE_CACHE=DIR``)."""
    tp = program if isinstance(program, TorchProgram) else TorchProgram(program)
    prog = tp.program
    aliases = _model_aliases(model, [f for f, *_ in prog.params], tp.aliases)
    tp = TorchProgram(prog, aliases, tp.torch_buffers, tp.module, tp.init_fn, tp.constructor)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type != "cpu":
        return _materialize_on_device(model, tp, seed, dev, runtime, batch, buffers, stats)
    if any(t.device.type == "meta" for t in list(model.parameters()) + list(model.buffers())):
        model.to_empty(device="cpu")
    named = dict(model.named_parameters(remove_duplicate=False))
    named.update(dict(model.named_buffers(remove_duplicate=False)))
    _retie(model, tp.aliases, named)
    if buffers and tp.torch_buffers:
        _torch_buffers(model, tp, named)
    for fqn, dt, shape, _ in prog.params:
        done: list[torch.Tensor] = []
        for name in [fqn] + tp.aliases.get(fqn, []):
            t = _model_tensor(named, name, dt, shape)
            if any(t is d for d in done):
                continue  # a tied alias: the same tensor, already filled
            done.append(t)
            if _is_dtensor(t):
                local, off, shp = _local_region(t)
                fill_(local, prog, fqn, seed, off, shp)
            else:
                fill_(t, prog, fqn, seed)
    return model


def _model_tensor(named: dict[str, torch.Tensor], name: str, dt: str, shape) -> torch.Tensor:
    """The model's tensor `name`, checked against the program's dtype and shape."""
    t = named.get(name)
    if t is None:
        raise InitcError(f"the model has no parameter or buffer `{name}` (the program has it)")
    if tuple(t.shape) != tuple(shape) or t.dtype != _TORCH_DTYPE.get(dt):
        raise InitcError(f"`{name}` is {tuple(t.shape)} {t.dtype} in the model and {tuple(shape)} {dt} in the program")
    return t


def _materialize_on_device(model: nn.Module, tp: TorchProgram, seed: int | None, dev: torch.device, runtime, batch, buffers: bool,
                           stats: dict | None) -> nn.Module:
    """:func:`materialize` on an accelerator: initc's device runtime makes each program tensor
    (each DTensor's local shard) and the model takes the buffers over through DLPack."""
    import initc.device as D

    if dev.type != "cuda":
        raise InitcError(f"initc.torch.materialize: device {dev} is not supported (cpu, or cuda through initc's PJRT runtime)")
    ordinal = dev.index if dev.index is not None else torch.cuda.current_device()
    prog = tp.program
    named = dict(model.named_parameters(remove_duplicate=False))
    named.update(dict(model.named_buffers(remove_duplicate=False)))
    entries, requests = [], []
    for fqn, dt, shape, _ in prog.params:
        t = _model_tensor(named, fqn, dt, shape)
        local = t._local_tensor if _is_dtensor(t) else t
        if local.device.type != "meta":
            raise InitcError(f"initc.torch.materialize(device={str(dev)!r}): `{fqn}` is on {local.device}; build the model on meta "
                             "(`with torch.device('meta'):`) so that initc's buffers become its tensors without a copy")
        if _is_dtensor(t):
            _, off, shp = _local_region(t)
        else:
            off, shp = [0] * len(shape), list(shape)
        entries.append((fqn, t))
        requests.append((fqn, off, shp))
    rt = runtime if runtime is not None else D.runtime(visible_devices=[ordinal])
    index = D.device_index(rt, ordinal)
    (arrays,), timings = rt.materialize(prog, [(index, requests)], seed, batch)
    t0 = time.perf_counter()
    made: dict[str, torch.Tensor] = {}
    for (fqn, t), arr in zip(entries, arrays):
        local = torch.from_dlpack(arr)
        if _is_dtensor(t):
            from torch.distributed.tensor import DTensor

            value = DTensor.from_local(local, t.device_mesh, t.placements, run_check=False, shape=t.shape, stride=t.stride())
        else:
            value = local
        made[fqn] = value
    _adopt(model, tp, made)
    if stats is not None:
        stats.update(timings, handoff=time.perf_counter() - t0)
    # Tensors the program does not hold (buffers left to torch) are allocated one by one where the
    # runtime's tensors are (`to_empty` would re-allocate initc's tensors too).
    dev = next((v.device for v in made.values()), dev)
    for mod in model.modules():
        for table in (mod._parameters, mod._buffers):
            for k, v in list(table.items()):
                if v is not None and v.device.type == "meta":
                    e = torch.empty_like(v, device=dev)
                    table[k] = nn.Parameter(e, requires_grad=v.requires_grad) if isinstance(v, nn.Parameter) else e
    named = dict(model.named_parameters(remove_duplicate=False))
    named.update(dict(model.named_buffers(remove_duplicate=False)))
    if buffers and tp.torch_buffers:
        with torch.device(dev):
            _torch_buffers(model, tp, named)
    return model


def _adopt(model: nn.Module, tp: TorchProgram, made: dict[str, torch.Tensor]) -> None:
    """Puts each program tensor into the model under its FQN and every alias: one
    ``nn.Parameter`` for all names of a parameter (ties stay ties), the tensor for buffers."""
    for fqn, value in made.items():
        shared = None
        for name in [fqn] + tp.aliases.get(fqn, []):
            mod_name, _, leaf = name.rpartition(".")
            mod = model.get_submodule(mod_name)
            if leaf in mod._parameters:
                old = mod._parameters[leaf]
                if shared is None:
                    shared = nn.Parameter(value, requires_grad=old.requires_grad if old is not None else True)
                mod._parameters[leaf] = shared
            elif leaf in mod._buffers:
                mod._buffers[leaf] = value
            else:
                raise InitcError(f"the model has no parameter or buffer `{name}` (the program has it)")


def _model_aliases(model: nn.Module, fqns: list[str], known: dict[str, list[str]]) -> dict[str, list[str]]:
    """The program's aliases, plus the model's own ties (a program loaded from a file has none)."""
    by_id: dict[int, list[str]] = {}
    for n, t in model.named_parameters(remove_duplicate=False):
        by_id.setdefault(id(t), []).append(n)
    out = {f: list(v) for f, v in known.items()}
    for names in by_id.values():
        head = next((n for n in names if n in fqns), None)
        if head is not None:
            out.setdefault(head, [])
            out[head] += [n for n in names if n != head and n not in out[head]]
    return {f: v for f, v in out.items() if v}


def _retie(model: nn.Module, aliases: dict[str, list[str]], named: dict[str, torch.Tensor]) -> None:
    for fqn, names in aliases.items():
        canon = named.get(fqn)
        for n in names:
            if canon is not None and named.get(n) is not canon and isinstance(canon, nn.Parameter):
                mod, _, leaf = n.rpartition(".")
                setattr(model.get_submodule(mod), leaf, canon)
                named[n] = canon


class _SkipMode(C.EagerDispatchMode):
    """Runs init code for its buffers only: writes to program tensors and random fills are skipped."""

    def __init__(self, keys: set, ids: set):
        super().__init__()
        self.keys, self.ids = keys, ids

    def _is_program(self, t) -> bool:
        if id(t) in self.ids:
            return True
        if _is_dtensor(t):
            return id(t._local_tensor) in self.ids
        try:
            return C.storage_key(t) in self.keys
        except Exception:
            return False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        muts = C._mutated(func, args, kwargs)
        name = func.overloadpacket.__name__.rstrip("_")
        if muts and (any(self._is_program(t) for t in muts) or name in ("normal", "uniform", "bernoulli", "exponential", "random", "log_normal", "cauchy", "geometric")):
            return muts[0] if len(muts) == 1 else tuple(muts)
        return func(*args, **kwargs)


def _torch_buffers(model: nn.Module, tp: TorchProgram, named: dict[str, torch.Tensor]) -> None:
    program_names = {n for fqn, *_ in tp.program.params for n in [fqn] + tp.aliases.get(fqn, [])}
    ts = [named[n] for n in program_names if n in named]
    ids = {id(t) for t in ts} | {id(t._local_tensor) for t in ts if _is_dtensor(t)}
    keys = {C.storage_key(t) for t in ts if not _is_dtensor(t)}

    def skip(name, a, original):
        return a.get("tensor")

    if tp.init_fn is not None and tp.constructor is None:
        # Hugging Face marks modules initialized after the first init and then skips them
        for m in model.modules():
            m.__dict__.pop("_is_hf_initialized", None)
        with torch.no_grad(), C.InitHooks(skip), _SkipMode(keys, ids):
            tp.init_fn(model)
    elif tp.constructor is not None:
        with torch.device("cpu"), torch.no_grad(), C.InitHooks(skip), _SkipMode(set(), set()):
            fresh = tp.constructor()
            if tp.init_fn is not None:
                tp.init_fn(fresh)
        fresh_named = dict(fresh.named_buffers(remove_duplicate=False))
        for n in tp.torch_buffers:
            if n in fresh_named and n in named:
                with torch.no_grad():
                    named[n].copy_(fresh_named[n])
