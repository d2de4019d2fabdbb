"""Anchors for the CPU engine benchmark: JAX's jax.jit of the same init on XLA:CPU (all cores) and
numpy's default_rng().standard_normal (one core), best of 3 after warm-up. One JSON line per row."""
import json, os, sys, time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
import jax, jax.numpy as jnp
import numpy as np

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1 << 26
shape = (n // 4096, 4096)


def best(f, reps=3):
    f()
    ts = []
    for _ in range(reps):
        s = time.perf_counter()
        f()
        ts.append(time.perf_counter() - s)
    return min(ts)


key = jax.random.PRNGKey(0)
for label, fn in [("normal", lambda k: jax.random.normal(k, shape, jnp.float32) * 0.02),
                  ("truncated_normal", lambda k: jax.random.truncated_normal(k, -100.0, 100.0, shape, jnp.float32) * 0.02)]:
    f = jax.jit(fn)
    t = best(lambda: jax.block_until_ready(f(key)))
    print(json.dumps({"system": "jax-jit-xla-cpu", "dist": label, "threads": os.cpu_count(), "elements": n, "seconds": t, "gbps": n * 4 / t / 1e9}))
rng = np.random.default_rng(0)
t = best(lambda: rng.standard_normal(n, dtype=np.float32))
print(json.dumps({"system": "numpy-default_rng", "dist": "normal", "threads": 1, "elements": n, "seconds": t, "gbps": n * 4 / t / 1e9}))
