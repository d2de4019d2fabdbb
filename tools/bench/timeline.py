"""Summarizes the execute timeline of an `initc run --backend pjrt --report FILE` (its best run).

Per device: when the first execute was called and returned, when the last one returned, when
the last output was ready, and the host time per execute. Times
are ms from the start of the run. The device cannot start an execute's kernels before the
execute returns, so `first return` bounds the start of device work, and if `last ready` is
close to `last return` the device was waiting for the host at the end.

usage: python3 tools/bench/timeline.py REPORT.json [REPORT.json ...] [--executes]
"""
import json, sys


def summary(path, executes=False):
    rep = json.load(open(path))
    tl = rep.get("timeline")
    if not tl:
        return f"{path}: no timeline (a report from an older initc?)"
    out = [f"{path}: best {rep['best_s'] * 1e3:.2f} ms, {len(tl['devices'])} device(s); last device reported back at {tl['received_ms']:.3f}, run ended at {tl['elapsed_ms']:.3f}"]
    for d in tl["devices"]:
        ex = d["executes"]
        if not ex:
            out.append(f"  device {d['mesh_device']}: no executes")
            continue
        host = [e[5] - e[4] for e in ex]
        threads = len({e[0] for e in ex})
        out.append(
            f"  device {d['mesh_device']}: first call {min(e[4] for e in ex):.3f} returned {ex[0][5]:.3f}, "
            f"last return {max(e[5] for e in ex):.3f}, last ready {max(e[6] for e in ex):.3f}; {len(ex)} executes on {threads} thread(s), "
            f"host per execute mean {sum(host) / len(host):.3f} max {max(host):.3f}"
        )
        if executes:
            for e in ex:
                out.append(f"    thread {e[0]} exe {e[1]:3d} x{e[2]:<3d} {e[3] / 1e6:8.2f} M elements  call {e[4]:7.3f} ret {e[5]:7.3f} ready {e[6]:7.3f}")
    return "\n".join(out)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if not args:
        sys.exit(__doc__)
    for p in args:
        print(summary(p, "--executes" in sys.argv))
