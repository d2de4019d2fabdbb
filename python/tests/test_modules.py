"""Hand-written modules: custom init with slices, strided and transposed views, scalar
arithmetic and temporaries (checked against jax.random under jax.jit, the README's key
derivation), the AutoParallel-style module (assignment, fill, random fill), a kaiming conv
net with BatchNorm, tied weights, ``param.data =`` and ``register_buffer``."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

import initc.torch as it

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402


def key(seed: int, fqn: str):
    root = jnp.array([seed >> 32, seed & 0xFFFFFFFF], jnp.uint32)  # PRNGKey(seed) for any u64 seed
    return jax.random.fold_in(root, int.from_bytes(hashlib.sha256(fqn.encode()).digest()[:4], "big"))


class Custom(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.empty(6, 8))
        self.emb = nn.Embedding(10, 4, padding_idx=0)
        self.fused = nn.Parameter(torch.empty(12, 4))
        self.reset_parameters()

    def reset_parameters(self):
        with torch.no_grad():
            self.w.normal_()  # draw 0 of w
            self.w[:, :3].uniform_(-1, 1)  # draw 1 of w
            self.w.mul_(2.0).add_(0.5)
            self.w[5].zero_()
            self.w.t()[7].fill_(3.0)  # column 7, through a transposed view
            self.w[::2, 4] = 1.5  # a strided slice
            q = torch.randn(4, 4)  # temporaries: their draws end in `fused`
            k = torch.rand(8, 4)
            self.fused.copy_(torch.cat([q * 0.1, k - 0.5], 0))


def custom_reference(seed):
    @jax.jit
    def w(k):
        k0, k1 = jax.random.split(k, 2)
        x = jax.random.normal(k0, (6, 8), jnp.float32)
        x = x.at[:, :3].set(jax.random.uniform(k1, (6, 3), jnp.float32, -1.0, 1.0))
        x = x * 2.0 + 0.5
        x = x.at[5].set(0.0).at[:, 7].set(3.0).at[::2, 4].set(1.5)
        return x

    @jax.jit
    def fused(k):
        k0, k1 = jax.random.split(k, 2)
        return jnp.concatenate([jax.random.normal(k0, (4, 4), jnp.float32) * 0.1, jax.random.uniform(k1, (8, 4), jnp.float32) - 0.5])

    @jax.jit
    def emb(k):
        return jax.random.normal(k, (10, 4), jnp.float32).at[0].set(0.0)

    return {"w": w(key(seed, "w")), "emb.weight": emb(key(seed, "emb.weight")), "fused": fused(key(seed, "fused"))}


def test_custom_init_equals_jax():
    prog = it.trace(Custom)
    model = it.materialize(prog.module, prog, seed=2**40 + 3)
    ref = custom_reference(2**40 + 3)
    for f, t in model.named_parameters():
        np.testing.assert_array_equal(t.detach().numpy().view(np.uint32), np.asarray(ref[f]).view(np.uint32), err_msg=f)


def test_seed_changes_values():
    prog = it.trace(Custom)
    a = it.materialize(prog.module, prog, seed=1).w.detach().clone()
    b = it.materialize(prog.module, prog, seed=2).w.detach().clone()
    assert not torch.equal(a, b)
    assert torch.equal(a[5], b[5]) and torch.equal(a[:, 7], b[:, 7])


class AutoParallelStyle(nn.Module):
    """The issue's seed: init code written in single-GPU style."""

    def __init__(self, dim=8):
        super().__init__()
        self.dim = dim
        self.linear = nn.Linear(dim, dim)
        self.other = nn.Linear(dim, dim)
        self.register_buffer("noise", torch.empty(dim))

    def init_weights(self):
        self.linear.weight = nn.Parameter(torch.ones(self.dim, self.dim) * 9.0)
        self.linear.bias.fill_(98.6)
        self.other.weight.data = torch.randn(self.dim, self.dim) * 0.5
        self.other.bias.uniform_(-0.1, 0.1)
        self.noise.normal_(0.0, 2.0)


def test_autoparallel_style_module():
    with torch.device("meta"):
        model = AutoParallelStyle()
    prog = it.trace(model)
    assert [f for f, *_ in prog.params] == ["linear.weight", "linear.bias", "other.weight", "other.bias", "noise"]
    it.materialize(model, prog, seed=0)
    assert (model.linear.weight == 9.0).all() and (model.linear.bias == torch.tensor(98.6)).all()
    assert isinstance(model.linear.weight, nn.Parameter)

    @jax.jit
    def ref(k1, k2, k3):
        return (jax.random.normal(k1, (8, 8), jnp.float32) * 0.5, jax.random.uniform(k2, (8,), jnp.float32, -0.1, 0.1), jax.random.normal(k3, (8,), jnp.float32) * 2.0)

    w, b, n = ref(key(0, "other.weight"), key(0, "other.bias"), key(0, "noise"))
    for got, want in [(model.other.weight, w), (model.other.bias, b), (model.noise, n)]:
        np.testing.assert_array_equal(got.detach().numpy(), np.asarray(want))


