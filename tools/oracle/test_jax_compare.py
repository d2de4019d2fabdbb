"""Oracle: `initc run` checkpoints equal jax.random + the documented key derivation, byte for byte.

For tiny llama3, gpt2 and the generic mlp example, and several seeds (including >= 2^32), this
recomputes every parameter independently with JAX on XLA:CPU, each initializer written as the
JAX expression of INIT_CONTRACT under jax.jit. It also checks that the checkpoint loads with the
`safetensors` package and that manifest.json's SHA-256s and digest are those of the bytes.
Run by tools/test with the project venv; exits non-zero on the first mismatch.
"""
import hashlib, json, math, os, re, subprocess, sys, tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
import jax
import jax.numpy as jnp
import numpy as np
from safetensors.flax import load_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CASES = [("llama3_tiny", [0, 42, 2**32 + 5]), ("gpt2_tiny", [7, 2**63 + 11]), ("mlp", [1234, 99])]
DTYPES = {"f32": jnp.float32, "bf16": jnp.bfloat16, "f16": jnp.float16}


def initc(*args):
    exe = os.environ.get("INITC_BIN") or os.path.join(ROOT, "target", "debug", "initc")
    return subprocess.run([exe, *args], check=True, capture_output=True, text=True, cwd=ROOT).stdout


def param_key(seed, fqn):
    root = jax.random.wrap_key_data(jnp.array([seed >> 32, seed & 0xFFFFFFFF], dtype=jnp.uint32))
    data = int.from_bytes(hashlib.sha256(fqn.encode()).digest()[:4], "big")
    return jax.random.fold_in(root, data)


def parse_init(s):
    m = re.fullmatch(r"(\w+)(?:\((.*)\))?", s)
    name, args = m.group(1), {}
    for part in filter(None, (m.group(2) or "").split(", ")):
        k, v = part.split("=")
        try:
            args[k] = float(v)
        except ValueError:
            args[k] = v
    return name, args


def torch_fans(shape):
    rf = math.prod(shape[2:])
    return shape[1] * rf, shape[0] * rf


def gain(nonlinearity, a):
    return {"linear": 1.0, "conv": 1.0, "sigmoid": 1.0, "tanh": 5.0 / 3, "relu": math.sqrt(2.0),
            "selu": 3.0 / 4, "leaky_relu": math.sqrt(2.0 / (1 + a ** 2))}[nonlinearity]


NORMAL_REACH = 6.0  # no f32 normal draw exceeds it: a truncation beyond it on both sides is vacuous


def expr(init, shape, dtype):
    """The JAX expression (a function of the key) for an initializer string of the manifest.

    README "Distribution contract": a 16-bit parameter's random initializer is the f32 expression
    rounded once, `expr(f32).astype(dtype)`; a truncated normal with vacuous bounds is the normal.
    """
    name, _ = parse_init(init)
    if dtype != jnp.float32 and name not in ("zeros", "ones", "constant"):
        f = expr(init, shape, jnp.float32)
        return lambda k: f(k).astype(dtype)
    name, a = parse_init(init)
    def affine(z, mean, std):
        z = z if std == 1.0 else z * std
        return z if mean == 0.0 else z + mean
    if name in ("zeros", "ones", "constant"):
        v = {"zeros": 0.0, "ones": 1.0}.get(name, a.get("value"))
        return lambda k: jnp.full(shape, v, dtype)
    if name == "normal":
        return lambda k: affine(jax.random.normal(k, shape, dtype), a["mean"], a["std"])
    if name == "uniform":
        return lambda k: jax.random.uniform(k, shape, dtype, a["a"], a["b"])
    if name == "trunc_normal":
        lo, hi = (a["a"] - a["mean"]) / a["std"], (a["b"] - a["mean"]) / a["std"]
        if lo <= -NORMAL_REACH and hi >= NORMAL_REACH:
            return lambda k: affine(jax.random.normal(k, shape, dtype), a["mean"], a["std"])
        return lambda k: affine(jax.random.truncated_normal(k, lo, hi, shape, dtype), a["mean"], a["std"])
    if name == "flax_truncated_normal":
        lo, hi = a["lower"], a["upper"]
        if lo <= -NORMAL_REACH and hi >= NORMAL_REACH:
            return lambda k: jax.random.normal(k, shape, dtype) * a["stddev"]
        return lambda k: jax.random.truncated_normal(k, lo, hi, shape, dtype) * a["stddev"]
    if name in ("kaiming_uniform", "kaiming_normal"):
        fi, fo = torch_fans(shape)
        std = gain(a["nonlinearity"], a["a"]) / math.sqrt(fi if a["mode"] == "fan_in" else fo)
        if name == "kaiming_uniform":
            b = math.sqrt(3.0) * std
            return lambda k: jax.random.uniform(k, shape, dtype, -b, b)
        return lambda k: jax.random.normal(k, shape, dtype) * std
    if name in ("xavier_uniform", "xavier_normal"):
        fi, fo = torch_fans(shape)
        std = a["gain"] * math.sqrt(2.0 / float(fi + fo))
        if name == "xavier_uniform":
            b = math.sqrt(3.0) * std
            return lambda k: jax.random.uniform(k, shape, dtype, -b, b)
        return lambda k: jax.random.normal(k, shape, dtype) * std
    if name == "variance_scaling":
        f = jax.nn.initializers.variance_scaling(a["scale"], a["mode"], a["distribution"], in_axis=int(a["in_axis"]), out_axis=int(a["out_axis"]))
        return lambda k: f(k, shape, dtype)
    raise SystemExit(f"oracle has no JAX expression for initializer {init!r}")


def raw(x):
    x = np.asarray(x)
    return x.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[x.dtype.itemsize]).tobytes()


def check(example, seed, out):
    initc("run", f"examples/{example}.toml", "--out", out, "--seed", str(seed))
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    tensors = load_file(os.path.join(out, "model.safetensors"))
    assert manifest["seed"] == seed, manifest["seed"]
    digests = b""
    for p in manifest["params"]:
        fqn, shape, dtype = p["fqn"], tuple(p["shape"]), DTYPES[p["dtype"]]
        got = tensors[fqn]
        assert got.shape == shape and got.dtype == dtype, (fqn, got.shape, got.dtype)
        want = jax.jit(expr(p["init"], shape, dtype))(param_key(seed, fqn))
        gb, wb = raw(got), raw(want)
        if gb != wb:
            g, w = np.frombuffer(gb, np.uint8), np.frombuffer(wb, np.uint8)
            es = np.asarray(got).dtype.itemsize
            bad = int(np.flatnonzero(g != w)[0]) // es
            n_bad = int((g.reshape(-1, es) != w.reshape(-1, es)).any(axis=1).sum())
            raise SystemExit(f"MISMATCH {example} seed={seed} {fqn} ({p['init']}): {n_bad} of {math.prod(shape)} elements differ, "
                             f"first at flat index {bad}: initc {np.asarray(got).ravel()[bad]!r} vs jax {np.asarray(want).ravel()[bad]!r}")
        sha = hashlib.sha256(gb).digest()
        assert sha.hex() == p["sha256"], (fqn, "manifest sha256")
        digests += sha
    assert hashlib.sha256(digests).hexdigest() == manifest["digest"], "manifest digest"
    return len(manifest["params"])


def main():
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}")
    with tempfile.TemporaryDirectory() as tmp:
        for example, seeds in CASES:
            for seed in seeds:
                n = check(example, seed, os.path.join(tmp, f"{example}-{seed}"))
                print(f"ok  {example:<12} seed={seed:<20} {n} tensors bit-identical to jax.random")


if __name__ == "__main__":
    main()
