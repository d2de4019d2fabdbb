"""Small torchtitan 0.3.0 Llama3 configs for the tests."""

from __future__ import annotations

from torchtitan.models.common import ComplexRoPE, Embedding, Linear, RMSNorm, compute_ffn_hidden_dim
from torchtitan.models.llama3 import Llama3Model, _build_llama3_layers, _EMBEDDING_INIT, _EMBEDDING_SKIP_INIT, _NORM_INIT, _output_linear_init


def tiny_config(dim=64, n_heads=8, n_kv_heads=None, n_layers=2, vocab=128, tie=False, multiple_of=32):
    """torchtitan's ``_debugmodel`` at other sizes (the same init functions)."""
    return Llama3Model.Config(
        dim=dim,
        vocab_size=vocab,
        enable_weight_tying=tie,
        tok_embeddings=Embedding.Config(num_embeddings=vocab, embedding_dim=dim, param_init=_EMBEDDING_SKIP_INIT if tie else _EMBEDDING_INIT),
        norm=RMSNorm.Config(normalized_shape=dim, param_init=_NORM_INIT),
        lm_head=Linear.Config(in_features=dim, out_features=vocab, param_init=_output_linear_init(dim)),
        layers=_build_llama3_layers(
            n_layers=n_layers, dim=dim, n_heads=n_heads, n_kv_heads=n_kv_heads,
            hidden_dim=compute_ffn_hidden_dim(dim, multiple_of=multiple_of),
            rope=ComplexRoPE.Config(dim=dim // n_heads, max_seq_len=64, theta=500000, scaling="llama"),
            attn_backend="flex",
        ),
    )
