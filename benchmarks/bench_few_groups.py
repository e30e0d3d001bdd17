#!/usr/bin/env python
"""``auto`` on a lone correlated term with few groups (a review's question, session 17): should ``y ~ x + (1 + x | g)``
on fewer than 10 groups be non-centered outright, as several terms on one factor are (``AUTO_MIN_LEVELS``)?

Simulated data (J groups of n rows; intercept and slope SDs 1 and 0.5, correlation -0.85, sigma 1), each fitted
with the defaults (4 x (1000 + 1000), the default priors, ``lkj(1)`` on the correlation) three times: ``param="auto"``,
``"centered"`` and ``"noncentered"``; per fit the divergent transitions, min bulk ESS over all parameters, max
R-hat, mean leapfrog steps per draw. Results: a table on stdout and ``benchmarks/results/bench_few_groups.json``.

    python benchmarks/bench_few_groups.py [--groups 3 5 8 12] [--rows 10 100] [--seeds 0 1 2]
"""
import argparse
import sys
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import machine, write  # noqa: E402


def simulate(J: int, n: int, seed: int, cor: float = -0.85):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    sd = np.array([1.0, 0.5])
    cov = np.diag(sd) @ np.array([[1, cor], [cor, 1]]) @ np.diag(sd)
    u = rng.multivariate_normal([0, 0], cov, J)
    g = np.repeat(np.arange(J), n)
    x = rng.normal(size=J * n)
    y = 1 + 0.3 * x + u[g, 0] + u[g, 1] * x + rng.normal(size=J * n)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g]})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--groups", type=int, nargs="+", default=[3, 5, 8, 12])
    p.add_argument("--rows", type=int, nargs="+", default=[10, 100], help="rows per group")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", default="bench_few_groups", help="results file name (in benchmarks/results, .json)")
    a = p.parse_args()
    import arviz as az

    import hbm_formula as hf

    warnings.simplefilter("ignore")
    rows = []
    print(f"{'J':>3} {'n':>4} {'seed':>4} | " + " | ".join(f"{k:^26s}" for k in ("auto", "centered", "noncentered")))
    for J in a.groups:
        for n in a.rows:
            for seed in a.seeds:
                df = simulate(J, n, seed)
                row = {"groups": J, "rows_per_group": n, "seed": seed}
                for param in ("auto", "centered", "noncentered"):
                    fit = hf.fit("y ~ x + (1 + x | g)", df, param=param, seed=seed, progress=False)
                    st = fit.idata.sample_stats
                    ess, rhat = az.ess(fit.idata, method="bulk"), az.rhat(fit.idata)
                    row[param] = {"divergent": int(st["diverging"].sum()),
                                  "min_bulk_ess": round(min(float(ess[v].min()) for v in ess.data_vars)),
                                  "max_rhat": round(max(float(rhat[v].max()) for v in rhat.data_vars), 3),
                                  "steps_per_draw": round(float(st["n_steps"].mean()), 1)}
                rows.append(row)
                print(f"{J:3d} {n:4d} {seed:4d} | " + " | ".join(
                    f"div {r['divergent']:4d} ess {r['min_bulk_ess']:5d} rh {r['max_rhat']:.3f}"
                    for r in (row["auto"], row["centered"], row["noncentered"])), flush=True)
    write(a.out, {"machine": machine(), "rows": rows})


if __name__ == "__main__":
    main()
