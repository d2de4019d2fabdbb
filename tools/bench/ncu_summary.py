"""Sums an Nsight Compute CSV (`ncu --metrics gpu__time_duration.sum --csv --log-file F ...`) per kernel name
and launch grid: kernel count, total and mean duration. ncu runs kernels one at a time, so the total is the
device's kernel time without overlap or launch gaps.

usage: python3 tools/bench/ncu_summary.py FILE.csv [FILE.csv ...]
"""
import collections, csv, sys

UNIT = {"ns": 1e-6, "nsecond": 1e-6, "us": 1e-3, "usecond": 1e-3, "ms": 1.0, "msecond": 1.0}


def summary(path):
    rows = [r for r in csv.reader(open(path)) if len(r) > 10]
    if not rows:
        return f"{path}: no kernel rows"
    head, rows = rows[0], rows[1:]
    name, grid, value, unit = (head.index(c) for c in ("Kernel Name", "Grid Size", "Metric Value", "Metric Unit"))
    groups = collections.defaultdict(lambda: [0, 0.0])
    for r in rows:
        ms = float(r[value].replace(",", "")) * UNIT[r[unit]]
        g = groups[(r[name], r[grid])]
        g[0] += 1
        g[1] += ms
    total = sum(g[1] for g in groups.values())
    out = [f"{path}: {len(rows)} kernels, {total:.3f} ms"]
    for (k, gr), (n, ms) in sorted(groups.items(), key=lambda x: -x[1][1]):
        out.append(f"  {n:5d} x {ms / n * 1e3:8.1f} us = {ms:7.3f} ms  {k[:40]:<40} grid {gr}")
    return "\n".join(out)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for p in sys.argv[1:]:
        print(summary(p))
