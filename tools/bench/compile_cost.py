"""Compile cost of initc's StableHLO vs the number of identical layers.

For llama3 with the 8B example's widths and n_layers in LAYERS, this measures the emitted module
size (text and bytecode), `initc lower` wall time, and XLA:CPU compile time (jaxlib's PJRT CPU
client, 1 device, compile only: nothing is run, so no 8B-sized buffers are allocated).
Usage: .venv/bin/python tools/bench/compile_cost.py [LAYERS...]   (INITC_BIN, default target/release/initc)
Prints one JSON row per config.
"""
import json, os, subprocess, sys, tempfile, time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
import numpy as np
from jax.extend import backend as jex_backend
from jax._src.lib import xla_client as xc

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXE = os.environ.get("INITC_BIN") or os.path.join(ROOT, "target", "release", "initc")
TOML = """[model]
preset = "llama3"
dim = 4096
n_layers = {n}
n_heads = 32
n_kv_heads = 8
vocab_size = 128256
multiple_of = 1024
ffn_dim_multiplier = 1.3
"""


def best(f, reps=3):
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return min(ts)


def main():
    layers = [int(a) for a in sys.argv[1:]] or [2, 16, 32, 126]
    be = jex_backend.get_backend("cpu")
    dev = be.devices()[:1]
    opts = jex_backend.get_compile_options(num_replicas=1, num_partitions=1, device_assignment=np.array([[dev[0].id]]))
    with tempfile.TemporaryDirectory() as tmp:
        for n in layers:
            toml = os.path.join(tmp, f"l{n}.toml")
            open(toml, "w").write(TOML.format(n=n))
            mlir, bc = os.path.join(tmp, f"l{n}.mlir"), os.path.join(tmp, f"l{n}.mlirbc")
            lower_s = best(lambda: subprocess.run([EXE, "lower", toml, "-o", mlir], check=True))
            subprocess.run([EXE, "lower", toml, "-o", bc], check=True)
            text = open(mlir).read()
            t = time.perf_counter()
            be.compile_and_load(text, xc.DeviceList(tuple(dev)), opts)
            compile_s = time.perf_counter() - t
            row = {"n_layers": n, "params": 9 * n + 3, "text_bytes": len(text), "bytecode_bytes": os.path.getsize(bc), "lower_s": round(lower_s, 4), "xla_cpu_compile_s": round(compile_s, 2)}
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
