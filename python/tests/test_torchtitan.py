"""torchtitan 0.3.0 Llama3 built on meta: the capture equals the llama3 preset (torchtitan =
"0.3.0") bit for bit, the saved program runs in the CLI with the same bits, and every tensor's
distribution matches torchtitan's own init."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest
import torch
from scipy import stats

import initc
import initc.torch as it
from conftest import assert_same_bits, values

from titan_models import tiny_config
from torchtitan.models.llama3 import llama3_configs


def preset(dim, n_heads, n_kv_heads, n_layers, vocab, multiple_of, tie=False, dtype="f32"):
    text = f"""[model]
preset = "llama3"
dtype = "{dtype}"
torchtitan = "0.3.0"
dim = {dim}
n_layers = {n_layers}
n_heads = {n_heads}
n_kv_heads = {n_kv_heads}
vocab_size = {vocab}
multiple_of = {multiple_of}
enable_weight_tying = {"true" if tie else "false"}
"""
    return initc.Program.from_toml(text, "llama3_030.toml")


def build(cfg):
    with torch.device("meta"):
        return cfg.build()


CASES = {
    "debugmodel": (lambda: llama3_configs["debugmodel"](attn_backend="flex"), (256, 16, 16, 6, 2048, 256, False)),
    "gqa": (lambda: tiny_config(n_kv_heads=2), (64, 8, 2, 2, 128, 32, False)),
    "tied": (lambda: tiny_config(n_kv_heads=4, tie=True), (64, 8, 4, 2, 128, 32, True)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_capture_equals_preset(case):
    make_cfg, p = CASES[case]
    model = build(make_cfg())
    prog = it.trace(model)
    ref = preset(*p)
    names = [f for f, *_ in prog.params]
    assert names == [f for f, *_ in ref.params], "same tensors, same order"
    assert names == [n for n, _ in model.named_parameters()], "module FQNs (tied weights once)"
    it.materialize(model, prog, seed=7)
    state = dict(model.named_parameters(remove_duplicate=False))
    for f in names:
        assert_same_bits(state[f], values(ref, f, seed=7), f)
    if p[-1]:
        assert model.lm_head.weight is model.tok_embeddings.weight
        assert prog.aliases == {"tok_embeddings.weight": ["lm_head.weight"]}
    # the fused weight draws q, k, v from split(key(wqkv), 3): change nothing else, re-key one
    # piece, and the other two stay
    w = state["layers.0.attention.qkv_linear.wqkv.weight"]
    assert w.shape[0] == (p[1] + 2 * p[2]) * (p[0] // p[1])


def test_bf16_capture_equals_bf16_preset():
    """16-bit parameters: torchtitan's inits on bf16 tensors (the fused q/k/v temporaries are
    bf16 too) lower to the same f32-draw-then-round expressions as the preset's."""
    model = build(tiny_config(n_kv_heads=2))
    for p in model.parameters():
        p.data = p.data.to(torch.bfloat16)
    prog = it.trace(model)
    ref = preset(64, 8, 2, 2, 128, 32, dtype="bf16")
    it.materialize(model, prog, seed=3)
    for f, t in model.named_parameters():
        assert t.dtype == torch.bfloat16
        assert_same_bits(t, values(ref, f, seed=3), f)
    w = model.layers["0"].attention.qkv_linear.wqkv.weight.float()
    assert 0.019 < w.std().item() < 0.021 and torch.unique(w).numel() > 1000


def test_rope_cache_is_computed_by_torch():
    model = build(tiny_config(n_kv_heads=2))
    prog = it.trace(model)
    assert prog.torch_buffers == {f"layers.{i}.attention.rope.cache": "non-persistent buffer" for i in range(2)}
    it.materialize(model, prog, seed=0)
    with torch.device("cpu"):
        fresh = tiny_config(n_kv_heads=2).build()
    for i in range(2):
        got = model.layers[str(i)].attention.rope.cache
        assert got.dtype == torch.complex64
        assert torch.equal(got, fresh.layers[str(i)].attention.rope.cache)


