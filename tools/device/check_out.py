"""Checks `initc run --backend pjrt --out DIR --digests --report R`: every tensor of DIR loads with
safetensors and its bytes hash to both the manifest and the device buffer digest in R.
usage: python3 tools/device/check_out.py DIR REPORT.json MESH_DEVICE"""
import json, sys, hashlib
from safetensors.numpy import load_file
d = sys.argv[1]; rep = json.load(open(sys.argv[2])); dev = sys.argv[3]
man = json.load(open(f"{d}/manifest.json"))
t = load_file(f"{d}/model.safetensors")
ok = 0
for p in man["params"]:
    raw = t[p["fqn"]].tobytes()
    assert hashlib.sha256(raw).hexdigest() == p["sha256"], p["fqn"]
    assert rep["digests"][f"{p['fqn']}@{dev}"] == p["sha256"], ("device digest", p["fqn"])
    ok += 1
print(f"ok --out {d}: {ok} tensors load with safetensors and equal the device buffers' SHA-256")
