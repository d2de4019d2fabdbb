"""On a GPU machine: initc's PJRT backend vs JAX on the same GPU, bit for bit.

For each model (a model.toml), runs `initc run MODEL --backend pjrt --digests --report` (and,
with --mesh, once per mesh), then recomputes every parameter with jax.random + the initializer's
JAX expression (tools/oracle/test_jax_compare.py's `expr`) under jax.jit on the GPU, and compares
the SHA-256 of the raw bytes. Sharded runs are compared shard by shard against slices of the JAX
array. Prints one line per model (and mesh); exits 1 on the first mismatch.

usage: python3 tools/device/jax_gpu_compare.py INITC_BIN SEED MODEL.toml[@MESH:RULES] ...
"""
import hashlib, json, os, subprocess, sys, tempfile

os.environ["JAX_PLATFORMS"] = "cuda"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools", "oracle"))
import jax  # noqa: E402
import numpy as np  # noqa: E402
from test_jax_compare import DTYPES, expr, param_key, raw  # noqa: E402


_compiled = {}


def jax_param(init, shape, dtype, key):
    # One jitted function per distinct initializer (constants stay compile-time constants).
    f = _compiled.get((init, shape, dtype))
    if f is None:
        f = _compiled[(init, shape, dtype)] = jax.jit(expr(init, shape, dtype))
    return f(key)


def main():
    exe, seed, models = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}", flush=True)
    failures = 0
    for spec in models:
        model, _, sharding = spec.partition("@")
        extra = []
        if sharding:
            mesh, _, rules = sharding.partition(":")
            extra = ["--mesh", mesh] + (["--rules", rules] if rules else [])
        with tempfile.TemporaryDirectory() as tmp:
            rep_path = os.path.join(tmp, "report.json")
            subprocess.run([exe, "run", model, "--backend", "pjrt", "--seed", str(seed), "--digests", "--report", rep_path, *extra], check=True, cwd=ROOT)
            rep = json.load(open(rep_path))
        trace = json.loads(subprocess.run([exe, "trace", model, "--format", "json"], check=True, capture_output=True, text=True, cwd=ROOT).stdout)
        shards = rep["digests"]  # "fqn@mesh_device" -> sha256
        regions = rep.get("regions", {})
        same = total = 0
        for p in trace["params"]:
            fqn, shape, dtype = p["fqn"], tuple(p["shape"]), DTYPES[p["dtype"]]
            want = jax_param(p["init"], shape, dtype, param_key(seed, fqn))
            host = np.asarray(want)
            for key, digest in shards.items():
                if key.rsplit("@", 1)[0] != fqn:
                    continue
                total += 1
                off, loc = regions.get(key, ([0] * len(shape), list(shape)))
                piece = host[tuple(slice(o, o + n) for o, n in zip(off, loc))]
                if hashlib.sha256(raw(np.ascontiguousarray(piece))).hexdigest() == digest:
                    same += 1
                else:
                    failures += 1
                    print(f"MISMATCH {model} {sharding or 'unsharded'} {key} ({p['init']})", flush=True)
            del want, host
        print(f"{'ok ' if same == total else 'BAD'} {model} {sharding or 'unsharded'}: {same}/{total} shards bit-identical to JAX on {jax.devices()[0].device_kind}", flush=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
