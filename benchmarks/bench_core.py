#!/usr/bin/env python
"""Core speed benchmark: hbm_formula's generated models against a hand-written
NumPyro model of the same priors (and bambi, if installed).

Two datasets, each with 4 chains x 1000 warmup x 1000 draws:

* radon       ``log_radon ~ floor + (1 + floor | county)``   (919 rows, 85 counties)
* sleepstudy  ``Reaction ~ Days + (Days | Subject)``           (180 rows, 18 subjects)

(a) sampling efficiency, in this process: the generated model (``hf.compile``)
    and the hand-written one below, each run with the same NUTS settings
    (chain_method='parallel' on 4 host CPU devices). Reported: min bulk ESS
    over Intercept, b, sd and sigma, divided by the NUTS execution time with
    XLA compilation (and tracing) subtracted; the ratio generated/hand-written.
(b) end-to-end wall time, formula string -> InferenceData, each run in a fresh
    Python subprocess (interpreter start, imports, JAX compilation included):
    hbm_formula cold (HBM_FORMULA_CACHE=0) and warm (persistent compilation
    cache filled by a first run), the hand-written NumPyro model cold and warm,
    and bambi with nutpie and with its default PyMC sampler when the
    subprocess interpreter can import them.

Every measurement is repeated (--reps, default 3, different seeds) and the
median is reported. Results: a table on stdout and benchmarks/results/core.json.

    python benchmarks/bench_core.py                       # everything (~20-25 min on 2 cores)
    python benchmarks/bench_core.py --python /work/benchvenv/bin/python   # peers from another venv
    python benchmarks/bench_core.py --warmup 100 --draws 100 --reps 1     # smoke test

See benchmarks/README.md for the method.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# JAX reads this when its backend starts: one CPU device per chain.
N_DEVICES = 4
if "--worker" not in sys.argv:  # workers set their own (bambi workers never import jax)
    os.environ["XLA_FLAGS"] = " ".join(
        [f for f in os.environ.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count")]
        + [f"--xla_force_host_platform_device_count={N_DEVICES}"]
    )

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = ROOT / "examples" / "data"
RESULTS = HERE / "results" / "core.json"
CHAINS = 4
TARGET_ACCEPT = 0.8
MAX_TREE_DEPTH = 10
#: the same extra fields hbm_formula's infer.run_nuts collects
EXTRA_FIELDS = ("diverging", "accept_prob", "num_steps", "energy", "potential_energy")

DATASETS = {
    "radon": {
        "csv": "radon.csv",
        "formula": "log_radon ~ floor + (1 + floor | county)",
        "y": "log_radon",
        "x": "floor",
        "g": "county",
    },
    "sleepstudy": {
        "csv": "sleepstudy.csv",
        "formula": "Reaction ~ Days + (Days | Subject)",
        "y": "Reaction",
        "x": "Days",
        "g": "Subject",
    },
}


# ============================================================================
# The hand-written models. Written directly as NumPyro code; the prior numbers
# are the ones hbm_formula picks by default for these data (read off
# `hf.compile(formula, df).priors_table()`), and `check_same_model` verifies
# at run time that each has the same log density as the generated model.
# numpyro / dist / jnp are bound by _import_numpyro() (kept lazy so that bambi
# workers do not pay for importing JAX).
# ============================================================================

numpyro = dist = jnp = None  # bound by _import_numpyro()


def radon_model(floor, county, n_county, log_radon=None):
    """Minnesota radon: intercepts and floor slopes varying by county (correlated),
    non-centered. The population intercept is the one at the mean floor."""
    floor_bar = floor.mean()
    intercept_c = numpyro.sample("Intercept_c", dist.Normal(1.22, 2.13))
    beta = numpyro.sample("b_floor", dist.Normal(0.0, 5.72))
    numpyro.deterministic("Intercept", intercept_c - beta * floor_bar)

    sd_a = numpyro.sample("sd_a", dist.HalfNormal(2.13))  # SD of county intercepts
    sd_b = numpyro.sample("sd_b", dist.HalfNormal(5.72))  # SD of county floor slopes
    L = numpyro.sample("L", dist.LKJCholesky(2, concentration=2.0))
    with numpyro.plate("county", n_county):
        z_a = numpyro.sample("z_a", dist.Normal(0.0, 1.0))
        z_b = numpyro.sample("z_b", dist.Normal(0.0, 1.0))
    a = sd_a * z_a
    b = sd_b * (L[1, 0] * z_a + L[1, 1] * z_b)

    sigma = numpyro.sample("sigma", dist.Exponential(1.17))
    mu = intercept_c + beta * (floor - floor_bar) + a[county] + b[county] * floor
    with numpyro.plate("obs", floor.shape[0]):
        numpyro.sample("y", dist.Normal(mu, sigma), obs=log_radon)


def sleepstudy_model(days, subject, n_subject, reaction=None):
    """Sleep deprivation: intercepts and Days slopes varying by subject (correlated),
    non-centered. The population intercept is the one at the mean of Days."""
    days_bar = days.mean()
    intercept_c = numpyro.sample("Intercept_c", dist.Normal(299.0, 140.0))
    beta = numpyro.sample("b_Days", dist.Normal(0.0, 48.9))
    numpyro.deterministic("Intercept", intercept_c - beta * days_bar)

    sd_a = numpyro.sample("sd_a", dist.HalfNormal(140.0))  # SD of subject intercepts
    sd_b = numpyro.sample("sd_b", dist.HalfNormal(48.9))  # SD of subject Days slopes
    L = numpyro.sample("L", dist.LKJCholesky(2, concentration=2.0))
    with numpyro.plate("subject", n_subject):
        z_a = numpyro.sample("z_a", dist.Normal(0.0, 1.0))
        z_b = numpyro.sample("z_b", dist.Normal(0.0, 1.0))
    a = sd_a * z_a
    b = sd_b * (L[1, 0] * z_a + L[1, 1] * z_b)

    sigma = numpyro.sample("sigma", dist.Exponential(0.0178))
    mu = intercept_c + beta * (days - days_bar) + a[subject] + b[subject] * days
    with numpyro.plate("obs", days.shape[0]):
        numpyro.sample("y", dist.Normal(mu, sigma), obs=reaction)


HAND_MODELS = {"radon": radon_model, "sleepstudy": sleepstudy_model}


def hand_data(name, df):
    """The arguments of the hand-written model (and the level names of its groups)."""
    import numpy as np
    import pandas as pd

    ds = DATASETS[name]
    codes, levels = pd.factorize(df[ds["g"]], sort=True)
    x = df[ds["x"]].to_numpy(dtype=np.float64)
    y = df[ds["y"]].to_numpy(dtype=np.float64)
    if name == "radon":
        data = {"floor": x, "county": codes.astype(np.int32), "n_county": len(levels), "log_radon": y}
    else:
        data = {"days": x, "subject": codes.astype(np.int32), "n_subject": len(levels), "reaction": y}
    return data, [str(v) for v in levels]


def _import_numpyro():
    global numpyro, dist, jnp
    import jax.numpy as _jnp
    import numpyro as _numpyro
    import numpyro.distributions as _dist

    numpyro, dist, jnp = _numpyro, _dist, _jnp


# ============================================================================
# helpers
# ============================================================================


def load_df(name):
    import pandas as pd

    return pd.read_csv(DATA / DATASETS[name]["csv"])


def _quiet_warnings():
    import warnings

    warnings.filterwarnings("ignore")


def min_bulk_ess(arrays):
    """Min bulk ESS over the scalar components of ``arrays`` (each shaped (chain, draw, ...))."""
    import numpy as np

    _quiet_warnings()
    import arviz as az

    out = {}
    for name, a in arrays.items():
        a = np.asarray(a, dtype=np.float64)
        flat = a.reshape(a.shape[0], a.shape[1], -1)
        for k in range(flat.shape[2]):
            label = name if flat.shape[2] == 1 else f"{name}[{k}]"
            out[label] = float(az.ess(flat[:, :, k], method="bulk"))
    worst = min(out, key=out.get)
    return out[worst], worst, out


def main_params_generated(samples, ds):
    """Intercept, b, sd, sigma of the generated model (site names are fixed by hbm_formula)."""
    return {k: samples[k] for k in ("Intercept", "b", f"sd_{ds['g']}", "sigma")}


def main_params_hand(samples, ds):
    return {k: samples[k] for k in ("Intercept", f"b_{ds['x']}", "sd_a", "sd_b", "sigma")}


def priors_from_table(cm, ds):
    """The generated model's prior numbers, for the hand-written check and for bambi."""
    p = {e.name: e.prior for e in cm.params}
    g, x = ds["g"], ds["x"]
    want = {
        "Intercept": "normal",
        f"b_{x}": "normal",
        f"sd_{g}__Intercept": "half_normal",
        f"sd_{g}__{x}": "half_normal",
        f"cor_{g}": "lkj",
        "sigma": "exponential",
    }
    for k, kind in want.items():
        if k not in p or p[k].name != kind:
            raise SystemExit(f"unexpected prior table for {ds['formula']}: {k} is {p.get(k)}; expected {kind}")
    return {
        "Intercept": list(p["Intercept"].args),
        "b": list(p[f"b_{x}"].args),
        "sd_Intercept": p[f"sd_{g}__Intercept"].args[0],
        "sd_x": p[f"sd_{g}__{x}"].args[0],
        "lkj": p[f"cor_{g}"].args[0],
        "sigma_rate": p["sigma"].args[0],
    }


