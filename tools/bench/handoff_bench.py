"""Time to usable parameters on one GPU: torchtitan 0.3.0 Llama3 built on meta -> torch CUDA
tensors or jax.Arrays, initc beside the anchors, every case in its own fresh process (cold:
CUDA context, PJRT client, compiles all included).

Cases (--cases, comma-separated; each runs for every --dtypes):
  initc-torch-jax / initc-torch-fast  build on meta, initc.torch.trace (rng jax/fast),
                                      initc.torch.materialize(device="cuda")
  torch                               build on meta, to_empty(device="cuda"), init_weights()
  initc-jax                           build on meta, trace, initc.jax.materialize on a 1-GPU mesh
  jax                                 benches/anchors/jax_init.py (jax.jit(init, out_shardings),
                                      threefry2x32; its own Llama3 of the same shapes)
  torchax / initc-torchax             torchax's Mesh.initialize_model_sharded / initc.torchax's, of
                                      a Llama3 whose constructor initializes (f32), fsdp mesh
  CASE+cache (initc cases)            CASE twice, each in a fresh process, with
                                      INITC_COMPILE_CACHE on a new directory: the first fills it,
                                      the second (the row named CASE+cache) loads its executables

Each case prints one JSON line; the driver collects them into --out with ratios:
  usable_s       process start of the work (after imports) -> parameters usable on the GPU
  materialize_s  initc: the device runtime's run (every buffer ready); torch: init_weights
  handoff_s      initc: DLPack + putting tensors into the model / making jax.Arrays
  peak_bytes     torch's allocator peak + initc's PJRT allocator peak; param_bytes beside it

usage: python3 tools/bench/handoff_bench.py --flavor 8B --dtypes f32,bf16 --out results.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


SOURCE = {}


def builder(flavor: str, dtype: str, init: bool = False):
    """A function that builds torchtitan 0.3.0's Llama3 on meta (the import done now, outside
    the timed work, as a trainer has its model's module imported before it builds the model), or
    where torchtitan does not import (it needs a newer torch than 2.11)
    benches/anchors/titan_llama3.py, whose capture python/tests checks to be torchtitan's bit for
    bit and which imports what torchtitan's model module imports (torch._dynamo, DTensor)."""
    import torch

    try:
        if init:
            raise ImportError("a constructor that initializes is wanted")
        from torchtitan.models.llama3 import llama3_configs

        make = lambda: llama3_configs[flavor](attn_backend="flex").build()  # noqa: E731
        SOURCE["model"] = "torchtitan 0.3.0"
    except ImportError as e:
        sys.path.insert(0, os.path.join(ROOT, "benches", "anchors"))
        from titan_llama3 import FLAVORS, Llama3

        make = lambda: Llama3(**FLAVORS[flavor], init=init)  # noqa: E731
        SOURCE["model"] = f"benches/anchors/titan_llama3.py ({str(e)[:120]})"

    def build():
        with torch.device("meta"):
            model = make()
        return model.to(torch.bfloat16) if dtype == "bf16" else model

    return build


