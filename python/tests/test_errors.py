"""Every capture error class, with its message as a golden: the op or initializer, the tensor
and the user's file:line (``{here}`` is the line marked ``# <- name`` in this file)."""

from __future__ import annotations

import os
import re

import pytest
import torch
from torch import nn

import initc
import initc.torch as it

HERE = os.path.abspath(__file__)
SOURCE = open(HERE).read().splitlines()


def line_of(mark: str) -> str:
    n = next(i for i, l in enumerate(SOURCE, 1) if l.rstrip().endswith(f"# <- {mark}"))
    return f"{HERE}:{n}"


class M(nn.Module):
    def __init__(self, init):
        super().__init__()
        self.w = nn.Parameter(torch.empty(4, 4))
        self.b = nn.Parameter(torch.empty(4))
        self._init = init

    def init_weights(self):
        self._init(self)


def capture(init):
    with torch.device("meta"):
        m = M(init)
    return it.trace(m)


def item(m):
    nn.init.normal_(m.w)
    if m.w[0, 0].item() > 0:  # <- item
        pass


def tolist(m):
    m.b.zero_()
    m.b.tolist()  # <- tolist


def nonzero(m):
    m.w.zero_()
    torch.nonzero(m.w)  # <- nonzero


def sin(m):
    m.b.zero_()
    m.w.uniform_()
    m.w.sin_()  # <- sin


def orthogonal(m):
    nn.init.orthogonal_(m.w)  # <- orthogonal


def bernoulli(m):
    m.w.bernoulli_(0.5)  # <- bernoulli


def advanced_index(m):
    m.b.zero_()
    m.w.zero_()
    m.w[[0, 2]] = torch.ones(2, 4)  # <- index_put


def never(m):
    nn.init.ones_(m.w)


def partial(m):
    nn.init.ones_(m.w)
    m.b[:2].fill_(1.0)


def empty_temp(m):
    nn.init.ones_(m.w)
    m.b.copy_(torch.empty(4))  # <- empty


GOLDEN = {
    item: (it.DataDependentError, "`.item()` (or `float()`/`int()`/`bool()`/`.tolist()` of a tensor) of `w` needs a tensor's value while tracing; initc records init code without running it\n  at {item}"),
    tolist: (it.DataDependentError, "copying values of `b` off the meta device (`.tolist()`, `.cpu()`, `.numpy()`) needs a tensor's value while tracing; initc records init code without running it\n  at {tolist}"),
    nonzero: (it.DataDependentError, "`nonzero` of `w` needs a tensor's value while tracing; initc records init code without running it\n  at {nonzero}"),
    sin: (it.UnsupportedOpError, "parameter `w`: its value comes from `aten.sin_`, which initc does not support\n  at {sin}"),
    orthogonal: (it.UnsupportedInitError, "torch.nn.init.orthogonal_ on `w` needs a QR decomposition, which initc has no op for; use another initializer for it\n  at {orthogonal}"),
    bernoulli: (it.UnsupportedOpError, "`aten.bernoulli_` on `w` is not supported by initc (no initc distribution for it: use normal_/uniform_ or an nn.init function)\n  at {bernoulli}"),
    advanced_index: (it.UnsupportedOpError, "parameter `w`: its value comes from `aten.index_put_`, which initc does not support\n  at {index_put}"),
    never: (it.UninitializedError, "parameter `b` is not (fully) written by the init code: it still holds memory from `b` before the capture"),
    partial: (it.UninitializedError, "parameter `b` is not (fully) written by the init code: it still holds memory from `b` before the capture"),
    empty_temp: (it.UninitializedError, "parameter `b` is not (fully) written by the init code: it still holds memory from torch.empty at {empty}"),
}


@pytest.mark.parametrize("init", list(GOLDEN), ids=lambda f: f.__name__)
def test_golden_message(init):
    cls, msg = GOLDEN[init]
    with pytest.raises(cls) as e:
        capture(init)
    marks = {k: line_of(k) for k in re.findall(r"\{(\w+)\}", msg)}
    assert str(e.value) == msg.format(**marks)
    assert isinstance(e.value, initc.InitcError)


def test_model_not_on_meta():
    with pytest.raises(it.CaptureError, match=r"`w` is on cpu, not meta: build the model under `with torch.device\('meta'\):` before tracing it"):
        it.trace(M(lambda m: None))


def test_rust_errors_become_python_exceptions(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_text('module "x" seed=0\n%0 = nonsense\n')
    with pytest.raises(initc.InitcError, match="bad.txt"):
        initc.Program.load(str(p))
    with pytest.raises(initc.InitcError, match=r"`n_heads`: dim = 64 is not divisible by n_heads = 3"):
        initc.Program.from_toml('[model]\npreset = "llama3"\ndim = 64\nn_heads = 3\n')
    with pytest.raises(initc.InitcError, match="unknown torchtitan release `0.1`"):
        initc.Program.from_toml('[model]\npreset = "llama3"\ntorchtitan = "0.1"\n')
    t = initc.Tracer("x")
    with pytest.raises(initc.InitcError, match="unknown dtype `f8`"):
        t.full("f8", [2], 0.0)
    prog = capture(lambda m: (nn.init.ones_(m.w), nn.init.zeros_(m.b))).program
    with pytest.raises(initc.InitcError, match=r"needs 64 bytes; the buffer has 4"):
        prog.materialize_into("w", bytearray(4))
    with pytest.raises(initc.InitcError, match="no parameter named `nope`"):
        prog.materialize_into("nope", bytearray(4))
    with pytest.raises(initc.InitcError, match="leaves the tensor in dim 0"):
        prog.materialize_into("w", bytearray(64), None, [3, 0], [2, 4])
    with pytest.raises(initc.InitcError, match="writable"):
        prog.materialize_into("w", bytes(64))