def check_same_model(name, cm, hand, hdata, hlevels, n_points=3):
    """Joint log density of the generated and the hand-written model at random
    points of the generated model's prior: equal if they are the same model."""
    import jax
    import numpy as np
    from numpyro import handlers
    from numpyro.infer.util import log_density

    ds = DATASETS[name]
    g = ds["g"]
    gen_levels = [str(v) for v in cm.coords[g]]
    perm = np.array([gen_levels.index(lvl) for lvl in hlevels])  # hand level i = generated level perm[i]
    worst = 0.0
    for i in range(n_points):
        tr = handlers.trace(handlers.seed(cm.model, jax.random.PRNGKey(100 + i))).get_trace(**{**cm.data, "y": None})
        gp = {k: v["value"] for k, v in tr.items() if v["type"] == "sample" and not v["is_observed"] and k != "y"}
        z = np.asarray(gp[f"z_{g}"])[perm]
        sd = np.asarray(gp[f"sd_{g}"])
        hp = {
            "Intercept_c": gp["Intercept_c"],
            f"b_{ds['x']}": np.asarray(gp["b"]).reshape(-1)[0],  # a scalar site (one coefficient)
            "sd_a": sd[0],
            "sd_b": sd[1],
            "L": gp[f"L_{g}"],
            "z_a": z[:, 0],
            "z_b": z[:, 1],
            "sigma": gp["sigma"],
        }
        lp_gen, _ = log_density(cm.model, (), dict(cm.data), gp)
        lp_hand, _ = log_density(hand, (), dict(hdata), hp)
        lp_gen, lp_hand = float(lp_gen), float(lp_hand)
        worst = max(worst, abs(lp_gen - lp_hand) / max(1.0, abs(lp_gen)))
    return worst