def param_bytes(model) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def spot_check(model, tp, seed) -> int:
    """A 64x64 corner (or the whole vector) of a few tensors against the CPU engine, within
    --verify's tolerance (initc.device.compare)."""
    import torch
    import initc.device as D

    n = 0
    named = dict(model.named_parameters())
    for fqn, dt, shape, _ in tp.program.params[:: max(1, len(tp.program.params) // 5)]:
        local = [min(64, s) for s in shape]
        want = torch.empty(local, dtype=named[fqn].dtype)
        tp.program.materialize_into(fqn, want.reshape(-1).view(torch.uint8).numpy(), seed, [0] * len(shape), local)
        got = named[fqn][tuple(slice(0, k) for k in local)].contiguous().cpu()
        _, beyond = D.compare(got.reshape(-1).view(torch.uint8).numpy(), want.reshape(-1).view(torch.uint8).numpy(), dt)
        assert beyond == 0, f"{fqn}: {beyond} elements beyond --verify's tolerance of the CPU engine"
        n += 1
    return n


def case_initc_torch(flavor, dtype, rng):
    import torch
    import initc.device as D
    import initc.torch as it

    build = builder(flavor, dtype)
    torch.cuda.init()
    t0 = time.perf_counter()
    model = build()
    t_build = time.perf_counter() - t0
    tp = it.trace(model, rng=rng)
    t_trace = time.perf_counter() - t0 - t_build
    stats: dict = {}
    it.materialize(model, tp, seed=0, device="cuda", stats=stats)
    torch.cuda.synchronize()
    usable = time.perf_counter() - t0
    # the capture again, in the warm process (the first one includes torch's lazy imports of its
    # meta kernels, torch._refs/_prims, ~1-4 s)
    again = build()
    t1 = time.perf_counter()
    it.trace(again, rng=rng)
    t_trace_warm = time.perf_counter() - t1
    rt = D.runtime(visible_devices=[torch.cuda.current_device()])
    peak = torch.cuda.max_memory_allocated() + (rt.memory_stats(0)["peak_bytes_in_use"] or 0)
    checked = spot_check(model, tp, 0)
    return dict(usable_s=usable, build_s=t_build, capture_s=t_trace, capture_warm_s=t_trace_warm, compile_s=stats["compile"], load_s=stats["load"],
                executables=stats["executables"], cache_hits=stats["cache_hits"], materialize_s=stats["run"], handoff_s=stats["handoff"], peak_bytes=peak, param_bytes=param_bytes(model),
                torch_peak_bytes=torch.cuda.max_memory_allocated(), spot_checked=checked)


def case_torch(flavor, dtype):
    import torch

    build = builder(flavor, dtype)
    torch.cuda.init()
    t0 = time.perf_counter()
    model = build()
    t_build = time.perf_counter() - t0
    model.to_empty(device="cuda")
    init = getattr(model, "init_states", None) or model.init_weights
    with torch.no_grad():
        t1 = time.perf_counter()
        init()
        torch.cuda.synchronize()
        first = time.perf_counter() - t1
    usable = time.perf_counter() - t0
    with torch.no_grad():
        t1 = time.perf_counter()
        init()
        torch.cuda.synchronize()
        warm = time.perf_counter() - t1
    return dict(usable_s=usable, build_s=t_build, materialize_s=warm, first_init_s=first, peak_bytes=torch.cuda.max_memory_allocated(),
                param_bytes=param_bytes(model))


def case_initc_jax(flavor, dtype):
    import jax
    import numpy as np
    from jax.sharding import Mesh
    import initc.jax as ij
    import initc.torch as it

    build = builder(flavor, dtype)
    jax.devices()
    t0 = time.perf_counter()
    model = build()
    tp = it.trace(model)
    t_trace = time.perf_counter() - t0
    mesh = Mesh(np.array(jax.devices()[:1]), ("fsdp",))
    stats: dict = {}
    arrays = ij.materialize(tp.program, mesh, None, seed=0, stats=stats)
    for a in arrays.values():
        a.block_until_ready()
    usable = time.perf_counter() - t0
    return dict(usable_s=usable, capture_s=t_trace, compile_s=stats["compile"], load_s=stats["load"], executables=stats["executables"],
                cache_hits=stats["cache_hits"], materialize_s=stats["run"],
                handoff_s=stats["handoff"], param_bytes=sum(a.nbytes for a in arrays.values()))


def case_jax(flavor, dtype):
    name = {"1B": "llama3_1b", "8B": "llama3_8b"}[flavor]
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, os.path.join(ROOT, "benches", "anchors", "jax_init.py"), name, "threefry2x32", dtype], capture_output=True,
                       text=True, cwd=os.path.join(ROOT, "benches", "anchors"))
    wall = time.perf_counter() - t0
    if p.returncode:
        raise RuntimeError(p.stderr[-2000:])
    r = json.loads([l for l in p.stdout.splitlines() if l.startswith("{")][-1])
    return dict(usable_s=r["lower_s"] + r["compile_s"] + r["run_s"][0], wall_s=wall, lower_s=r["lower_s"], compile_s=r["compile_s"], materialize_s=min(r["run_s"]),
                peak_bytes=r.get("peak_bytes_dev0"), model="benches/anchors/jax_init.py (separate wq/wk/wv, same shapes)")


def _initializing_class(flavor):
    sys.path.insert(0, os.path.join(ROOT, "benches", "anchors"))
    from titan_llama3 import FLAVORS, Llama3

    SOURCE["model"] = "benches/anchors/titan_llama3.py, init in the constructor"
    return lambda: Llama3(**FLAVORS[flavor], init=True)


def case_torchax(flavor, dtype):
    import jax
    from torchax.mesh_util import Mesh

    make = _initializing_class(flavor)
    jax.devices()
    t0 = time.perf_counter()
    model = Mesh.fsdp_mesh().initialize_model_sharded(make, ())
    for v in model.state_dict().values():
        getattr(v, "_elem", v).block_until_ready()
    return dict(usable_s=time.perf_counter() - t0, note="f32: the constructor's dtype")