class ConvNet(nn.Module):
    def __init__(self, c=32):
        super().__init__()
        self.conv1 = nn.Conv2d(16, c, 3)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, 2 * c, 3, groups=2)
        self.fc = nn.Linear(2 * c, 10)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)


def test_conv_net_kaiming():
    prog = it.trace(ConvNet)
    inits = {f: i for f, _, _, i in prog.params}
    assert inits["conv1.weight"] == "kaiming_normal(a=0.0, mode=fan_out, nonlinearity=relu)"
    assert inits["conv1.bias"] == "zeros" and inits["bn1.running_var"] == "ones"
    assert inits["fc.weight"].startswith("kaiming_uniform(a=2.23606797749979")
    assert prog.torch_buffers == {"bn1.num_batches_tracked": "dtype int64 has no initc dtype"}
    model = it.materialize(prog.module, prog, seed=4)
    assert model.bn1.num_batches_tracked.item() == 0, "recomputed by torch"
    torch.manual_seed(0)
    ref = ConvNet()
    for (f, t), r in zip(model.named_parameters(), ref.parameters()):
        x, y = t.detach().reshape(-1).numpy(), r.detach().reshape(-1).numpy()
        if y.std() == 0:
            assert (x == y).all(), f
        elif y.size >= 1000:  # statistics need samples; smaller tensors are checked by bound
            assert stats.ks_2samp(x, y).pvalue > 1e-3 and 0.95 < x.std() / y.std() < 1.05, f
        else:
            assert np.abs(x).max() <= 1 / np.sqrt(r.shape[-1] if r.dim() > 1 else 64), f


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(16, 8)
        self.head = nn.Linear(8, 16, bias=False)
        self.head.weight = self.emb.weight
        self.register_buffer("proj", torch.randn(8, 8))


def test_tied_weights_and_registered_buffer():
    prog = it.trace(Tied)
    assert [f for f, *_ in prog.params] == ["emb.weight", "proj"]
    assert prog.aliases == {"emb.weight": ["head.weight"]}
    model = it.materialize(prog.module, prog, seed=0)
    assert model.head.weight is model.emb.weight
    want = jax.jit(lambda k: jax.random.normal(k, (8, 8), jnp.float32))(key(0, "proj"))
    np.testing.assert_array_equal(model.proj.numpy(), np.asarray(want))


class Bf16(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.empty(64, 64, dtype=torch.bfloat16))
        with torch.no_grad():
            self.w.normal_(0.0, 0.02)


def test_raw_bf16_draw_is_f32_then_rounded():
    prog = it.trace(Bf16)
    text = prog.text()
    assert "= normal %2 : f32[64,64]" in text and "= convert %4 : bf16[64,64]" in text and "bf16[64,64] = normal" not in text
    model = it.materialize(prog.module, prog, seed=0)
    want = jax.jit(lambda k: (jax.random.normal(k, (64, 64), jnp.float32) * 0.02).astype(jnp.bfloat16))(key(0, "w"))
    np.testing.assert_array_equal(model.w.detach().view(torch.int16).numpy(), np.asarray(want).view(np.int16))


class Literal(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.empty(2, 3))
        self.v = nn.Parameter(torch.empty(3))

    def init_weights(self):
        self.w.copy_(torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]) * 0.5)
        self.v.uniform_(-3, 3).clamp_(-1, 1).div_(2.0)


def test_literals_and_chained_in_place_ops():
    with torch.device("meta"):
        model = Literal()
    prog = it.trace(model)
    it.materialize(model, prog, seed=9)
    assert model.w.tolist() == [[0.5, 1.0, 1.5], [2.0, 2.5, 3.0]]
    want = jax.jit(lambda k: jnp.clip(jax.random.uniform(k, (3,), jnp.float32, -3.0, 3.0), -1.0, 1.0) / 2.0)(key(9, "v"))
    np.testing.assert_array_equal(model.v.detach().numpy(), np.asarray(want))


class Factories(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.empty(5))
        self.b = nn.Parameter(torch.empty(4))
        self.c = nn.Parameter(torch.empty(3))
        self.d = nn.Parameter(torch.empty(2, 2))
        self.e = nn.Parameter(torch.empty(3, 3))

    def init_weights(self):
        self.a.copy_(torch.arange(5))
        self.b.copy_(torch.arange(2, 6))
        self.c.copy_(torch.arange(1.0, 2.5, 0.5))
        self.d.copy_(torch.full((2, 2), 7.0) + self.d.new_full((2, 2), 1.0))
        self.d.add_(torch.ones(2, 2), alpha=3)
        nn.init.eye_(self.e)
        self.e.mul_(torch.tensor([1.0, 2.0, 3.0]))


def test_factories_and_broadcasting():
    with torch.device("meta"):
        model = Factories()
    it.materialize(model, it.trace(model))
    assert model.a.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert model.b.tolist() == [2.0, 3.0, 4.0, 5.0]
    assert model.c.tolist() == [1.0, 1.5, 2.0]
    assert model.d.tolist() == [[11.0, 11.0], [11.0, 11.0]]
    assert model.e.tolist() == [[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 3.0]]