class CompileClock:
    """Collects the time spans JAX reports for tracing, lowering and XLA
    compilation (jax.monitoring), so they can be subtracted from a wall time."""

    EVENTS = (
        "/jax/core/compile/jaxpr_trace_duration",
        "/jax/core/compile/jaxpr_to_mlir_module_duration",
        "/jax/core/compile/backend_compile_duration",
    )

    def __init__(self):
        import jax.monitoring

        self.spans = []
        jax.monitoring.register_event_time_span_listener(self._on_span)

    def _on_span(self, event, start, end, **kwargs):
        if event in self.EVENTS:
            self.spans.append((start, end))

    def within(self, t0, t1):
        """Seconds of [t0, t1] covered by compile spans (the union: spans nest)."""
        iv = sorted((max(s, t0), min(e, t1)) for s, e in self.spans if e > t0 and s < t1)
        total, cur = 0.0, None
        for s, e in iv:
            if cur is None or s > cur[1]:
                if cur is not None:
                    total += cur[1] - cur[0]
                cur = [s, e]
            else:
                cur[1] = max(cur[1], e)
        if cur is not None:
            total += cur[1] - cur[0]
        return total


def run_nuts_timed(model, data, seed, warmup, draws, clock):
    """Warmup then sampling, each timed; compilation inside each phase subtracted."""
    import jax
    import numpy as np
    from numpyro.infer import MCMC, NUTS

    mcmc = MCMC(
        NUTS(model, target_accept_prob=TARGET_ACCEPT, max_tree_depth=MAX_TREE_DEPTH),
        num_warmup=warmup,
        num_samples=draws,
        num_chains=CHAINS,
        chain_method="parallel",
        progress_bar=False,
    )
    k_warm, k_samp = jax.random.split(jax.random.PRNGKey(seed))
    t0 = time.time()
    # collect_warmup only to count the warmup's leapfrog steps
    mcmc.warmup(k_warm, **data, extra_fields=("num_steps",), collect_warmup=True)
    jax.block_until_ready(mcmc.post_warmup_state)
    t1 = time.time()
    warmup_steps = int(np.asarray(mcmc.get_extra_fields()["num_steps"]).sum())
    mcmc.run(k_samp, **data, extra_fields=EXTRA_FIELDS)
    samples = mcmc.get_samples(group_by_chain=True)
    jax.block_until_ready((samples, mcmc.last_state))
    t2 = time.time()
    c_warm, c_samp = clock.within(t0, t1), clock.within(t1, t2)
    extra = mcmc.get_extra_fields(group_by_chain=True)
    steps = int(np.asarray(extra["num_steps"]).sum())
    timing = {
        "warmup_wall_s": t1 - t0,
        "sampling_wall_s": t2 - t1,
        "compile_s": c_warm + c_samp,
        "warmup_s": (t1 - t0) - c_warm,
        "sampling_s": (t2 - t1) - c_samp,
        "leapfrog_steps": steps,
        "warmup_leapfrog_steps": warmup_steps,
        "divergences": int(np.asarray(extra["diverging"]).sum()),
        "mean_accept": float(np.asarray(extra["accept_prob"]).mean()),
    }
    return {k: np.asarray(v) for k, v in samples.items()}, timing


def release_executables():
    """Drop JAX's in-memory caches after a run. Every MCMC run loads new
    executables; dozens of runs in one process exhaust the kernel's memory-map
    limit ("LLVM compilation error: Cannot allocate memory"). The persistent
    cache on disk is kept."""
    import gc

    import jax

    gc.collect()
    jax.clear_caches()


# ============================================================================
# (a) ESS per second, in process
# ============================================================================


def grad_cost(model, data, n_evals=2000, repeats=7):
    """Microseconds per gradient of the log density on one CPU device.

    ``n_evals`` chained gradient evaluations run inside one jitted loop (each
    point depends on the previous gradient, so XLA cannot hoist the work out of
    the loop and there is no per-call dispatch); the minimum over ``repeats``
    timings is the least disturbed by other load on the machine.
    """
    import jax
    from numpyro.infer.util import initialize_model

    info = initialize_model(jax.random.PRNGKey(0), model, model_kwargs=data)
    pe = info.potential_fn
    p0 = info.param_info.z

    def body(_, p):
        g = jax.grad(pe)(p)
        return jax.tree.map(lambda a, b: a - 1e-6 * b, p, g)

    run = jax.jit(lambda p: jax.lax.fori_loop(0, n_evals, body, p))
    jax.block_until_ready(run(p0))  # compile
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(run(p0))
        times.append(time.perf_counter() - t0)
    # XLA's own static count of the work in one value-and-gradient: noise-free, unlike the timings
    compiled = jax.jit(jax.value_and_grad(pe)).lower(p0).compile()
    cost = compiled.cost_analysis()
    cost = (cost[0] if isinstance(cost, (list, tuple)) else cost) or {}
    return {
        "us_per_grad_min": 1e6 * min(times) / n_evals,
        "us_per_grad_median": 1e6 * statistics.median(times) / n_evals,
        "xla_flops": float(cost.get("flops", float("nan"))),
        "xla_bytes_accessed": float(cost.get("bytes accessed", float("nan"))),
    }