def case_initc_torchax(flavor, dtype):
    import jax
    from torchax.mesh_util import Mesh
    import initc.torchax as itx

    make = _initializing_class(flavor)
    jax.devices()
    t0 = time.perf_counter()
    model = itx.initialize_model_sharded(make, (), mesh=Mesh.fsdp_mesh(), seed=0)
    for v in model.state_dict().values():
        getattr(v, "_elem", v).block_until_ready()
    return dict(usable_s=time.perf_counter() - t0, note="f32: the constructor's dtype")


def run_case(case, flavor, dtype):
    case = case.removesuffix("+cache")
    if case.startswith("initc-torch-"):
        return case_initc_torch(flavor, dtype, case.rsplit("-", 1)[1])
    table = {"torch": case_torch, "initc-jax": case_initc_jax, "jax": case_jax, "torchax": case_torchax, "initc-torchax": case_initc_torchax}
    return table[case](flavor, dtype)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flavor", default="8B", help="debugmodel, 1B, 8B, 70B")
    ap.add_argument("--dtypes", default="f32,bf16")
    ap.add_argument("--cases", default="initc-torch-jax,initc-torch-jax+cache,initc-torch-fast,torch,initc-jax,initc-jax+cache,jax",
                    help="comma-separated; CASE+cache runs CASE twice on a fresh INITC_COMPILE_CACHE (filling, then hitting); also torchax, initc-torchax")
    ap.add_argument("--timeout", type=float, default=400)
    ap.add_argument("--out")
    ap.add_argument("--one", nargs=3, metavar=("CASE", "FLAVOR", "DTYPE"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        row = run_case(*a.one)
        row.update(SOURCE)
        print(json.dumps(row), flush=True)
        return
    rows = []
    try:
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
    except FileNotFoundError:
        gpu = "none (no nvidia-smi)"

    def save():
        # after every row, so that a run cut short keeps what it measured
        if a.out:
            json.dump({"gpu": gpu, "command": " ".join(sys.argv), "rows": rows}, open(a.out, "w"), indent=1)

    for dtype in a.dtypes.split(","):
        for case in a.cases.split(","):
            # CASE+cache: two processes with INITC_COMPILE_CACHE on a fresh directory, the first
            # filling it (row "cache": "filled"), the second loading from it ("hit").
            runs = [None]
            if case.endswith("+cache"):
                cache_dir = tempfile.mkdtemp(prefix="initc-compile-cache-")
                runs = ["filled", "hit"]
            for cache in runs:
                env = dict(os.environ)
                env.pop("INITC_COMPILE_CACHE", None)
                if cache:
                    env["INITC_COMPILE_CACHE"] = cache_dir
                t0 = time.perf_counter()
                try:
                    p = subprocess.run([sys.executable, __file__, "--one", case, a.flavor, dtype], capture_output=True, text=True, timeout=a.timeout, env=env)
                    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
                    row = json.loads(lines[-1]) if p.returncode == 0 and lines else {"error": (p.stderr or p.stdout)[-1500:]}
                except subprocess.TimeoutExpired:
                    row = {"error": f"timed out after {a.timeout:.0f} s"}
                row.update(case=case if cache != "filled" else case.removesuffix("+cache") + " (filling the cache)", flavor=a.flavor, dtype=dtype,
                           process_s=time.perf_counter() - t0)
                if cache:
                    row["cache"] = cache
                rows.append(row)
                print(json.dumps(row), flush=True)
                save()
    by = {(r["case"], r["dtype"]): r for r in rows}
    for r in rows:
        for anchor in ("torch", "jax", "torchax", "initc-torch-jax"):
            b = by.get((anchor, r["dtype"]))
            if b and "usable_s" in b and "usable_s" in r and r["case"] != anchor:
                r[f"usable_vs_{anchor}"] = b["usable_s"] / r["usable_s"]
        if "handoff_s" in r:
            r["materialize_plus_handoff_over_materialize"] = (r["materialize_s"] + r["handoff_s"]) / r["materialize_s"]
        if "peak_bytes" in r and "param_bytes" in r:
            r["peak_over_params"] = r["peak_bytes"] / r["param_bytes"]
    print("\ncase               dtype  usable s  materialize ms  handoff ms  peak/params  vs torch  vs jax")
    for r in rows:
        if "error" in r:
            print(f"{r['case']:18} {r['dtype']:5}  ERROR {r['error'][-300:]!r}")
            continue
        print(f"{r['case']:18} {r['dtype']:5}  {r['usable_s']:8.2f}  {1e3 * (r.get('materialize_s') or 0):14.1f}  {1e3 * r.get('handoff_s', 0):10.1f}"
              f"  {r.get('peak_over_params', 0):11.4f}  {r.get('usable_vs_torch', 0):8.2f}  {r.get('usable_vs_jax', 0):6.1f}")
    save()


if __name__ == "__main__":
    main()
