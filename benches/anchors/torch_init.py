"""PyTorch baseline: torchtitan pattern (allocate empty on GPU, then init_weights in place)."""
import sys, time, json, math
import torch
from llama_shapes import CONFIGS, params, nbytes
name = sys.argv[1]; dev = sys.argv[2] if len(sys.argv) > 2 else "cuda"
layers = int(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[3] != "0" else None
# initc addition: dtype as the 4th argument (f32 default, bf16), so the anchor covers both.
dtype = torch.bfloat16 if len(sys.argv) > 4 and sys.argv[4] == "bf16" else torch.float32
cfg = dict(CONFIGS[name])
full_layers = cfg["n_layers"]
if layers: cfg["n_layers"] = layers
ps = params(cfg)
torch.manual_seed(0)
def run():
    t0 = time.perf_counter()
    ts = [torch.empty(s, device=dev, dtype=dtype) for _, s, _ in ps]
    if dev == "cuda": torch.cuda.synchronize()
    t1 = time.perf_counter()
    with torch.no_grad():
        for t, (_, s, (kind, std)) in zip(ts, ps):
            if kind == "normal": torch.nn.init.normal_(t, std=std)
            elif kind == "ones": torch.nn.init.ones_(t)
            elif kind == "trunc_normal": torch.nn.init.trunc_normal_(t, std=std)
            else: torch.nn.init.trunc_normal_(t, std=std, a=-3 * std, b=3 * std)
    if dev == "cuda": torch.cuda.synchronize()
    t2 = time.perf_counter()
    return ts, t1 - t0, t2 - t1
res_t = []
for i in range(2):
    ts, ta, ti = run(); res_t.append(ti)
    if i == 0: del ts
b, n = nbytes(ps, 2 if dtype == torch.bfloat16 else 4)
print(json.dumps(dict(system="torch", model=name, device=dev, dtype=str(dtype).replace("torch.", ""), layers=cfg["n_layers"], full_layers=full_layers, params=n, bytes=b,
                      alloc_s=ta, init_s=res_t, gbps=b / min(res_t) / 1e9,
                      peak_bytes=torch.cuda.max_memory_allocated() if dev == "cuda" else None, torch=torch.__version__)))
