"""Shared helpers for the scale/parameterization benchmarks (hand-written 4PL model, timing)."""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
POP = ["Intercept_bottom", "Intercept_top", "Intercept_log_ec50", "Intercept_hill",
       "sd_compound__bottom", "sd_compound__top", "sd_compound__log_ec50", "sd_compound__hill", "sigma"]


def machine() -> dict:
    import jax
    import numpyro

    try:
        cpu = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")][0]
    except Exception:  # noqa: BLE001
        cpu = platform.processor()
    return {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "cpu": cpu, "cores": os.cpu_count(),
            "jax": jax.__version__, "numpyro": numpyro.__version__, "python": platform.python_version()}


def pop_ess_rhat(posterior) -> tuple[dict, dict]:
    """Per population parameter of the 4PL: its lowest bulk ESS and highest R-hat."""
    import arviz as az
    import numpy as np

    ess = {v: float(np.min(az.ess(posterior[v], method="bulk")[v].values)) for v in POP}
    rhat = {v: float(np.max(az.rhat(posterior[v])[v].values)) for v in POP}
    return ess, rhat


def write(name: str, obj: dict) -> str:
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"{name}.json")
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, default=float)
    return path


def prior_objects(cm) -> dict:
    """The generated model's priors as numpyro distributions, keyed by site name."""
    import numpyro.distributions as dist

    out = {}
    for name, row in cm.priors_table().iterrows():
        site = name.replace("__Intercept", "") if name.startswith("sd_") else name
        out[site] = eval(row["numpyro"], {"dist": dist})  # noqa: S307 - our own generated prior text
    return out


def make_hand_4pl(priors: dict):
    """Hand-written non-centered hierarchical 4PL, same sites/priors/parameterization as the generated one,
    but with one group index and one gather of a stacked (G, 4) matrix of group effects."""
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    names = ["bottom", "top", "log_ec50", "hill"]

    def model(g, log_dose, n_groups, y=None):
        effs = []
        for nm in names:
            b0 = numpyro.sample(f"Intercept_{nm}", priors[f"Intercept_{nm}"])
            sd = numpyro.sample(f"sd_compound__{nm}", priors[f"sd_compound__{nm}"].expand([1]).to_event(1))
            z = numpyro.sample(f"z_compound__{nm}", dist.Normal(0.0, 1.0).expand([n_groups, 1]).to_event(2))
            effs.append(b0 + z[:, 0] * sd[0])
        eff = jnp.stack(effs, -1)[g]           # (N, 4): one gather
        bottom, top, le, hill = eff[:, 0], eff[:, 1], eff[:, 2], jnp.exp(eff[:, 3])
        mu = bottom + (top - bottom) / (1.0 + jnp.exp(hill * (le - log_dose)))
        sigma = numpyro.sample("sigma", priors["sigma"])
        with numpyro.plate("obs", g.shape[0]):
            numpyro.sample("y", dist.Normal(mu, sigma), obs=y)

    return model


def hand_data(df) -> dict:
    import numpy as np

    codes, levels = __import__("pandas").factorize(df["compound"], sort=True)
    return {"g": codes.astype(np.int32), "log_dose": df["log_dose"].to_numpy(), "n_groups": len(levels),
            "y": df["resp"].to_numpy()}


def time_grad(model, kwargs: dict, calls: int = 50, repeats: int = 5, seed: int = 0) -> dict:
    """Median ms per jitted value_and_grad of the potential energy."""
    import jax
    from numpyro.infer.util import initialize_model

    info = initialize_model(jax.random.PRNGKey(seed), model, model_kwargs=kwargs, dynamic_args=False)
    params = info.param_info.z
    vg = jax.jit(jax.value_and_grad(info.potential_fn))
    t0 = time.perf_counter()
    jax.block_until_ready(vg(params))
    compile_s = time.perf_counter() - t0
    for _ in range(5):
        jax.block_until_ready(vg(params))
    per = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            out = vg(params)
        jax.block_until_ready(out)
        per.append((time.perf_counter() - t0) / calls * 1e3)
    return {"ms_median": statistics.median(per), "ms_all": per, "compile_s": compile_s,
            "value": float(vg(params)[0])}


def peak_rss_cmd(cmd: list[str]) -> tuple[float | None, str]:
    """Run ``cmd`` under /usr/bin/time -v; return (max RSS in MB, stdout)."""
    if not os.path.exists("/usr/bin/time"):
        return None, subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    p = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(p.stderr[-3000:])
    rss = None
    for line in p.stderr.splitlines():
        if "Maximum resident set size" in line:
            rss = int(line.split(":")[1]) / 1024
    return rss, p.stdout


