"""Oracle: XLA:CPU runs the shard programs that `initc run --backend pjrt` executes on GPUs.

`initc lower --shard-programs DIR` writes every execute of a run: its program (plain or batched,
launches fused by 4), its static words (keys, key schedules, counter bases, host constants for
the seed) and its table arguments (fast-mode bf16). This compiles each program with jaxlib's
PJRT CPU client, runs every execute with those words, and checks each returned shard against
`initc run --device K` (the CPU engine) bit for bit. So CI exercises the accelerator path
(programs, packing, batching, tables) without an accelerator; the GPU tests in
crates/initc-device/tests/pjrt.rs run the same programs through initc's own PJRT binding.
Run by tools/test with the project venv; exits non-zero on a failure.
"""
import json, os, subprocess, sys, tempfile, time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
import jax
import numpy as np
from jax.extend import backend as jex_backend
from jax._src.lib import xla_client as xc
from safetensors.numpy import load_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# (example, [model] overrides, extra initc args, seed). More layers than the examples have, and
# `--batch` above the default (2 launches per execute), so that batches hold several groups of 4
# launches (10 layers at --batch 10: groups of 4, 4 and 2).
CASES = [
    ("llama3_tiny", {"dtype": "bf16", "n_layers": 10}, ["--rng", "fast", "--mesh", "fsdp=2,tp=2", "--rules", "fsdp+tp", "--batch", "10"], 7),
    ("llama3_tiny", {"n_layers": 6}, ["--rng", "fast", "--mesh", "fsdp=2", "--rules", "fsdp"], 2**32 + 5),
    ("llama3_tiny", {"n_layers": 5}, ["--rng", "jax"], 0),
    ("llama3_tiny", {"dtype": "bf16", "n_layers": 5}, ["--rng", "jax", "--mesh", "tp=2", "--rules", "tp"], 3),
    ("gpt2_tiny", {}, ["--rng", "fast", "--mesh", "fsdp=2,tp=4", "--rules", "fsdp+tp", "--uneven", "pad"], 11),
    ("llama3_tiny", {"n_layers": 9}, ["--rng", "fast", "--batch", "1"], 5),
    # JAX's own 16-bit draws (an IR a frontend writes for `jax.random.*(..., dtype=bfloat16)`;
    # initializers never emit them): fast mode's 7-bit lanes and their pair tables
    ("llama3_tiny", {"jax16": True, "n_layers": 6}, ["--rng", "fast", "--mesh", "fsdp=2,tp=2", "--rules", "fsdp+tp", "--batch", "16"], 7),
    # torchtitan 0.3.0's fused wqkv [96,64] (reshape(concat(q, k, v)) per KV group: q's rows
    # 0..32, k's 0..8, v's 0..8, then group 1): one shard program concatenating the parts'
    # programs. fsdp=4 (24 rows) and fsdp=8 (12 rows) cut groups and parts mid-block.
    ("titan030", {}, ["--rng", "jax", "--batch", "8"], 1),
    ("titan030", {"dtype": "bf16"}, ["--rng", "fast"], 2),
    ("titan030", {}, ["--rng", "fast", "--mesh", "fsdp=4", "--rules", "fsdp"], 3),
    ("titan030", {"dtype": "bf16"}, ["--rng", "jax", "--mesh", "fsdp=4", "--rules", "fsdp"], 4),
    ("titan030", {"dtype": "bf16"}, ["--rng", "fast", "--mesh", "fsdp=8", "--rules", "fsdp"], 2**32 + 6),
    ("titan030", {}, ["--rng", "jax", "--mesh", "fsdp=8", "--rules", "fsdp", "--batch", "1"], 8),
    ("titan030", {"dtype": "bf16"}, ["--rng", "fast", "--mesh", "fsdp=2,tp=2", "--rules", "fsdp+tp"], 9),
    # a concatenation whose parts' rows ([3,4], [2,4]) are not the parameter's ([4,5]): each
    # fsdp=4 shard of 5 elements starts and ends mid-row of a part (pieces of partial rows)
    ("concat_rows", {}, ["--rng", "fast"], 10),
    ("concat_rows", {}, ["--rng", "jax"], 11),
    # whole KV groups: fsdp=2 of titan030 holds exactly one group per device, and fused3's
    # three groups of 8 rows give each fsdp=2 shard (12 rows) half a group and a whole one, whose
    # parts are computed in one call each and concatenated along the group's chunk dimension
    ("titan030", {}, ["--rng", "jax", "--mesh", "fsdp=2", "--rules", "fsdp"], 12),
    ("fused3", {}, ["--rng", "jax"], 13),
    ("fused3", {}, ["--rng", "fast"], 14),
]

