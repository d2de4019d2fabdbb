"""torchtitan 0.3.0's Llama3 parameters and `init_states`, without torchtitan.

torchtitan 0.3.0 needs a newer torch than some machines have (on torch 2.11 its import stops
at `torch.distributed.fsdp.DataParallelMeshDims`). This module builds the same parameters (the
same FQNs, shapes and dtypes) and initializes them with the same torch calls in the same order
per tensor (1B ties the embedding to `lm_head`, as torchtitan's 1B does): `normal_` for the embedding, `trunc_normal_(std=0.02)` for q/k/v (three draws of the
stock wq/wk/wv shapes, interleaved per KV group into the fused `wqkv`, as
`_fused_qkv_param_init` does), depth-scaled `trunc_normal_` for wo/w2/w3, `ones_` for the
norms, `trunc_normal_(std=dim**-0.5, a=-3 std, b=3 std)` for `lm_head`, and the complex RoPE
table as a non-persistent buffer. python/tests/test_torchtitan.py checks that initc's capture
of it equals the capture of torchtitan's own module, tensor by tensor, bit for bit.

    with torch.device("meta"):
        model = Llama3(**FLAVORS["8B"])
"""
from __future__ import annotations

import math

import torch
import torch._dynamo  # noqa: F401
import torch.distributed.tensor  # noqa: F401
from torch import nn

# The two imports above: `import torchtitan.models.llama3` (0.3.0, torch 2.15) imports both
# (and 1 700 modules more), so a process holding torchtitan's model has them. Without them the
# first capture of this model would pay for them: torch's Python meta kernel of `cat` (through
# `torch._disable_dynamo`) imports torch._dynamo on its first call, and initc looks for
# DTensors only once torch.distributed.tensor is imported.

# torchtitan 0.3.0 llama3_configs: (dim, n_layers, n_heads, n_kv_heads, vocab, ffn hidden, rope theta)
FLAVORS = {
    "debugmodel": dict(dim=256, n_layers=6, n_heads=16, n_kv_heads=16, vocab=2048, ffn=768, max_seq_len=2048),
    "1B": dict(dim=2048, n_layers=16, n_heads=32, n_kv_heads=8, vocab=128256, ffn=8192, max_seq_len=131072, tie=True),
    "8B": dict(dim=4096, n_layers=32, n_heads=32, n_kv_heads=8, vocab=128256, ffn=14336, max_seq_len=131072),
    "70B": dict(dim=8192, n_layers=80, n_heads=64, n_kv_heads=8, vocab=128256, ffn=28672, max_seq_len=131072),
}


class _Weight(nn.Module):
    def __init__(self, *shape):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(*shape))


class _QKV(nn.Module):
    def __init__(self, dim, n_heads, n_kv_heads, hd):
        super().__init__()
        self.wqkv = _Weight((n_heads + 2 * n_kv_heads) * hd, dim)


class _Attention(nn.Module):
    def __init__(self, dim, n_heads, n_kv_heads):
        super().__init__()
        hd = dim // n_heads
        self.qkv_linear = _QKV(dim, n_heads, n_kv_heads, hd)
        self.wo = _Weight(dim, n_heads * hd)


class _FeedForward(nn.Module):
    def __init__(self, dim, ffn):
        super().__init__()
        self.w1, self.w2, self.w3 = _Weight(ffn, dim), _Weight(dim, ffn), _Weight(ffn, dim)


class _Block(nn.Module):
    def __init__(self, dim, n_heads, n_kv_heads, ffn):
        super().__init__()
        self.attention = _Attention(dim, n_heads, n_kv_heads)
        self.feed_forward = _FeedForward(dim, ffn)
        self.attention_norm = _Weight(dim)
        self.ffn_norm = _Weight(dim)


class Llama3(nn.Module):
    def __init__(self, dim, n_layers, n_heads, n_kv_heads, vocab, ffn, max_seq_len, theta=500000.0, tie=False, init=False):
        super().__init__()
        self.dims = (dim, n_layers, n_heads, n_kv_heads, vocab, ffn, max_seq_len, theta)
        self.tok_embeddings = _Weight(vocab, dim)
        self.layers = nn.ModuleDict({str(i): _Block(dim, n_heads, n_kv_heads, ffn) for i in range(n_layers)})
        self.norm = _Weight(dim)
        self.lm_head = _Weight(vocab, dim)
        self.tie = tie
        if tie:  # enable_weight_tying: the embedding is lm_head's weight (lm_head's init)
            self.tok_embeddings.weight = self.lm_head.weight
        hd = dim // n_heads
        self.register_buffer("freqs_cis", torch.empty(max_seq_len, hd // 2, dtype=torch.complex64), persistent=False)
        if init:  # a constructor that initializes (the call shape torchax's initialize_model_sharded jits)
            self.init_states()

    @torch.no_grad()
    def init_states(self, buffer_device=None):
        dim, n_layers, n_heads, n_kv_heads, vocab, ffn, max_seq_len, theta = self.dims
        hd = dim // n_heads
        if not self.tie:
            nn.init.normal_(self.tok_embeddings.weight, mean=0.0, std=1.0)
        for i, layer in self.layers.items():
            std = 0.02 / (2 * (int(i) + 1)) ** 0.5
            t = layer.attention.qkv_linear.wqkv.weight
            q = t.new_empty(n_heads * hd, dim)
            k = t.new_empty(n_kv_heads * hd, dim)
            v = t.new_empty(n_kv_heads * hd, dim)
            for x in (q, k, v):
                nn.init.trunc_normal_(x, mean=0.0, std=0.02)
            g = n_heads // n_kv_heads
            fused = torch.cat([q.view(n_kv_heads, g, hd, dim), k.view(n_kv_heads, 1, hd, dim), v.view(n_kv_heads, 1, hd, dim)], dim=1)
            t.copy_(fused.reshape(-1, dim))
            nn.init.trunc_normal_(layer.attention.wo.weight, mean=0.0, std=std)
            nn.init.trunc_normal_(layer.feed_forward.w1.weight, mean=0.0, std=0.02)
            nn.init.trunc_normal_(layer.feed_forward.w2.weight, mean=0.0, std=std)
            nn.init.trunc_normal_(layer.feed_forward.w3.weight, mean=0.0, std=std)
            nn.init.ones_(layer.attention_norm.weight)
            nn.init.ones_(layer.ffn_norm.weight)
        nn.init.ones_(self.norm.weight)
        s = dim**-0.5
        nn.init.trunc_normal_(self.lm_head.weight, mean=0.0, std=s, a=-3 * s, b=3 * s)
        # the RoPE table (torch computes it; not a parameter): plain theta-scaled frequencies
        dev = buffer_device or self.freqs_cis.device
        freqs = 1.0 / (theta ** (torch.arange(0, hd, 2, device=dev)[: hd // 2].float() / hd))
        t = torch.arange(max_seq_len, device=dev, dtype=torch.float32)
        self.freqs_cis = torch.polar(torch.ones(max_seq_len, hd // 2, device=dev), torch.outer(t, freqs))


def param_count(**dims) -> int:
    d, L, H, Hkv, V, F = dims["dim"], dims["n_layers"], dims["n_heads"], dims["n_kv_heads"], dims["vocab"], dims["ffn"]
    hd = d // H
    return 2 * V * d + d + L * ((H + 2 * Hkv) * hd * d + d * H * hd + 3 * F * d + 2 * d)


__all__ = ["FLAVORS", "Llama3", "param_count", "math"]