def bench_ess(args, log):
    import jax

    import hbm_formula as hf

    _import_numpyro()
    _quiet_warnings()
    assert jax.local_device_count() >= CHAINS, f"need {CHAINS} devices, got {jax.local_device_count()} (XLA_FLAGS?)"
    # A private persistent compilation cache: the first seed of each model pays for XLA compilation
    # (reported as compile_s of that run), later seeds load the executable from it. Execution is unaffected.
    cache_dir = tempfile.mkdtemp(prefix="hbm_bench_ess_cache_")
    jax.config.update("jax_compilation_cache_dir", cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    clock = CompileClock()
    out = {}
    for name in args.datasets:
        ds = DATASETS[name]
        df = load_df(name)
        cm = hf.compile(ds["formula"], df, param="noncentered")  # as the hand-written model
        hdata, hlevels = hand_data(name, df)
        hand = HAND_MODELS[name]
        mismatch = check_same_model(name, cm, hand, hdata, hlevels)
        log(f"[{name}] hand-written vs generated log density: max relative difference {mismatch:.1e}")
        if mismatch > 1e-5:
            log(f"[{name}] WARNING: the hand-written model is not the generated model (priors changed?)")
        grad = {"generated": grad_cost(cm.model, cm.data), "hand-written": grad_cost(hand, hdata)}
        grad_ratio = grad["generated"]["us_per_grad_min"] / grad["hand-written"]["us_per_grad_min"]
        gg, gh = grad["generated"], grad["hand-written"]
        log(f"[{name}] log-density gradient, 1 device: generated {gg['us_per_grad_min']:.2f} us "
            f"({gg['xla_flops']:.0f} flops, {gg['xla_bytes_accessed']:.0f} bytes), hand-written "
            f"{gh['us_per_grad_min']:.2f} us ({gh['xla_flops']:.0f} flops, {gh['xla_bytes_accessed']:.0f} bytes); "
            f"time ratio {grad_ratio:.3f}")
        runs = {"generated": [], "hand-written": []}
        for rep in range(args.ess_reps):
            seed = args.seed + rep
            order = ["generated", "hand-written"] if rep % 2 == 0 else ["hand-written", "generated"]
            for which in order:
                load = os.getloadavg()[0]
                if which == "generated":
                    samples, t = run_nuts_timed(cm.model, cm.data, seed, args.warmup, args.draws, clock)
                    ess, worst, per = min_bulk_ess(main_params_generated(samples, ds))
                else:
                    samples, t = run_nuts_timed(hand, hdata, seed, args.warmup, args.draws, clock)
                    ess, worst, per = min_bulk_ess(main_params_hand(samples, ds))
                total = t["warmup_s"] + t["sampling_s"]
                r = {
                    "seed": seed,
                    **t,
                    "min_bulk_ess": ess,
                    "min_ess_param": worst,
                    "ess_bulk": per,
                    "ess_per_s": ess / total,
                    "ess_per_s_sampling": ess / t["sampling_s"],
                    "us_per_step": 1e6 * t["sampling_s"] / t["leapfrog_steps"],
                    "us_per_step_warmup": 1e6 * t["warmup_s"] / t["warmup_leapfrog_steps"],
                    "warmup_steps_per_iter": t["warmup_leapfrog_steps"] / (CHAINS * args.warmup),
                    "steps_per_draw": t["leapfrog_steps"] / (CHAINS * args.draws),
                    "ess_per_1k_steps": 1000 * ess / t["leapfrog_steps"],
                    "loadavg_1m": load,
                }
                runs[which].append(r)
                del samples
                release_executables()
                log(
                    f"[{name}] {which:12s} seed {seed}: min bulk ESS {ess:6.0f} ({worst}), "
                    f"warmup {t['warmup_s']:.2f}s + sampling {t['sampling_s']:.2f}s (compile {t['compile_s']:.1f}s), "
                    f"ESS/s {r['ess_per_s']:.0f}, {r['us_per_step']:.1f} us/step, {r['steps_per_draw']:.1f} steps/draw, "
                    f"warmup {r['warmup_steps_per_iter']:.1f} steps/iter at {r['us_per_step_warmup']:.1f} us/step, "
                    f"div {t['divergences']}, load {load:.2f}"
                )
        keys = ["min_bulk_ess", "warmup_s", "sampling_s", "ess_per_s", "ess_per_s_sampling", "us_per_step",
                "us_per_step_warmup", "steps_per_draw", "warmup_steps_per_iter", "ess_per_1k_steps", "divergences"]
        med = {w: {k: statistics.median(r[k] for r in rs) for k in keys} for w, rs in runs.items()}
        ratio = {k: med["generated"][k] / med["hand-written"][k] for k in keys if med["hand-written"][k]}
        out[name] = {
            "formula": ds["formula"],
            "priors": priors_from_table(cm, ds),
            "logdensity_max_rel_diff": mismatch,
            "generated_code": cm.code,
            "grad_cost": grad,
            "grad_cost_ratio_generated_over_hand": grad_ratio,
            "first_run_compile_s": {w: rs[0]["compile_s"] for w, rs in runs.items()},
            "runs": runs,
            "median": med,
            "ratio_generated_over_hand": ratio,
        }
    return out


# ============================================================================
# (b) end to end, one fresh subprocess per run
# ============================================================================

E2E_METHODS = [
    # key, label, worker kind, cache mode, needs bambi
    ("cli_cold", "hbmfit --no-out, cold (empty compilation cache)", "cli", "cold", False),
    ("cli_warm", "hbmfit --no-out, warm (compilation cache filled)", "cli", "warm", False),
    ("hf_cold", "hbm_formula, cold (HBM_FORMULA_CACHE=0)", "hf", "cold", False),
    ("hf_warm", "hbm_formula, warm (compilation cache filled)", "hf", "warm", False),
    ("hand_cold", "NumPyro hand-written, cold", "hand", "cold", False),
    ("hand_warm", "NumPyro hand-written, warm (JAX cache filled)", "hand", "warm", False),
    ("bambi_nutpie", "bambi + nutpie", "bambi-nutpie", "warm", True),
    ("bambi_pymc", "bambi + PyMC NUTS", "bambi-pymc", "warm", True),
]


def _child_env(extra):
    env = dict(os.environ)
    for k in ("XLA_FLAGS", "JAX_COMPILATION_CACHE_DIR", "HBM_FORMULA_CACHE", "HBM_FORMULA_DEVICES", "PYTENSOR_FLAGS"):
        env.pop(k, None)
    env["PYTHONWARNINGS"] = "ignore"
    env.update(extra)
    return env


def _run_worker(python, kind, name, seed, args, env_extra, priors):
    if kind == "cli":
        return _run_cli(python, name, seed, args, env_extra)
    cmd = [python, str(Path(__file__).resolve()), "--worker", kind, "--dataset", name, "--seed", str(seed),
           "--warmup", str(args.warmup), "--draws", str(args.draws), "--priors", json.dumps(priors)]
    env = _child_env(env_extra)
    t_spawn = time.time()
    env["BENCH_T_SPAWN"] = repr(t_spawn)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    t_exit = time.time()
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_RESULT ")), None)
    if proc.returncode != 0 or line is None:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise RuntimeError(f"worker {kind} on {name} failed (exit {proc.returncode}):\n{tail}")
    res = json.loads(line[len("BENCH_RESULT "):])
    res["e2e_s"] = res["t_ready"] - t_spawn
    res["process_wall_s"] = t_exit - t_spawn
    res["imports_s"] = res["t_imported"] - t_spawn
    # where the time goes: start+imports | formula/model, compilation and sampling | draws -> InferenceData
    res["phases"] = {"imports_s": res["imports_s"], "fit_s": res["t_sampled"] - res["t_imported"],
                     "to_idata_s": res["t_ready"] - res["t_sampled"]}
    return res


def _run_cli(python, name, seed, args, env_extra):
    """The program as a user runs it: ``hbmfit DATA FORMULA --no-out`` with its defaults (progress shown on
    stderr, a pipe here), timed from spawn to exit; the min bulk ESS is read from the printed summary."""
    ds = DATASETS[name]
    env = _child_env(env_extra)
    if env.get("HBM_FORMULA_CACHE") == "fresh":
        env["HBM_FORMULA_CACHE"] = tempfile.mkdtemp(prefix="hbm_cold_")
    hbmfit = str(Path(python).parent / "hbmfit")
    cmd = [hbmfit, str(DATA / ds["csv"]), ds["formula"], "--no-out", "--seed", str(seed),
           "--warmup", str(args.warmup), "--draws", str(args.draws)]
    t_spawn = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    t_exit = time.time()
    if proc.returncode != 0:
        raise RuntimeError(f"hbmfit on {name} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    ess, worst = float("inf"), None
    lines = proc.stdout.splitlines()
    header = next(ln for ln in lines if "ess_bulk" in ln).split()
    col = header.index("ess_bulk") + 1  # rows start with the parameter's name
    for ln in lines[lines.index(next(ln for ln in lines if "ess_bulk" in ln)) + 1:]:
        parts = ln.split()
        if len(parts) != len(header) + 1 or parts[0].split("[")[0] not in ("Intercept", "b", f"sd_{ds['g']}", "sigma"):
            continue
        if float(parts[col]) < ess:
            ess, worst = float(parts[col]), parts[0]
    e2e = t_exit - t_spawn
    return {"kind": "cli", "dataset": name, "seed": seed, "e2e_s": e2e, "process_wall_s": e2e, "imports_s": float("nan"),
            "min_bulk_ess": ess, "min_ess_param": worst, "stderr_lines": len(proc.stderr.splitlines()),
            "phases": {"imports_s": float("nan"), "fit_s": e2e, "to_idata_s": 0.0}}


def _probe(python, code):
    """Run ``code`` in ``python``; (ok, its stdout or the last line of its error)."""
    try:
        p = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=300, env=_child_env({}))
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, str(e)
    if p.returncode == 0:
        return True, p.stdout.strip()
    err = p.stderr.strip().splitlines()
    return False, err[-1] if err else f"exit {p.returncode}"


def compile_bytecode(python):
    """Write hbm_formula's bytecode (``__pycache__``) for ``python``, as ``pip install`` of the package does for
    every package it installs (bambi's, PyMC's, JAX's ...): an editable install under
    ``PYTHONDONTWRITEBYTECODE=1`` (set on the machines these figures come from) would otherwise compile our ~30
    modules from source at every start (about 0.3 s of each run, which no user of an installed package pays).
    Returns a note for the results."""
    ok, where = _probe(python, "import hbm_formula, os; print(os.path.dirname(hbm_formula.__file__))")
    if not ok:
        return f"bytecode not compiled: {where}"
    p = subprocess.run([python, "-m", "compileall", "-q", where], capture_output=True, text=True,
                       env=_child_env({}))
    if p.returncode != 0:
        return f"bytecode not compiled ({where}): {p.stderr.strip()[-200:]}"
    return (f"hbm_formula's bytecode compiled in {where} before timing (as pip install does; "
            f"PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r} here)")


def bench_e2e(args, log, priors_by_ds):
    python = args.python or sys.executable
    notes = []
    ok_hf, info_hf = _probe(python, "import hbm_formula, jax, numpyro; print(jax.__version__, numpyro.__version__)")
    if not ok_hf:
        raise SystemExit(f"{python} cannot import hbm_formula/jax/numpyro: {info_hf}")
    ok_bambi, info_bambi = (False, "skipped (--skip-peers)")
    if not args.skip_peers:
        ok_bambi, info_bambi = _probe(
            python, "import bambi, nutpie, pymc; print(bambi.__version__, nutpie.__version__, pymc.__version__)"
        )
        if not ok_bambi:
            note = (f"bambi/nutpie not importable in {python} ({info_bambi}); peers skipped. Install the 'bench' "
                    "extra in a separate venv and pass --python /path/to/that/venv/bin/python")
            notes.append(note)
            log("NOTE: " + note)
    versions = {"interpreter": python, "jax numpyro": info_hf, "bambi nutpie pymc": info_bambi if ok_bambi else None}
    notes.append(compile_bytecode(python))
    if ok_bambi:
        notes.append(
            "bambi has no correlated group-level effects: (1 + x | g) is fitted with independent intercepts and "
            "slopes (no LKJ prior); all other priors are set to hbm_formula's defaults (Normal intercept/slope, "
            "HalfNormal group SDs, Exponential sigma; intercept at centered predictors and non-centered group "
            "effects, as bambi does by default)."
        )
    out = {"versions": versions, "notes": notes, "datasets": {}}
    tmp = Path(tempfile.mkdtemp(prefix="hbm_bench_"))
    try:
        for name in args.datasets:
            methods = [m for m in E2E_METHODS if (ok_bambi or not m[4]) and m[0] not in args.skip_methods]
            res, envs = {}, {}
            for key, label, kind, cache, peer in methods:
                env = {}
                if kind == "hf":
                    env["HBM_FORMULA_CACHE"] = "0" if cache == "cold" else str(tmp / f"hf_{name}")
                elif kind == "cli":  # cold: a new empty cache directory for every run (as a first-time user)
                    env["HBM_FORMULA_CACHE"] = str(tmp / f"cli_{name}") if cache == "warm" else "fresh"
                elif kind == "hand" and cache == "warm":
                    env["BENCH_JAX_CACHE"] = str(tmp / f"hand_{name}")
                elif peer:
                    # a private pytensor compile dir: the first run fills it, as a user's first fit fills ~/.pytensor
                    env["PYTENSOR_FLAGS"] = f"base_compiledir={tmp / 'pytensor'}"
                envs[key] = env
                res[key] = {"label": label, "runs": []}
                if cache == "warm":
                    fill = _run_worker(python, kind, name, args.seed + 100, args, env, priors_by_ds[name])
                    res[key]["fill_run"] = fill
                    log(f"[{name}] {label}: cache-filling run {fill['e2e_s']:.1f}s (not in the median)")
            # repetitions interleaved over the methods, so that a noisy minute hits all of them alike
            for rep in range(args.reps):
                for key, label, kind, _cache, _peer in methods:
                    load = os.getloadavg()[0]
                    r = _run_worker(python, kind, name, args.seed + rep, args, envs[key], priors_by_ds[name])
                    r["loadavg_1m"] = load
                    res[key]["runs"].append(r)
                    log(f"[{name}] {label}: {r['e2e_s']:.1f}s (imports {r['imports_s']:.1f}s, "
                        f"min bulk ESS {r['min_bulk_ess']:.0f}, load {load:.2f})")
            for entry in res.values():
                runs = entry["runs"]
                entry["median_e2e_s"] = statistics.median(r["e2e_s"] for r in runs)
                entry["median_imports_s"] = statistics.median(r["imports_s"] for r in runs)
                entry["median_min_bulk_ess"] = statistics.median(r["min_bulk_ess"] for r in runs)
                entry["median_phases"] = {k: statistics.median(r["phases"][k] for r in runs) for k in runs[0]["phases"]}
            out["datasets"][name] = res
    finally:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return out


# ---------------------------------------------------------------------------- workers


def _worker(a):
    t_spawn = float(os.environ.get("BENCH_T_SPAWN", time.time()))
    ds = DATASETS[a.dataset]
    result = {"kind": a.worker, "dataset": a.dataset, "seed": a.seed, "t_spawn": t_spawn}
    if a.worker == "hf":
        import pandas as pd

        import hbm_formula as hf

        _quiet_warnings()
        result["t_imported"] = time.time()
        df = pd.read_csv(DATA / ds["csv"])
        fit = hf.fit(ds["formula"], df, chains=CHAINS, warmup=a.warmup, draws=a.draws, seed=a.seed, progress=False)
        result["t_sampled"] = time.time()  # the draws are on the host when fit returns (chunked driver)
        idata = fit.idata
        result["t_ready"] = time.time()
        result["hf_timings"] = fit.timings
        post = idata.posterior
        arrays = {k: post[k].values for k in ("Intercept", "b", f"sd_{ds['g']}", "sigma")}
    elif a.worker == "hand":
        os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={N_DEVICES}"
        import jax
        import pandas as pd
        from numpyro.infer import MCMC, NUTS

        _quiet_warnings()
        import arviz as az

        _import_numpyro()
        result["t_imported"] = time.time()
        if os.environ.get("BENCH_JAX_CACHE"):  # the same settings hbm_formula uses for its cache
            jax.config.update("jax_compilation_cache_dir", os.environ["BENCH_JAX_CACHE"])
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
        df = pd.read_csv(DATA / ds["csv"])
        data, levels = hand_data(a.dataset, df)
        mcmc = MCMC(
            NUTS(HAND_MODELS[a.dataset], target_accept_prob=TARGET_ACCEPT, max_tree_depth=MAX_TREE_DEPTH),
            num_warmup=a.warmup, num_samples=a.draws, num_chains=CHAINS, chain_method="parallel", progress_bar=False,
        )
        mcmc.run(jax.random.PRNGKey(a.seed), **data, extra_fields=EXTRA_FIELDS)
        jax.block_until_ready(mcmc.get_samples())
        result["t_sampled"] = time.time()
        idata = az.from_numpyro(mcmc, coords={ds["g"]: levels})
        result["t_ready"] = time.time()
        post = idata.posterior
        arrays = {k: post[k].values for k in ("Intercept", f"b_{ds['x']}", "sd_a", "sd_b", "sigma")}
    elif a.worker in ("bambi-nutpie", "bambi-pymc"):
        import pandas as pd

        _quiet_warnings()
        import bambi as bmb

        result["t_imported"] = time.time()
        import logging

        logging.getLogger("pymc").setLevel(logging.ERROR)
        logging.getLogger("bambi").setLevel(logging.ERROR)
        p = json.loads(a.priors)
        x, g = ds["x"], ds["g"]
        df = pd.read_csv(DATA / ds["csv"])
        df[g] = df[g].astype(str)  # a grouping factor, also when its levels are numbers
        priors = {
            "Intercept": bmb.Prior("Normal", mu=p["Intercept"][0], sigma=p["Intercept"][1]),
            x: bmb.Prior("Normal", mu=p["b"][0], sigma=p["b"][1]),
            f"1|{g}": bmb.Prior("Normal", mu=0.0, sigma=bmb.Prior("HalfNormal", sigma=p["sd_Intercept"])),
            f"{x}|{g}": bmb.Prior("Normal", mu=0.0, sigma=bmb.Prior("HalfNormal", sigma=p["sd_x"])),
            "sigma": bmb.Prior("Exponential", lam=p["sigma_rate"]),
        }
        model = bmb.Model(ds["formula"], df, priors=priors)  # non-centered, centered predictors: bambi defaults
        method = "nutpie" if a.worker == "bambi-nutpie" else "pymc"
        idata = model.fit(draws=a.draws, tune=a.warmup, chains=CHAINS, inference_method=method,
                          random_seed=a.seed, progressbar=False)
        result["t_sampled"] = time.time()
        model.compute_log_likelihood(idata)  # hbm_formula's and az.from_numpyro's idata have it too
        result["t_ready"] = time.time()
        post = idata.posterior
        arrays = {k: post[k].values for k in ("Intercept", x, f"1|{g}_sigma", f"{x}|{g}_sigma", "sigma")}
    else:
        raise SystemExit(f"unknown worker {a.worker}")
    ess, worst, _ = min_bulk_ess(arrays)
    result["min_bulk_ess"] = ess
    result["min_ess_param"] = worst
    print("BENCH_RESULT " + json.dumps(result), flush=True)


# ============================================================================
# report
# ============================================================================


def _fmt_table(rows, header):
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *[line(r) for r in rows]])


