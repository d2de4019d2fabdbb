"""transformers GPT-2 and Llama built on meta: names, values equal to the gpt2/hf_llama presets,
the padding row, tied heads, and distributions against transformers' own init."""

from __future__ import annotations

import pytest
import torch
from scipy import stats

import initc
import initc.torch as it
from conftest import assert_same_bits, values

transformers = pytest.importorskip("transformers")
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM  # noqa: E402

transformers.logging.set_verbosity_error()


def gpt2_cfg():
    return GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=100, n_positions=32, bos_token_id=0, eos_token_id=0)


def llama_cfg(**kw):
    return LlamaConfig(vocab_size=100, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, bos_token_id=0, eos_token_id=0, **kw)


def on_meta(cls, cfg):
    with torch.device("meta"):
        return cls(cfg)


def test_gpt2_equals_preset_and_ties_lm_head():
    model = on_meta(GPT2LMHeadModel, gpt2_cfg())
    prog = it.trace(model)
    ref = initc.Program.from_toml('[model]\npreset = "gpt2"\nvocab_size = 100\nn_embd = 64\nn_layer = 2\nn_head = 4\nn_positions = 32\n')
    assert [f for f, *_ in prog.params] == [f for f, *_ in ref.params]
    assert prog.aliases == {"transformer.wte.weight": ["lm_head.weight"]}
    it.materialize(model, prog, seed=5)
    assert model.lm_head.weight is model.transformer.wte.weight
    for f, t in model.named_parameters():
        assert_same_bits(t, values(ref, f, seed=5), f)


def test_a_program_loaded_from_a_file_fills_tied_weights(tmp_path):
    model = on_meta(GPT2LMHeadModel, gpt2_cfg())
    prog = it.trace(model)
    prog.save(str(tmp_path / "gpt2.pb"))
    model = on_meta(GPT2LMHeadModel, gpt2_cfg())
    it.materialize(model, initc.Program.load(str(tmp_path / "gpt2.pb")), seed=5)
    assert model.lm_head.weight is model.transformer.wte.weight
    assert_same_bits(model.lm_head.weight, values(prog.program, "transformer.wte.weight", seed=5))


def test_llama_equals_preset_with_padding_row():
    model = on_meta(LlamaForCausalLM, llama_cfg(pad_token_id=3))
    prog = it.trace(model)
    ref = initc.Program.from_toml('[model]\npreset = "hf_llama"\nvocab_size = 100\nhidden_size = 64\nintermediate_size = 128\nnum_hidden_layers = 2\nnum_attention_heads = 4\nnum_key_value_heads = 2\n')
    assert [f for f, *_ in prog.params] == [f for f, *_ in ref.params]
    it.materialize(model, prog, seed=1)
    for f, t in model.named_parameters():
        want = values(ref, f, seed=1)
        if f == "model.embed_tokens.weight":
            assert torch.count_nonzero(t[3]) == 0, "HF zeroes the pad_token_id row"
            want[3] = 0
        assert_same_bits(t, want, f)
    # the RoPE inverse frequencies are left to torch, which recomputes them after materializing
    assert set(prog.torch_buffers) == {"model.rotary_emb.inv_freq", "model.rotary_emb.original_inv_freq"}
    with torch.device("cpu"):
        fresh = LlamaForCausalLM(llama_cfg(pad_token_id=3))
    assert torch.equal(model.model.rotary_emb.inv_freq, fresh.model.rotary_emb.inv_freq)


def test_distributions_match_transformers():
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=512, hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=2, bos_token_id=0, eos_token_id=0)
    model = on_meta(LlamaForCausalLM, cfg)
    it.materialize(model, it.trace(model), seed=2)
    ref = LlamaForCausalLM(cfg)
    want = dict(ref.named_parameters())
    for f, t in model.named_parameters():
        x, y = t.detach().reshape(-1).numpy(), want[f].detach().reshape(-1).numpy()
        if y.std() == 0:
            assert (x == y).all(), f
            continue
        assert stats.ks_2samp(x, y).pvalue > 1e-3, f
        assert 0.97 < x.std() / y.std() < 1.03, f
