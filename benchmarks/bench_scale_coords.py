#!/usr/bin/env python
"""NUTS on coordinates scaled by the start's variances, against the raw coordinates (the commit before).

NumPyro regularizes each adapted variance of the diagonal mass matrix towards 1e-3 (``(n / (n + 5)) var +
1e-3 * 5 / (n + 5)``, as Stan). A parameter whose posterior SD is far below 0.03 on the unconstrained scale (a
coefficient of a predictor in large units, anything on the scale of a response far below 1) gets a variance far
too large, and the trajectories need the maximum tree depth. Since this change NUTS runs on u = z / scale, scale
the square root of the default start's first inverse mass matrix (``infer.run_nuts``).

Each case runs, with the defaults (4 x (1000 + 1000)), in a fresh subprocess of each source tree, in turn:
``--old`` (a checkout of the commit before, e.g. ``git worktree add /tmp/old 1aff6fd``) and this tree. Cost is
counted in leapfrog steps (machine noise does not move them): warmup steps per chain, steps per draw, min bulk ESS
of the population-level parameters and SDs per 1,000 steps; the slope's posterior mean and SD beside them. Results: a table on stdout and
``benchmarks/results/bench_scale_coords.json``.

    python benchmarks/bench_scale_coords.py --old /tmp/old [--seeds 1,2]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from common import machine, write  # noqa: E402

WORKER = r'''
import json, sys, time, warnings
import numpy as np, pandas as pd
import hbm_formula as hf
case, seed, data_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rng = np.random.default_rng(100 + seed)
if case in ("radon", "sleepstudy"):
    df = pd.read_csv(f"{data_dir}/{case}.csv")
    f = {"radon": "log_radon ~ floor + (1 + floor | county)", "sleepstudy": "Reaction ~ Days + (Days | Subject)"}[case]
else:  # 40 groups of 50 rows; "x1e4": the predictor in units of 10,000 around 50,000 (also without the group
    # term: "x1e4-nogroup"); "y1e-4", "y1e6": the response times 1e-4, 1e6
    g = np.repeat(np.arange(40), 50)
    x = rng.normal(size=g.size)
    y = 10 + 1.5 * x + rng.normal(0, 2, 40)[g] + rng.normal(0, 3, g.size)
    df = pd.DataFrame({"y": y * {"y1e-4": 1e-4, "y1e6": 1e6}.get(case, 1.0),
                       "x": 5e4 + 1e4 * x if case.startswith("x1e4") else x, "g": g.astype(str)})
    f = "y ~ x" if case.endswith("nogroup") else "y ~ x + (1 | g)"
t = time.perf_counter()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    fit = hf.fit(f, df, seed=seed, progress=False)
wall = time.perf_counter() - t
s = fit.summary()
pop = s[[i.startswith(("Intercept", "b", "sd_", "sigma")) for i in s.index]]
ref = [i for i in s.index if i.startswith("b")][0]
steps = fit.idata.sample_stats["n_steps"].values
total = float(np.sum(fit.raw.warmup_steps) + steps.sum())
print(json.dumps({"source": hf.__file__, "case": case, "seed": seed, "wall_s": wall, "warmup_steps_per_chain": float(np.mean(fit.raw.warmup_steps)),
                  "steps_per_draw": float(steps.mean()), "max_depth_share": float((steps >= 1023).mean()),
                  "min_ess": float(pop["ess_bulk"].min()), "max_rhat": float(pop["r_hat"].max()),
                  "ess_per_1k_steps": 1000 * float(pop["ess_bulk"].min()) / total,
                  "divergences": int(fit.idata.sample_stats["diverging"].values.sum()),
                  "b_mean": float(s.loc[ref, "mean"]), "b_sd": float(s.loc[ref, "sd"]),
                  "warnings": [str(w.message)[:120] for w in caught]}))
'''


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", required=True, help="source tree of the commit before")
    ap.add_argument("--seeds", default="1")
    ap.add_argument("--cases", default="radon,sleepstudy,x1e4,y1e-4,y1e6,x1e4-nogroup")
    a = ap.parse_args()
    rows = []
    for seed in [int(s) for s in a.seeds.split(",")]:
        for case in a.cases.split(","):
            for tree_name, tree in (("raw", Path(a.old).resolve()), ("scaled", ROOT)):
                env = dict(os.environ, PYTHONPATH=str(tree))
                out = subprocess.run([sys.executable, "-c", WORKER, case, str(seed), str(ROOT / "examples" / "data")],
                                     capture_output=True, text=True, env=env, check=True,
                                     cwd=tempfile.gettempdir())  # (`-c` puts the cwd first on sys.path)
                row = json.loads(out.stdout.strip().splitlines()[-1]) | {"coordinates": tree_name}
                rows.append(row)
                print(f"{case:11s} seed {seed} {tree_name:6s} warmup steps/chain {row['warmup_steps_per_chain']:9,.0f}"
                      f"  steps/draw {row['steps_per_draw']:7.1f}  at max depth {row['max_depth_share']:5.1%}"
                      f"  min ESS {row['min_ess']:6.0f}  per 1k steps {row['ess_per_1k_steps']:6.2f}"
                      f"  R-hat {row['max_rhat']:.3f}  div {row['divergences']}  {row['wall_s']:6.1f} s"
                      f"  b {row['b_mean']:.4g} ({row['b_sd']:.2g})", flush=True)
    print(write("bench_scale_coords", {"machine": machine(), "rows": rows}))


if __name__ == "__main__":
    main()
