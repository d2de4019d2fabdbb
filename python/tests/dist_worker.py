"""Run by test_distributed.py under ``torchrun --nproc-per-node 4`` (gloo, CPU): each case
shards a torchtitan Llama3 (GQA, fused wqkv) built on meta, materializes it with no collective
(any c10d op during materialize raises), and compares ``full_tensor()`` with the unsharded
values bit for bit. Rank 0 prints ``ok <case>`` per case."""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import Replicate, Shard, distribute_tensor
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, os.path.dirname(__file__))
import initc.torch as it  # noqa: E402
from titan_models import tiny_config  # noqa: E402

SEED = 123


class NoCollectives(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace in ("c10d", "_c10d_functional", "_c10d_functional_autograd"):
            raise AssertionError(f"collective {func} during materialize")
        return func(*args, **(kwargs or {}))


def build():
    with torch.device("meta"):
        return tiny_config(dim=64, n_heads=8, n_kv_heads=2, n_layers=2, vocab=130).build()


def place(model, mesh, placements_of):
    for m in model.modules():
        for k, p in list(m._parameters.items()):
            if p is not None:
                m._parameters[k] = nn.Parameter(distribute_tensor(p, mesh, placements_of(p), src_data_rank=None))
    return model


def check(case, model, prog, ref, **device):
    with NoCollectives():
        it.materialize(model, prog, seed=SEED, **device)
    for f, p in model.named_parameters():
        full = p.full_tensor() if hasattr(p, "full_tensor") else p
        a = full.detach().contiguous().view(-1).view(torch.uint8)
        b = ref[f].contiguous().view(-1).view(torch.uint8)
        if not torch.equal(a, b):
            raise AssertionError(f"{case}: {f} differs from the unsharded values")
    if dist.get_rank() == 0:
        print(f"ok {case}", flush=True)


def main():
    dist.init_process_group("gloo")
    prog = it.trace(build())
    ref_model = it.materialize(build(), prog, seed=SEED)
    ref = {f: p.detach().clone() for f, p in ref_model.named_parameters()}
    mesh1 = init_device_mesh("cpu", (4,))
    mesh2 = init_device_mesh("cpu", (2, 2))
    check("shard0", place(build(), mesh1, lambda p: [Shard(0)]), prog, ref)
    check("shard1", place(build(), mesh1, lambda p: [Shard(1)] if p.dim() > 1 else [Replicate()]), prog, ref)
    check("mesh2x2", place(build(), mesh2, lambda p: [Shard(0), Shard(1)] if p.dim() > 1 else [Shard(0), Replicate()]), prog, ref)
    from torch.distributed.fsdp import fully_shard

    model = build()
    for layer in model.layers.values():
        fully_shard(layer, mesh=mesh1)
    fully_shard(model, mesh=mesh1)
    sharded_prog = it.trace(model)  # traced with DTensor parameters: the same program
    if sharded_prog.text() != prog.text():
        import difflib

        print("\n".join(list(difflib.unified_diff(prog.text().splitlines(), sharded_prog.text().splitlines(), lineterm=""))[:20]))
        raise AssertionError("tracing the FSDP2 model gives the unsharded program")
    check("fsdp2", model, prog, ref)
    # the device path (DTensor local shards asked of the runtime, DTensor.from_local of what it
    # hands over), with a CPU stand-in for the GPU runtime
    from conftest import CpuRuntime

    model = build()
    for layer in model.layers.values():
        fully_shard(layer, mesh=mesh1)
    fully_shard(model, mesh=mesh1)
    check("fsdp2-device-path", model, prog, ref, device="cuda:0", runtime=CpuRuntime())
    from torch.distributed.tensor import DTensor, Partial

    model = build()
    w = model.norm.weight
    model.norm._parameters["weight"] = nn.Parameter(DTensor.from_local(torch.empty(w.shape, device="meta"), mesh1, [Partial()], run_check=False))
    try:
        it.materialize(model, prog, seed=SEED)
    except it.ShardingError as e:
        assert str(e) == "placement Partial(sum) of a (64,) DTensor: initc fills Shard(d) and Replicate placements (Partial and strided shards are not one rectangle)", str(e)
        if dist.get_rank() == 0:
            print("ok partial", flush=True)
    else:
        raise AssertionError("a Partial placement must be refused")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
