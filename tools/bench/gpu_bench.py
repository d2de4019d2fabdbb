"""GPU benchmark: initc (PJRT backend) beside its anchors, in one run, on one GPU.

For each model × dtype it runs, each in its own process so device memory starts empty:
  initc   `initc run <model> --backend pjrt --repeat 4` (first run = warm-up)
  jax     benches/anchors/jax_init.py with threefry2x32 (sharding-invariant) and with rbg
  torch   benches/anchors/torch_init.py (torch.empty + in-place init_)
and prints a table (compile s, materialize s, GB/s, peak device bytes, ratios to each anchor).
Rows go to --out as JSON: {"system", "model", "dtype", "devices", "gpu", "compile_s",
"materialize_s", "param_bytes", "peak_device_bytes", "sharding_invariant", ...}.

initc's compile_s is everything before the first materialization (trace, plan, XLA compile of
the shard programs, static-word upload) plus the first run's excess over the best run (CUDA
module loading), i.e. compile + load. materialize_s is the best of the 3 runs after warm-up.
JAX's compile_s is lower + compile and its materialize_s the best of its 3 runs; torch has no
compile step and its materialize_s is the best of its 2 in-place init passes.

usage: python3 tools/bench/gpu_bench.py INITC_BIN --models llama3_1b,llama3_8b --dtypes f32,bf16
          [--systems initc,jax-threefry,jax-rbg,torch] --out results.json
"""
import argparse, json, os, subprocess, sys, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ANCHORS = os.path.join(ROOT, "benches", "anchors")


def gpu_name():
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True).stdout.splitlines()[0].strip()
    except Exception:
        return "unknown"


def last_json(stdout):
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError("no JSON line in output")


def run_initc(exe, model, dtype, gpu, extra, rng="jax"):
    with tempfile.TemporaryDirectory() as tmp:
        src = open(os.path.join(ROOT, "examples", f"{model}.toml")).read()
        if dtype != "f32":
            src = src.replace("[model]\n", f"[model]\ndtype = \"{dtype}\"\n", 1)
        toml = os.path.join(tmp, f"{model}.toml")
        open(toml, "w").write(src)
        rep = os.path.join(tmp, "report.json")
        p = subprocess.run([exe, "run", toml, "--backend", "pjrt", "--repeat", "4", "--report", rep, "--rng", rng, *extra], capture_output=True, text=True, cwd=ROOT)
        sys.stderr.write(p.stderr[-3000:])
        p.check_returncode()
        r = json.load(open(rep))
    runs = r["materialize_s"]
    best = min(runs[1:])
    peak = max(d["peak_bytes_in_use"] or 0 for d in r["devices"])
    return dict(system="initc" if rng == "jax" else f"initc-{rng}", rng=rng, model=model, dtype=dtype, devices=len(r["devices"]), gpu=gpu,
                compile_s=r["setup_s"] + max(0.0, runs[0] - best), materialize_s=best, param_bytes=r["param_bytes"],
                peak_device_bytes=peak, sharding_invariant=True, programs=r["programs"], launches=r["launches"],
                xla_compile_s=r["compile_s"], runs_s=runs, enqueue_s=[d["enqueue_s"] for d in r["devices"]])


def run_jax(model, dtype, impl, gpu):
    p = subprocess.run([sys.executable, os.path.join(ANCHORS, "jax_init.py"), model, impl, dtype], capture_output=True, text=True, cwd=ANCHORS)
    if p.returncode != 0:
        raise RuntimeError(p.stderr[-2000:])
    r = last_json(p.stdout)
    return dict(system=f"jax-{'threefry' if impl == 'threefry2x32' else impl}", model=model, dtype=dtype, devices=r["devices"], gpu=gpu,
                compile_s=r["lower_s"] + r["compile_s"], materialize_s=min(r["run_s"]), param_bytes=r["bytes"],
                peak_device_bytes=r["peak_bytes_dev0"], sharding_invariant=impl == "threefry2x32", runs_s=r["run_s"], jax=r["jax"])


def run_torch(model, dtype, gpu):
    p = subprocess.run([sys.executable, os.path.join(ANCHORS, "torch_init.py"), model, "cuda", "0", dtype], capture_output=True, text=True, cwd=ANCHORS)
    if p.returncode != 0:
        raise RuntimeError(p.stderr[-2000:])
    r = last_json(p.stdout)
    return dict(system="torch", model=model, dtype=dtype, devices=1, gpu=gpu, compile_s=0.0, materialize_s=min(r["init_s"]),
                param_bytes=r["bytes"], peak_device_bytes=r["peak_bytes"], sharding_invariant=False, runs_s=r["init_s"], torch=r["torch"])


def table(rows):
    out = [f"{'system':<13} {'model':<10} {'dtype':<5} {'compile s':>9} {'mat. ms':>8} {'GB/s':>7} {'peak GB':>8}  ratios (anchor time / initc time)"]
    for r in rows:
        ratios = ""
        if r["system"].startswith("initc"):
            for a in rows:
                if not a["system"].startswith("initc") and a["model"] == r["model"] and a["dtype"] == r["dtype"]:
                    ratios += f"  {a['system']}: {a['materialize_s'] / r['materialize_s']:.2f}x"
                    if a["compile_s"]:
                        ratios += f" (compile {a['compile_s'] / r['compile_s']:.1f}x)"
        peak = (r["peak_device_bytes"] or 0) / 1e9
        out.append(f"{r['system']:<13} {r['model']:<10} {r['dtype']:<5} {r['compile_s']:>9.2f} {r['materialize_s'] * 1e3:>8.1f} {r['param_bytes'] / r['materialize_s'] / 1e9:>7.0f} {peak:>8.2f} {ratios}")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("initc")
    ap.add_argument("--models", default="llama3_1b,llama3_8b")
    ap.add_argument("--dtypes", default="f32,bf16")
    ap.add_argument("--systems", default="initc,initc-fast,jax-threefry,jax-rbg,torch",
                    help="initc: JAX-exact mode; initc-fast: --rng fast (sharding-invariant, not jax.random's values)")
    ap.add_argument("--initc-args", default="", help="extra arguments for `initc run` (e.g. --mesh ... --device 0)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    gpu = gpu_name()
    rows = []
    for model in a.models.split(","):
        for dtype in a.dtypes.split(","):
            for system in a.systems.split(","):
                try:
                    if system in ("initc", "initc-fast"):
                        row = run_initc(a.initc, model, dtype, gpu, a.initc_args.split(), "fast" if system == "initc-fast" else "jax")
                    elif system.startswith("jax-"):
                        row = run_jax(model, dtype, {"jax-threefry": "threefry2x32", "jax-rbg": "rbg"}[system], gpu)
                    else:
                        row = run_torch(model, dtype, gpu)
                except Exception as e:  # one failing anchor must not lose the others' rows
                    print(f"FAILED {system} {model} {dtype}: {e}", file=sys.stderr, flush=True)
                    continue
                rows.append(row)
                print(json.dumps(row), flush=True)
                with open(a.out, "w") as f:
                    json.dump(rows, f, indent=1)
    print(table(rows), flush=True)


if __name__ == "__main__":
    main()