def time_grads_interleaved(models: dict, calls: int = 50, repeats: int = 5, seed: int = 0) -> dict:
    """As time_grad for several (model, kwargs) pairs, their timing rounds interleaved (A B A B ...) so
    that load from other processes hits all of them alike. Returns per name median/min ms and all rounds."""
    import jax
    from numpyro.infer.util import initialize_model

    fns = {}
    for name, (model, kwargs) in models.items():
        info = initialize_model(jax.random.PRNGKey(seed), model, model_kwargs=kwargs, dynamic_args=False)
        vg = jax.jit(jax.value_and_grad(info.potential_fn))
        p = info.param_info.z
        t0 = time.perf_counter()
        jax.block_until_ready(vg(p))
        fns[name] = (vg, p, time.perf_counter() - t0)
        for _ in range(5):
            jax.block_until_ready(vg(p))
    per = {n: [] for n in fns}
    for _ in range(repeats):
        for name, (vg, p, _) in fns.items():
            t0 = time.perf_counter()
            for _ in range(calls):
                out = vg(p)
            jax.block_until_ready(out)
            per[name].append((time.perf_counter() - t0) / calls * 1e3)
    return {n: {"ms_median": statistics.median(v), "ms_min": min(v), "ms_all": v, "compile_s": fns[n][2]}
            for n, v in per.items()}


#: the spinach 4PL dose-response model (drc's spinach data, one curve per CURVE)
SPINACH = """SLOPE ~ LL4(DOSE, b, c, d, e)
b ~ 1 + (1 | CURVE)
c ~ 1 + (1 | CURVE)
d ~ 1 + (1 | CURVE)
e ~ 1 + (1 | CURVE)"""


def shipped_models():
    """The shipped examples' models (name, formula, data, keyword arguments of ``hf.compile``/``hf.fit``)."""
    import pandas as pd

    data = os.path.join(os.path.dirname(HERE), "examples", "data")
    yield "radon", "log_radon ~ floor + (1 + floor | county)", pd.read_csv(os.path.join(data, "radon.csv")), {}
    yield "sleepstudy", "Reaction ~ Days + (Days | Subject)", pd.read_csv(os.path.join(data, "sleepstudy.csv")), {}
    yield ("cbpp", "incidence | trials(size) ~ period + (1 | herd)", pd.read_csv(os.path.join(data, "cbpp.csv")),
           {"family": "binomial"})
    yield "spinach 4PL", SPINACH, pd.read_csv(os.path.join(data, "drc_spinach.csv")), {}


def flat_potential(gen, z):
    """NUTS's potential on one flat vector, as ``infer.run_nuts`` runs it: the generator of the potential of the
    flat vector (from ``gen``, the per-site one of ``potential_setup``) and the starting point ``z`` flattened."""
    import jax
    import numpy as np

    leaves, tree = jax.tree.flatten(z)
    sizes = [int(np.size(v)) for v in leaves]

    def unravel(u):
        at, parts = 0, []
        for v, n in zip(leaves, sizes, strict=True):
            parts.append(u[at:at + n].reshape(v.shape))
            at += n
        return jax.tree.unflatten(tree, parts)

    return (lambda **a: (lambda u: gen(**a)(unravel(u)))), np.concatenate([np.ravel(v) for v in leaves])


def nuts_program(potential_fn_gen, warmup, iterations):
    """NumPyro's NUTS start and ``iterations`` transitions (the first ``warmup`` of them adapting) in one function
    of (starting point, data), for a jitted program: each iteration's leapfrog steps are its output."""
    import jax
    from numpyro.infer.hmc import hmc

    init_kernel, sample_kernel = hmc(potential_fn_gen=potential_fn_gen, algo="NUTS")

    def run(z0, arrays):
        st = init_kernel(z0, warmup, model_kwargs=arrays, rng_key=jax.random.PRNGKey(1))

        def body(s, _):
            s = sample_kernel(s, model_kwargs=arrays)
            return s, s.num_steps
        return jax.lax.scan(body, st, None, length=iterations)[1]

    return run


def potential_setup(formula, df, **kw):
    """``hf.compile`` a model and what NumPyro's kernels need of it: the compiled model, the unconstrained latent
    sites' shapes, the potential's generator, the data as device arrays, and a starting point uniform in
    (-0.5, 0.5) (seed 0, NumPy arrays)."""
    import jax.numpy as jnp
    import numpy as np

    import hbm_formula as hf
    from hbm_formula import infer

    cm = hf.compile(formula, df, **kw)
    shapes, gen, _ = infer.nuts_functions(cm.model, cm.data)
    arrays = {k: jnp.asarray(v) for k, v in cm.data.items()}
    rng = np.random.default_rng(0)
    z = {k: rng.uniform(-0.5, 0.5, v.shape).astype(v.dtype) for k, v in shapes.items()}
    return cm, shapes, gen, arrays, z
