#!/usr/bin/env python
"""NUTS's start: NumPyro's (``init="uniform"``) against the default (the auto measurement's quick mode with its
variances as the first mass matrix, ``start.py``), on eight models, defaults otherwise (4 chains x (1000 + 1000)).

Per model, seed and start: leapfrog steps per chain in warmup and per draw in sampling, min bulk ESS and max
R-hat over every summarised parameter, divergences, and min bulk ESS per 1,000 leapfrog steps of the whole run
(warmup included: the cost in gradients, which the machine's noise does not move), with the sampling's seconds.
Each seed runs both starts in one process, the uniform one first. Results: one line per fit on stdout and
``benchmarks/results/bench_start.json``.

    python benchmarks/bench_start.py [--seeds 1,2,3] [--models radon,sleep]
"""
import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import SPINACH, machine, write  # noqa: E402

import hbm_formula as hf  # noqa: E402

DATA = HERE.parent / "examples" / "data"


def cases() -> dict:
    rng = np.random.default_rng(7)
    schools = pd.DataFrame({"y": [28.0, 8, -3, 7, -1, 1, 18, 12], "sigma": [15.0, 10, 16, 11, 9, 11, 10, 18],
                            "school": list("ABCDEFGH")})
    n, g = 20000, 200  # many rows, tight population-level parameters
    gi = rng.integers(0, g, n)
    x = rng.normal(size=n)
    big = pd.DataFrame({"y": 5 + 0.3 * x + rng.normal(0, 0.5, g)[gi] + rng.normal(0, 1, n), "x": x,
                        "g": gi.astype(str)})
    m = 300  # a Poisson with 150 levels, half of them one row
    gp = np.concatenate([np.arange(150), rng.integers(0, 150, m - 150)])
    pois = pd.DataFrame({"y": rng.poisson(np.exp(1 + rng.normal(0, 0.7, 150)[gp])), "g": gp.astype(str)})
    return {
        "radon": ("log_radon ~ floor + (1 + floor | county)", pd.read_csv(DATA / "radon.csv"), {}),
        "sleep": ("Reaction ~ Days + (Days | Subject)", pd.read_csv(DATA / "sleepstudy.csv"), {}),
        "cbpp": ("cbind(incidence, size - incidence) ~ C(period) + (1 | herd)", pd.read_csv(DATA / "cbpp.csv"),
                 {"family": "binomial"}),
        "schools": ("y | se(sigma) ~ 1 + (1 | school)", schools, {}),
        "big": ("y ~ x + (1 | g)", big, {}),
        "pois": ("y ~ 1 + (1 | g)", pois, {"family": "poisson"}),
        # the intercept far from NumPyro's uniform(-2, 2) start
        "shift": ("y ~ x + (1 | g)", big.assign(y=big.y * 10 + 50), {}),
        "spinach": (SPINACH, pd.read_csv(DATA / "drc_spinach.csv"), {}),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--models", default="")
    a = ap.parse_args()
    all_cases = cases()
    names = a.models.split(",") if a.models else list(all_cases)
    rows = []
    for seed in (int(s) for s in a.seeds.split(",")):
        for init in ("uniform", "default"):
            for name in names:
                f, df, kw = all_cases[name]
                opts = {} if init == "default" else {"init": init}
                t0 = time.perf_counter()
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    fit = hf.fit(f, df, seed=seed, progress=False, **kw, **opts)
                wall = time.perf_counter() - t0
                t = fit.summary()
                steps = fit.idata.sample_stats["n_steps"].values
                warm = float(fit.raw.warmup_steps.mean())
                total = warm + float(steps.sum(axis=1).mean())
                row = {"model": name, "seed": seed, "start": init, "wall_s": wall,
                       "sample_s": fit.timings["sample"], "warmup_steps_per_chain": warm,
                       "steps_per_draw": float(steps.mean()), "min_ess": float(t["ess_bulk"].min()),
                       "min_ess_at": str(t["ess_bulk"].idxmin()), "max_rhat": float(t["r_hat"].max()),
                       "divergent": int(fit.idata.sample_stats["diverging"].values.sum()),
                       "ess_per_1k_steps": 1000 * float(t["ess_bulk"].min()) / total,
                       "warnings": [str(w.message)[:200] for w in caught]}
                rows.append(row)
                print(f"{name:8s} seed {seed} {init:8s} warmup steps/chain {warm:8.0f}  steps/draw "
                      f"{row['steps_per_draw']:6.1f}  min ESS {row['min_ess']:6.0f}  R-hat {row['max_rhat']:.3f}  "
                      f"div {row['divergent']:3d}  ESS/1k steps {row['ess_per_1k_steps']:6.1f}  sample "
                      f"{row['sample_s']:5.1f} s", flush=True)
    ratios = {}
    for name in names:
        per_seed = [r["ess_per_1k_steps"] for r in rows if r["model"] == name and r["start"] == "default"]
        base = [r["ess_per_1k_steps"] for r in rows if r["model"] == name and r["start"] == "uniform"]
        ratios[name] = float(np.median(np.asarray(per_seed) / np.asarray(base)))
        print(f"{name:8s} median over seeds of (ESS per 1k steps: default / uniform) {ratios[name]:.2f}")
    print("wrote", write("bench_start", {"machine": machine(), "seeds": a.seeds, "runs": rows,
                                         "median_ratio_default_to_uniform": ratios,
                                         "pid": os.getpid()}))


if __name__ == "__main__":
    main()
