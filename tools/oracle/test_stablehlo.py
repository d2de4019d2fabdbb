"""Oracle: XLA judges the StableHLO that `initc lower` emits.

For each case (model x mesh x rule set x partitioner), this compiles the emitted module with
jaxlib's PJRT CPU client on 1, 2, 4 or 8 simulated devices
(--xla_force_host_platform_device_count=8), runs it with the seed's key data, and checks every
device's shard against `initc run --device K` (the CPU engine) bit for bit; unsharded cases
compare with the full `initc run` checkpoint. It also reads XLA's optimized HLO of sharded
modules and fails if a sharded parameter's values are computed at global shape (then sliced).
One case is compiled from bytecode (`.mlirbc`) too.
Run by tools/test with the project venv; exits non-zero on the first failure.
"""
import json, os, re, subprocess, sys, tempfile, time

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
os.environ.setdefault("JAX_PLATFORMS", "cpu")
import jax
import numpy as np
from jax.extend import backend as jex_backend
from jax._src.lib import xla_client as xc
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from safetensors.numpy import load_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# (example, extra initc args, devices, partitioner, seed or None for the file's)
CASES = [
    ("llama3_tiny", [], 1, "shardy", None),
    ("llama3_tiny", ["--mesh", "fsdp=2", "--rules", "fsdp"], 2, "shardy", 42),
    ("llama3_tiny", ["--mesh", "fsdp=2,tp=2", "--rules", "fsdp+tp"], 4, "shardy", None),
    ("llama3_tiny", ["--mesh", "dp=2,fsdp=2,tp=2", "--rules", "fsdp+tp"], 8, "shardy", 2**32 + 5),
    ("llama3_tiny", ["--mesh", "tp=8", "--rules", "tp"], 8, "gspmd", None),
    ("llama3_tiny_sharded", [], 4, "gspmd", None),
    ("gpt2_tiny", [], 1, "shardy", None),
    ("gpt2_tiny", ["--mesh", "fsdp=4", "--rules", "fsdp"], 4, "shardy", None),
    ("gpt2_tiny", ["--mesh", "fsdp=2,tp=4", "--rules", "fsdp+tp", "--uneven", "pad"], 8, "gspmd", 2**63 + 11),
    ("gpt2_tiny", ["--mesh", "tp=2", "--rules", "tp"], 2, "gspmd", None),
    ("mlp", [], 1, "shardy", None),
    ("mlp_sharded", ["--mesh", "data=2,model=4"], 8, "gspmd", None),
    ("mlp_sharded", ["--mesh", "data=2,model=2"], 4, "shardy", 3),
    # RNG fast mode (packed threefry lanes, Box-Muller f32 normals): XLA:CPU vs the CPU engine
    ("llama3_tiny", ["--rng", "fast"], 1, "shardy", None),
    ("llama3_tiny", ["--rng", "fast", "--mesh", "fsdp=2,tp=2", "--rules", "fsdp+tp"], 4, "shardy", 2**32 + 5),
    ("gpt2_tiny", ["--rng", "fast", "--mesh", "fsdp=2,tp=4", "--rules", "fsdp+tp", "--uneven", "pad"], 8, "gspmd", None),
    ("mlp", ["--rng", "fast"], 1, "shardy", 9),
    ("mlp_sharded", ["--rng", "fast", "--mesh", "data=2,model=4"], 8, "gspmd", None),
    # bf16 fast draws: two values per block, 7 bits of y0 each (element-wise form in the SPMD module)
    ("llama3_tiny@bf16", ["--rng", "fast", "--mesh", "fsdp=2,tp=2", "--rules", "fsdp+tp"], 4, "shardy", None),
    ("gpt2_tiny@bf16", ["--rng", "fast", "--mesh", "fsdp=2,tp=4", "--rules", "fsdp+tp", "--uneven", "pad"], 8, "gspmd", 2**32 + 5),
]


def initc(*args):
    exe = os.environ.get("INITC_BIN") or os.path.join(ROOT, "target", "debug", "initc")
    return subprocess.run([exe, *args], check=True, capture_output=True, cwd=ROOT).stdout


def compile_module(code, n, partitioner):
    be = jex_backend.get_backend("cpu")
    devs = be.devices()[:n]
    opts = jex_backend.get_compile_options(num_replicas=1, num_partitions=n, device_assignment=np.array([[d.id for d in devs]]))
    bo = opts.executable_build_options
    bo.use_spmd_partitioning = n > 1
    bo.use_shardy_partitioner = partitioner == "shardy"
    return be.compile_and_load(code, xc.DeviceList(tuple(devs)), opts), devs


def run(exe, devs, seed):
    key = np.array([seed >> 32, seed & 0xFFFFFFFF], dtype=np.uint32)
    arr = jax.make_array_from_single_device_arrays((2,), NamedSharding(Mesh(np.array(devs), ("d",)), P()), [jax.device_put(key, d) for d in devs])
    outs = exe.execute_sharded([arr]).disassemble_into_single_device_arrays()
    return [[np.asarray(a) for a in per_out] for per_out in outs]