def report(results):
    out = []
    ess = results.get("ess")
    if ess:
        out.append(f"(a) sampling efficiency: medians of {results['settings']['ess_reps']} runs, "
                   f"{CHAINS} chains x {results['settings']['warmup']} warmup x {results['settings']['draws']} draws, "
                   f"parallel on {N_DEVICES} CPU devices; time = NUTS execution with compilation subtracted")
        header = ["dataset / model", "min bulk ESS", "warmup s", "sampling s", "ESS/s", "ESS/s (draws only)",
                  "us/step (4 chains)", "steps/draw", "warmup steps/iter", "ESS/1k steps", "us/gradient (1 dev)", "XLA kflops/grad", "XLA kB/grad", "compile s (1st run)"]
        rows = []
        for name, d in ess.items():
            for w in ("generated", "hand-written"):
                m = d["median"][w]
                rows.append([f"{name} {w}", f"{m['min_bulk_ess']:.0f}", f"{m['warmup_s']:.2f}", f"{m['sampling_s']:.2f}",
                             f"{m['ess_per_s']:.0f}", f"{m['ess_per_s_sampling']:.0f}", f"{m['us_per_step']:.2f}",
                             f"{m['steps_per_draw']:.1f}", f"{m['warmup_steps_per_iter']:.1f}", f"{m['ess_per_1k_steps']:.1f}",
                             f"{d['grad_cost'][w]['us_per_grad_min']:.2f}", f"{d['grad_cost'][w]['xla_flops'] / 1e3:.1f}",
                             f"{d['grad_cost'][w]['xla_bytes_accessed'] / 1e3:.1f}", f"{d['first_run_compile_s'][w]:.1f}"])
            r = d["ratio_generated_over_hand"]
            c = d["first_run_compile_s"]
            rows.append([f"{name} ratio gen/hand", f"{r['min_bulk_ess']:.3f}", f"{r['warmup_s']:.3f}", f"{r['sampling_s']:.3f}",
                         f"{r['ess_per_s']:.3f}", f"{r['ess_per_s_sampling']:.3f}", f"{r['us_per_step']:.3f}",
                         f"{r['steps_per_draw']:.3f}", f"{r['warmup_steps_per_iter']:.3f}", f"{r['ess_per_1k_steps']:.3f}",
                         f"{d['grad_cost_ratio_generated_over_hand']:.3f}",
                         f"{d['grad_cost']['generated']['xla_flops'] / d['grad_cost']['hand-written']['xla_flops']:.3f}",
                         f"{d['grad_cost']['generated']['xla_bytes_accessed'] / d['grad_cost']['hand-written']['xla_bytes_accessed']:.3f}",
                         f"{c['generated'] / c['hand-written']:.3f}"])
        out.append(_fmt_table(rows, header))
        for name, d in ess.items():
            r = d["ratio_generated_over_hand"]["ess_per_s"]
            verdict = "OK (>= 0.95)" if r >= 0.95 else "BELOW the 0.95 target"
            out.append(f"  {name}: generated/hand-written bulk-ESS/s = {r:.3f}  {verdict}")
        out.append("")
    e2e = results.get("e2e")
    if e2e:
        names = list(e2e["datasets"])
        out.append(f"(b) end to end, formula -> InferenceData in a fresh process (median of {results['settings']['reps']}), seconds")
        keys = [k for k, *_ in E2E_METHODS if any(k in e2e["datasets"][n] for n in names)]
        labels = {k: lab for k, lab, *_ in E2E_METHODS}
        ref = "bambi_nutpie" if all("bambi_nutpie" in e2e["datasets"][n] for n in names) else "hf_cold"
        header = ["method", *[f"{n} s" for n in names], *[f"{n} / {ref}" for n in names]]
        rows = []
        for k in keys:
            row = [labels[k]]
            for n in names:
                v = e2e["datasets"][n].get(k)
                row.append(f"{v['median_e2e_s']:.1f}" if v else "-")
            for n in names:
                v, base = e2e["datasets"][n].get(k), e2e["datasets"][n].get(ref)
                row.append(f"{v['median_e2e_s'] / base['median_e2e_s']:.2f}" if v and base else "-")
            rows.append(row)
        out.append(_fmt_table(rows, header))
        out.append("")
        out.append("    where the time goes (medians, seconds): interpreter start+imports / model+compilation+sampling "
                   "/ draws->InferenceData (hbm_formula: + its diagnostics)")
        rows = []
        for k in keys:
            row = [labels[k]]
            for n in names:
                v = e2e["datasets"][n].get(k)
                ph = v["median_phases"] if v else None
                row.append(" / ".join(f"{ph[p]:.1f}" for p in ("imports_s", "fit_s", "to_idata_s")) if ph else "-")
            for n in names:
                v = e2e["datasets"][n].get(k)
                row.append(f"{v['median_min_bulk_ess']:.0f}" if v else "-")
            rows.append(row)
        out.append(_fmt_table(rows, ["method", *names, *[f"{n} min ESS" for n in names]]))
        for n in e2e["notes"]:
            out.append(f"  note: {n}")
    return "\n".join(out)


