"""initc's binding: the tracer, IR files, the CPU engine into numpy/torch buffers, u64 seeds."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

import initc
import initc.torch as it


def small():
    t = initc.Tracer("small")
    t.param("a", "f32", [3, 5], {"kind": "normal", "std": 0.5})
    k = t.split(t.param_key("b"), 2)
    x = t.uniform(t.key_at(k, 1), "f32", [4], -1.0, 1.0)
    t.param("b", "f32", [4], {"kind": "zeros"})
    t.assign("b", t.binary("mul", x, t.full("f32", [4], 3.0)))
    t.param("c", "bf16", [2, 2], {"kind": "ones"})
    return t.finish()


def test_files_round_trip(tmp_path):
    p = small()
    for ext in ("txt", "pb"):
        path = str(tmp_path / f"p.{ext}")
        p.save(path)
        q = initc.Program.load(path)
        assert q.text() == p.text() and q.params == p.params
    assert initc.Program.from_proto(p.to_proto()).text() == p.text()
    assert p.params[0] == ("a", "f32", [3, 5], "normal(mean=0.0, std=0.5)")


def test_materialize_into_numpy_and_regions():
    p = small()
    full = np.empty((3, 5), np.float32)
    p.materialize_into("a", full.view(np.uint8).reshape(-1), 7)
    part = np.empty((2, 3), np.float32)
    p.materialize_into("a", part.view(np.uint8).reshape(-1), 7, [1, 2], [2, 3])
    np.testing.assert_array_equal(part, full[1:3, 2:5])
    c = torch.empty(2, 2, dtype=torch.bfloat16)
    it.fill_(c, p, "c")
    assert (c == 1).all()


def test_u64_seeds_and_key_derivation():
    p = small()
    a, b = np.empty(15, np.float32), np.empty(15, np.float32)
    p.materialize_into("a", a.view(np.uint8), 2**64 - 1)
    p.materialize_into("a", b.view(np.uint8), 2**63 + 1)
    assert not np.array_equal(a, b)
    with pytest.raises(OverflowError):
        p.materialize_into("a", a.view(np.uint8), 2**64)
    assert initc.fqn_fold_data("tok_embeddings.weight") == int.from_bytes(hashlib.sha256(b"tok_embeddings.weight").digest()[:4], "big")


def test_noncontiguous_target_goes_through_one_temporary():
    p = small()
    t = torch.zeros(5, 3).t()
    it.fill_(t, p, "a", 0)
    want = torch.empty(3, 5)
    it.fill_(want, p, "a", 0)
    assert torch.equal(t, want)


def test_bad_tracer_input_is_an_error_not_a_panic():
    t = initc.Tracer("x")
    x = t.full("f32", [2, 3], 1.0)
    for call, msg in [
        (lambda: t.reshape(99, [2]), "%99 is not a value of this tracer"),
        (lambda: t.transpose(x, [0, 7]), r"\[0, 7\] is not a permutation"),
        (lambda: t.key_at(t.full("f32", [2], 1.0), 5), r"\[5, 6\) is not within 0..2"),
        (lambda: t.concat([], 0), "concat needs at least one operand"),
        (lambda: t.unary("sin", x), "unknown unary op `sin`"),
    ]:
        with pytest.raises(initc.InitcError, match=msg):
            call()
    t.finish()
    with pytest.raises(initc.InitcError, match="finished"):
        t.full("f32", [1], 0.0)