# Models that are not examples: IR modules (IR) and model.tomls (INLINE).
IR = {
    "concat_rows": """module "concat_rows" seed=0
mesh [fsdp=4]
%0 = seed : key
%1 = fold_in %0, 0x00000001 : key
%2 = normal %1 : f32[3,4]
%3 = fold_in %0, 0x00000002 : key
%4 = uniform %3, min=-1.0, max=1.0 : f32[2,4]
%5 = concat %2, %4, dim=0 : f32[5,4]
%6 = reshape %5 : f32[4,5]
param "w" : f32[4,5] = %6, axes=[embed,mlp], init="traced", sharding=[{fsdp},{}]
""",
    "fused3": """module "fused3" seed=0
mesh [fsdp=2]
%0 = seed : key
%1 = split %0, 3 : key[3]
%2 = slice %1, start=[0], limit=[1] : key[1]
%3 = reshape %2 : key
%4 = normal %3 : f32[12,8]
%5 = reshape %4 : f32[3,2,2,8]
%6 = slice %1, start=[1], limit=[2] : key[1]
%7 = reshape %6 : key
%8 = uniform %7, min=-1.0, max=1.0 : f32[6,8]
%9 = reshape %8 : f32[3,1,2,8]
%10 = slice %1, start=[2], limit=[3] : key[1]
%11 = reshape %10 : key
%12 = normal %11 : f32[6,8]
%13 = reshape %12 : f32[3,1,2,8]
%14 = concat %5, %9, %13, dim=1 : f32[3,4,2,8]
%15 = reshape %14 : f32[24,8]
param "wqkv" : f32[24,8] = %15, axes=[qkv,embed], init="traced", sharding=[{fsdp},{}]
""",
}
INLINE = {
    "titan030": '[model]\npreset = "llama3"\ntorchtitan = "0.3.0"\ndim = 64\nn_layers = 2\nn_heads = 8\nn_kv_heads = 2\nvocab_size = 128\nmultiple_of = 32\n',
}


def initc(*args):
    exe = os.environ.get("INITC_BIN") or os.path.join(ROOT, "target", "debug", "initc")
    return subprocess.run([exe, *args], check=True, capture_output=True, cwd=ROOT).stdout


def model_file(tmp, example, overrides):
    if example in IR:
        path = os.path.join(tmp, f"{example}-{len(os.listdir(tmp))}.txt")
        open(path, "w").write(IR[example])
        return path
    text = INLINE[example] if example in INLINE else open(os.path.join(ROOT, "examples", f"{example}.toml")).read()
    for key, value in overrides.items():
        if key == "jax16":
            continue
        if key == "dtype":
            text = text.replace("[model]\n", f'[model]\ndtype = "{value}"\n', 1)
        else:
            lines = [f"{key} = {value}" if line.split("=")[0].strip() == key else line for line in text.splitlines()]
            text = "\n".join(lines) + "\n"
    path = os.path.join(tmp, f"{example}-{len(os.listdir(tmp))}.toml")
    open(path, "w").write(text)
    if overrides.get("jax16"):
        # the f32 model's IR with every f32 type bf16: draws are JAX 16-bit draws
        ir = initc("trace", path).decode().replace("f32[", "bf16[")
        path = path[:-len(".toml")] + ".txt"
        open(path, "w").write(ir)
    return path


def words(path):
    return np.fromfile(path, dtype="<u4")


def main():
    be = jex_backend.get_backend("cpu")
    dev = be.devices()[0]
    opts = jex_backend.get_compile_options(num_replicas=1, num_partitions=1, device_assignment=np.array([[dev.id]]))
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for example, overrides, extra, seed in CASES:
            name = f"{example} {overrides} {' '.join(extra)}"
            src = model_file(tmp, example, overrides)
            export = os.path.join(tmp, "export")
            lower_extra = [a for a in extra]
            initc("lower", src, *lower_extra, "--seed", str(seed), "--shard-programs", export)
            manifest = json.load(open(os.path.join(export, "manifest.json")))
            t0 = time.time()
            exes = {}
            executes = shards = 0
            run_extra = [a for i, a in enumerate(extra) if a != "--batch" and (i == 0 or extra[i - 1] != "--batch")]
            sharded = "--mesh" in extra or len(manifest["devices"]) > 1
            for d in manifest["devices"]:
                k = d["mesh_device"]
                out = os.path.join(tmp, f"cpu-{k}")
                initc("run", src, *run_extra, *(["--device", str(k)] if sharded else []), "--seed", str(seed), "--out", out)
                want = load_file(os.path.join(out, "model.safetensors"))
                for b in d["batches"]:
                    prog = b["program"]
                    if prog not in exes:
                        code = open(os.path.join(export, prog)).read()
                        exes[prog] = be.compile_and_load(code, xc.DeviceList((dev,)), opts)
                    args = [words(os.path.join(export, s)) for s in b["statics"]]
                    for l in b["launches"]:
                        args += [words(os.path.join(export, t)) for t in l["tables"]]
                    outs = exes[prog].execute_sharded([jax.device_put(a, dev) for a in args]).disassemble_into_single_device_arrays()
                    executes += 1
                    if len(outs) != len(b["launches"]):
                        sys.exit(f"FAIL {name}: {prog} returned {len(outs)} arrays for {len(b['launches'])} launches")
                    for l, o in zip(b["launches"], outs):
                        got, exp = np.asarray(o[0]), want[l["fqn"]]
                        shards += 1
                        if list(got.shape) != list(exp.shape) or got.tobytes() != np.ascontiguousarray(exp).tobytes():
                            diff = "shape" if list(got.shape) != list(exp.shape) else int((got.view(np.uint8) != exp.view(np.uint8)).sum())
                            print(f"FAIL {name}: device {k} `{l['fqn']}` ({prog}): {diff} bytes differ from the CPU engine")
                            failures += 1
            print(f"ok   {name}: {len(exes)} programs, {executes} executes, {shards} shards, seed {seed}, {time.time() - t0:.1f} s")
    if failures:
        sys.exit(f"{failures} failure(s)")
    print("shard-program oracle: every shard matches the CPU engine bit for bit")


if __name__ == "__main__":
    main()