def _git_state():
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "hbm_formula", "grammar"],
                               capture_output=True, text=True).stdout.strip()
        return {"checkout_commit": head, "checkout_package_dirty": bool(dirty)}
    except OSError:
        return {}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--reps", type=int, default=3, help="repetitions (different seeds) per measurement; medians reported")
    p.add_argument("--ess-reps", type=int, help="repetitions for (a) only (default: --reps)")
    p.add_argument("--warmup", type=int, default=1000)
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--python", help="interpreter for the end-to-end subprocesses (default: this one); "
                   "bambi/nutpie are benchmarked if it can import them")
    p.add_argument("--skip-ess", action="store_true", help="skip (a)")
    p.add_argument("--skip-e2e", action="store_true", help="skip (b)")
    p.add_argument("--skip-peers", action="store_true", help="skip bambi in (b)")
    p.add_argument("--skip-methods", nargs="*", default=[], choices=[k for k, *_ in E2E_METHODS],
                   help="end-to-end methods to leave out")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per subprocess")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--note", default="", help="free text stored in the JSON (e.g. which package snapshot was measured)")
    # internal: one end-to-end run
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--dataset", help=argparse.SUPPRESS)
    p.add_argument("--priors", default="{}", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        return _worker(a)
    a.ess_reps = a.ess_reps or a.reps

    def log(msg):
        print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)

    import hbm_formula as hf

    results = {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "python": sys.version.split()[0],
        },
        "package": {"hbm_formula": getattr(hf, "__version__", "?"), "path": str(Path(hf.__file__).parent), **_git_state()},
        "note": a.note,
        "settings": {"chains": CHAINS, "warmup": a.warmup, "draws": a.draws, "reps": a.reps, "ess_reps": a.ess_reps, "seed": a.seed,
                     "target_accept": TARGET_ACCEPT, "max_tree_depth": MAX_TREE_DEPTH, "devices": N_DEVICES},
    }
    t0 = time.time()
    if not a.skip_ess:
        results["ess"] = bench_ess(a, log)
    if not a.skip_e2e:
        priors = {}
        for name in a.datasets:
            priors[name] = priors_from_table(hf.compile(DATASETS[name]["formula"], load_df(name)), DATASETS[name])
        results["e2e"] = bench_e2e(a, log, priors)
    results["total_benchmark_s"] = time.time() - t0
    import jax
    import numpyro

    results["machine"]["jax"] = jax.__version__
    results["machine"]["numpyro"] = numpyro.__version__
    text = report(results)
    print()
    print(text)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = a.out.with_name(a.out.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=1, default=float))
    os.replace(tmp, a.out)
    print(f"\nwrote {a.out}")


if __name__ == "__main__":
    main()