def raw(a):
    return np.ascontiguousarray(a).view(np.uint8).tobytes()


def check_no_global_compute(hlo, manifest, name):
    """No sharded parameter's random bits (the u32/u64 threefry words and counters) appear at
    its global shape in the per-device program. XLA's metadata names the op by the MLIR
    location initc gives it (the FQN), so each instruction is attributed to its parameter.
    (Constants such as `ones` may legitimately be materialized whole and sliced.)"""
    for p in manifest["params"]:
        g = p["shape"]
        if not p.get("sharding") or all(not d for d in p["sharding"]):
            continue
        pat = re.compile(r"= (?:u32|u64)\[" + ",".join(map(str, g)) + r"\]\S* .*op_name=\"" + re.escape(p["fqn"]) + "/")
        if pat.search(hlo):
            sys.exit(f"FAIL {name}: `{p['fqn']}` ({g}) draws its random bits at global shape in the optimized HLO")


def main():
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i, (ex, extra, n, part, seed) in enumerate(CASES):
            name = f"{ex} {' '.join(extra) or '(its own [mesh] or none)'} on {n} device(s), {part}"
            if os.environ.get("INITC_ORACLE_ONLY", "") not in name:
                continue
            src = f"examples/{ex}.toml"
            if "@" in ex:  # "example@dtype": the example with [model] dtype set
                ex, dt = ex.split("@")
                src = os.path.join(tmp, f"{ex}_{dt}.toml")
                text = open(os.path.join(ROOT, "examples", f"{ex}.toml")).read()
                open(src, "w").write(text.replace("[model]\n", f'[model]\ndtype = "{dt}"\n', 1))
            mlir = os.path.join(tmp, f"{i}.mlir")
            initc("lower", src, *extra, "--partitioner", part, "-o", mlir)
            t0 = time.time()
            exe, devs = compile_module(open(mlir).read(), n, part)
            compile_s = time.time() - t0
            trace = json.loads(initc("trace", src, *extra, "--format", "json"))
            s = seed if seed is not None else trace["seed"]
            outs = run(exe, devs, s)
            if i == 2:  # the same case from bytecode must give the same bytes
                bc = os.path.join(tmp, f"{i}.mlirbc")
                initc("lower", src, *extra, "--partitioner", part, "-o", bc)
                exe_bc, _ = compile_module(open(bc, "rb").read(), n, part)
                outs_bc = run(exe_bc, devs, s)
                if any(raw(a) != raw(b) for x, y in zip(outs, outs_bc) for a, b in zip(x, y)):
                    sys.exit(f"FAIL {name}: bytecode and text give different results")
            fqns = [p["fqn"] for p in trace["params"]]
            sharded = "mesh" in trace
            for k in range(n):
                out = os.path.join(tmp, f"{i}-{k}")
                dev = ["--device", str(k)] if sharded else []
                initc("run", src, *extra, *dev, "--seed", str(s), "--out", out)
                want = load_file(os.path.join(out, "model.safetensors"))
                for j, fqn in enumerate(fqns):
                    got = outs[j][k]
                    exp = want[fqn]
                    # A padded (uneven) shard: XLA's buffer is the full piece, the real
                    # elements are its leading corner.
                    if got.shape != exp.shape and all(a >= b for a, b in zip(got.shape, exp.shape)):
                        got = got[tuple(slice(0, b) for b in exp.shape)]
                    if got.shape != exp.shape or raw(got) != raw(exp):
                        diff = "shape" if got.shape != exp.shape else int((got.view(np.uint8) != exp.view(np.uint8)).sum())
                        print(f"FAIL {name}: device {k} `{fqn}` local {got.shape} vs CPU engine {exp.shape}: {diff} bytes differ")
                        failures += 1
                        break
                if not sharded:
                    break
            if sharded:
                hlo = "\n".join(m.to_string() for m in exe.hlo_modules())
                check_no_global_compute(hlo, trace, name)
            print(f"ok   {name}: {len(fqns)} params, seed {s}, compile {compile_s:.2f} s")
    if failures:
        sys.exit(f"{failures} failure(s)")
    # The 8B example: emitted and compiled for one device (compile only; running it would need
    # 32 GB of host memory).
    with tempfile.TemporaryDirectory() as tmp:
        mlir = os.path.join(tmp, "8b.mlir")
        initc("lower", "examples/llama3_8b.toml", "-o", mlir)
        t0 = time.time()
        compile_module(open(mlir).read(), 1, "shardy")
        print(f"ok   llama3_8b (unsharded) compiled by XLA:CPU in {time.time() - t0:.1f} s (not run)")
    print("stablehlo oracle: all cases match the CPU engine bit for bit")


if __name__ == "__main__":
    main()
