"""initc's device runtime from Python: shards made on an accelerator, handed over without a copy.

A :class:`Runtime` is initc's own PJRT client (the plugin JAX installs, e.g.
``jax_plugins/xla_cuda13/xla_cuda_plugin.so``). It compiles a program's shard programs for the
rectangles asked for and runs them on its devices; each result is a ``DeviceArray`` that
``torch.from_dlpack`` or ``jax.dlpack.from_dlpack`` takes over without a copy (DLPack 1.0 and
legacy capsules). The buffer lives until the consumer's tensor dies, whatever happens to the
``Runtime``; a ``DeviceArray`` is handed over once.

By default the client shares the GPU with torch and JAX in the same process: it does not
preallocate (XLA's default takes 75 % of the GPU) and its allocator grows on demand.

Most users never touch this module: ``initc.torch.materialize(model, program, device="cuda")``
and ``initc.jax.materialize(program, mesh, specs)`` use it. Directly::

    import torch, initc, initc.device

    program = initc.Program.from_toml(open("examples/llama3_tiny.toml").read(), "examples/llama3_tiny.toml")
    rt = initc.device.runtime()
    (arrays,), timings = rt.materialize(program, [(0, [("tok_embeddings.weight", [0, 0], [256, 64])])])
    w = torch.from_dlpack(arrays[0])   # a CUDA tensor over initc's buffer
"""

from __future__ import annotations

import glob
import os
import sys
from typing import Sequence

from initc._native import DeviceArray, InitcError, Runtime
from initc._native import compare as _compare

__all__ = ["DeviceArray", "Runtime", "compare", "find_plugin", "runtime"]

ENV_VAR = "INITC_PJRT_PLUGIN"


def find_plugin() -> str | None:
    """The PJRT plugin initc uses: ``$INITC_PJRT_PLUGIN``, else the newest CUDA plugin JAX
    installed on ``sys.path`` (``jax_plugins/xla_cuda*/xla_cuda_plugin.so``), else libtpu."""
    env = os.environ.get(ENV_VAR)
    if env:
        return env
    cuda, tpu = [], []
    for site in sys.path:
        if not site or not os.path.isdir(site):
            continue
        cuda += glob.glob(os.path.join(site, "jax_plugins", "xla_cuda*", "xla_cuda_plugin.so"))
        tpu += glob.glob(os.path.join(site, "libtpu", "libtpu.so"))
    if cuda:
        return sorted(cuda)[-1]
    return tpu[0] if tpu else None


_RUNTIMES: dict = {}


def runtime(plugin: str | None = None, *, visible_devices: Sequence[int] | None = None, preallocate: bool | None = None,
            memory_fraction: float | None = None, allocator: str | None = None) -> Runtime:
    """The process's :class:`Runtime` for ``plugin`` (default :func:`find_plugin`) and these
    client options, created on first use and reused after (a client's first transfer to a GPU
    sets up its memory: 1.5-2 s on an H200). ``visible_devices`` (CUDA ordinals) keeps the
    client off the other GPUs of the host: a torchrun rank passes its own."""
    path = plugin or find_plugin()
    if path is None:
        raise InitcError(
            f"initc.device: no PJRT plugin found (looked at ${ENV_VAR} and jax_plugins/xla_cuda*/xla_cuda_plugin.so, libtpu/libtpu.so on sys.path); "
            "install one (`pip install \"jax[cuda13]\"`) or set INITC_PJRT_PLUGIN=PATH"
        )
    vis = None if visible_devices is None else tuple(int(d) for d in visible_devices)
    key = (path, vis, preallocate, memory_fraction, allocator)
    if key not in _RUNTIMES:
        _RUNTIMES[key] = Runtime(path, preallocate=preallocate, memory_fraction=memory_fraction, allocator=allocator,
                                 visible_devices=None if vis is None else list(vis))
    return _RUNTIMES[key]


def device_index(rt: Runtime, ordinal: int) -> int:
    """The index in ``rt.devices`` of the device with CUDA ordinal (local hardware id) ``ordinal``."""
    for index, _id, hw, _kind in rt.devices:
        if hw == ordinal:
            return index
    have = ", ".join(f"{i}: ordinal {hw} ({kind})" for i, _, hw, kind in rt.devices)
    raise InitcError(f"initc.device: no device with ordinal {ordinal} in the PJRT client of {rt.plugin} (it has {have or 'none'})")


def compare(got, want, dtype: str) -> tuple[int, int]:
    """Compares two little-endian byte arrays of one tensor (numpy uint8 or bytes) the way
    ``initc run --verify`` compares a device's values with the CPU engine's (the same Rust code,
    crates/initc-device/src/verify.rs): an element passes when it is within 4 ULPs (f32) or 1 ULP
    (bf16, f16), or within 2^-16 of the tensor's largest magnitude. XLA:GPU contracts ``x * s + a``
    into one FMA and evaluates ``erf_inv``'s polynomial with FMAs, so its f32 values can differ
    from XLA:CPU's (and the CPU engine's, which are XLA:CPU's bit for bit) in the last bits, as
    ``jax.random``'s own do between JAX's CPU and GPU backends. Returns ``(elements that differ,
    elements beyond the tolerance)``; other dtypes must be equal."""
    import numpy as np

    got, want = np.asarray(got, np.uint8), np.asarray(want, np.uint8)
    if got.shape != want.shape:
        raise InitcError(f"initc.device.compare: {got.size} bytes against {want.size}")
    return _compare(got.tobytes(), want.tobytes(), dtype)