def test_saved_program_runs_in_the_cli(tmp_path, initc_cli):
    model = build(tiny_config(n_kv_heads=2))
    prog = it.trace(model, seed=11)
    for ext in ("pb", "txt"):
        path = str(tmp_path / f"m.{ext}")
        prog.save(path)
        assert initc.Program.load(path).text() == prog.text()
        out = tmp_path / f"out_{ext}"
        subprocess.run([initc_cli, "run", path, "--out", str(out)], check=True, capture_output=True)
    it.materialize(model, prog)  # the program's seed, 11
    from safetensors.torch import load_file

    ck = load_file(str(tmp_path / "out_pb" / "model.safetensors"))
    assert sorted(ck) == sorted(f for f, *_ in prog.params)
    state = dict(model.named_parameters())
    for f, t in ck.items():
        assert_same_bits(state[f], t, f)
    txt = subprocess.run([initc_cli, "trace", str(tmp_path / "m.pb"), "--format", "json"], check=True, capture_output=True, text=True).stdout
    assert json.loads(txt)["num_tensors"] == len(prog.params)
    pb = str(tmp_path / "m.pb")
    for args in (["lower", pb, "-o", str(tmp_path / "m.mlir")], ["plan", pb, "--mesh", "fsdp=2", "--rules", "fsdp"], ["verify", pb, "--mesh", "fsdp=2", "--mesh", "fsdp=2,tp=2", "--rules", "fsdp+tp", "--uneven", "pad"]):
        r = subprocess.run([initc_cli, *args], capture_output=True, text=True)
        assert r.returncode == 0, (args, r.stderr)
    assert "func.func public @main" in (tmp_path / "m.mlir").read_text()


def ks_and_std(a: torch.Tensor, b: torch.Tensor):
    x, y = a.detach().float().reshape(-1).numpy(), b.detach().float().reshape(-1).numpy()
    if x.std() == 0:
        return 1.0, float(np.array_equal(np.unique(x), np.unique(y)))
    return stats.ks_2samp(x, y).pvalue, float(x.std() / y.std())


def test_distribution_matches_torchtitan():
    torch.manual_seed(0)
    cfg = tiny_config(dim=256, n_heads=8, n_kv_heads=2, n_layers=2, vocab=512, multiple_of=64)
    model = build(cfg)
    it.materialize(model, it.trace(model), seed=3)
    with torch.device("cpu"):
        ref = cfg.build()
    ref.init_states()
    got, want = dict(model.named_parameters()), dict(ref.named_parameters())
    for f in got:
        p, r = ks_and_std(got[f], want[f])
        assert p > 1e-3, (f, p)
        assert 0.97 < r < 1.03, (f, r)


def _replica(**dims):
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "benches", "anchors"))
    from titan_llama3 import Llama3

    with torch.device("meta"):
        return Llama3(**dims)


@pytest.mark.parametrize("case,dims", [
    ("debugmodel", dict(dim=256, n_layers=6, n_heads=16, n_kv_heads=16, vocab=2048, ffn=768, max_seq_len=64)),
    ("gqa", dict(dim=64, n_layers=2, n_heads=8, n_kv_heads=2, vocab=128, ffn=192, max_seq_len=64)),
    ("tied", dict(dim=64, n_layers=2, n_heads=8, n_kv_heads=4, vocab=128, ffn=192, max_seq_len=64, tie=True)),
])
def test_benchmark_replica_equals_torchtitan(case, dims):
    """benches/anchors/titan_llama3.py stands in for torchtitan 0.3.0 where torchtitan does not
    import (the GPU machine's torch 2.11): its capture has the same tensors and initializers,
    and its values are torchtitan's bit for bit (and the titan_llama3.FLAVORS dims are
    torchtitan's)."""
    titan = build(CASES[case][0]())
    ours = _replica(**dims)
    pt, po = it.trace(titan), it.trace(ours)
    assert [p[:3] + (p[3],) for p in pt.params] == [p[:3] + (p[3],) for p in po.params]
    it.materialize(titan, pt, seed=5, buffers=False)
    it.materialize(ours, po, seed=5, buffers=False)
    mine = dict(ours.named_parameters(remove_duplicate=False))
    for f, t in titan.named_parameters(remove_duplicate=False):
        assert_same_bits(mine[f], t, f)


def test_benchmark_replica_flavors_match_torchtitan_shapes():
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "benches", "anchors"))
    from titan_llama3 import FLAVORS

    for flavor in ("1B", "8B", "70B"):
        titan = build(llama3_configs[flavor](attn_backend="flex"))
        ours = _replica(**FLAVORS[flavor])
        shapes = [(n, tuple(p.shape)) for n, p in titan.named_parameters(remove_duplicate=False)]
        assert shapes == [(n, tuple(p.shape)) for n, p in ours.named_parameters(remove_duplicate=False)], flavor
