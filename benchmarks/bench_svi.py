"""Minibatch SVI with the defaults, on data nobody tuned on (issue 11), beside a hand-written full-batch
NumPyro AutoNormal SVI (Adam 0.05, 10K steps) of the same model: wall time including compilation,
each run in a fresh process with the persistent compilation cache off, and accuracy against the truth.

Cases (data simulated with seeds the tests never use):
  lmm       y ~ x + (1 + x | g), 400K rows / 3000 groups, Intercept 2, slope -0.7, group SDs 0.5, 0.3, residual 1
  fourpl    the hierarchical 4PL of fourpl_data.py, 400K rows / 3000 compounds
  logistic  y ~ x + (1 | g), bernoulli, 200K rows / 2000 groups, Intercept -0.5, slope 0.8, group SD 0.6
  poisson   y ~ x + (1 | g), poisson, 1M rows / 5000 groups, Intercept 0.3, slope 0.2, group SD 0.5

Ours: hf.fit(formula, df, method="svi", batch_size=4096) and nothing else.

    python benchmarks/bench_svi.py [--cases lmm,fourpl] [--seeds 0,1] [--no-hand]     # results/bench_svi.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

CASES = {
    "lmm": {"formula": "y ~ x + (1 + x | g)", "family": "gaussian",
            "truth": {"Intercept": 2.0, "b": -0.7, "sd": [0.5, 0.3], "sigma": 1.0}},
    "fourpl": {"formula": None, "family": "gaussian", "truth": None},
    "logistic": {"formula": "y ~ x + (1 | g)", "family": "bernoulli", "truth": {"Intercept": -0.5, "b": 0.8, "sd": [0.6]}},
    "poisson": {"formula": "y ~ x + (1 | g)", "family": "poisson", "truth": {"Intercept": 0.3, "b": 0.2, "sd": [0.5]}},
}


def make(case: str, seed: int):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(7000 + seed)
    if case == "lmm":
        n, G = 400_000, 3000
        g = rng.integers(0, G, n)
        x = rng.normal(size=n)
        a, s = rng.normal(0, 0.5, G), rng.normal(0, 0.3, G)
        y = 2.0 + a[g] + (-0.7 + s[g]) * x + rng.normal(0, 1.0, n)
        return pd.DataFrame({"y": y, "x": x, "g": g}), {"Intercept": 2.0 + a.mean(), "b": -0.7 + s.mean()}
    if case == "fourpl":
        import fourpl_data

        df = fourpl_data.make_4pl(400_000, 3000, seed=500 + seed)
        return df, {}
    if case == "logistic":
        n, G = 200_000, 2000
        g = rng.integers(0, G, n)
        x = rng.normal(size=n)
        a = rng.normal(0, 0.6, G)
        p = 1 / (1 + np.exp(-(-0.5 + a[g] + 0.8 * x)))
        return pd.DataFrame({"y": rng.binomial(1, p), "x": x, "g": g}), {"Intercept": -0.5 + a.mean()}
    n, G = 1_000_000, 5000
    g = rng.integers(0, G, n)
    x = rng.normal(size=n)
    a = rng.normal(0, 0.5, G)
    return pd.DataFrame({"y": rng.poisson(np.exp(0.3 + a[g] + 0.2 * x)), "x": x, "g": g}), {"Intercept": 0.3 + a.mean()}


def ours(case: str, seed: int) -> dict:
    import warnings

    import numpy as np

    import hbm_formula as hf

    df, realized = make(case, seed)
    spec = CASES[case]
    formula = spec["formula"]
    if case == "fourpl":
        import fourpl_data

        formula = fourpl_data.FORMULA
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = hf.fit(formula, df, family=spec["family"], method="svi", batch_size=4096, seed=seed, progress=False)
    wall = time.perf_counter() - t0
    post = fit.idata.posterior
    est = {k: float(np.asarray(post[k]).mean()) for k in post.data_vars if np.asarray(post[k]).ndim == 2}
    est.update({k: np.asarray(post[k]).mean(axis=(0, 1)).tolist() for k in post.data_vars
                if np.asarray(post[k]).ndim == 3 and (k.startswith("sd_") or k == "b")})
    sd_post = {k: float(np.asarray(post[k]).std()) for k in ("Intercept", "sigma") if k in post}
    return {"case": case, "seed": seed, "who": "ours", "wall": wall, "steps": fit.raw.steps,
            "converged": fit.raw.converged, "warnings": [str(w.message)[:200] for w in caught], "estimates": est,
            "posterior_sd": sd_post, "realized": realized, "timings": fit.timings,
            "parameterization": {g: r.chosen for g, r in fit.model.parameterization().iterrows()}}


def hand(case: str, seed: int) -> dict:
    """Hand-written full-batch AutoNormal SVI, Adam 0.05, 10K steps (non-centered, as one writes it)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer import SVI, Trace_ELBO, autoguide

    df, realized = make(case, seed)
    if case == "fourpl":
        import common
        import fourpl_data

        import hbm_formula as hf

        cm = hf.compile(fourpl_data.FORMULA, df, param="noncentered")  # only for the default prior numbers
        model = common.make_hand_4pl(common.prior_objects(cm))
        data = common.hand_data(df)
        t0 = time.perf_counter()
    else:
        t0 = time.perf_counter()
        g = jnp.asarray(df["g"].to_numpy())
        x = jnp.asarray(df["x"].to_numpy(), dtype=jnp.float32)
        y = jnp.asarray(df["y"].to_numpy(), dtype=jnp.float32)
        G = int(df["g"].max()) + 1
        fam = CASES[case]["family"]
        slopes = case == "lmm"

        def model(g, x, y):
            a = numpyro.sample("Intercept", dist.Normal(0.0, 5.0))
            b = numpyro.sample("b", dist.Normal(0.0, 5.0))
            K = 2 if slopes else 1
            sd = numpyro.sample("sd", dist.HalfNormal(2.5).expand([K]).to_event(1))
            z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([G, K]).to_event(2))
            r = z * sd
            eta = a + r[g, 0] + (b + (r[g, 1] if slopes else 0.0)) * x
            with numpyro.plate("obs", y.shape[0]):
                if fam == "gaussian":
                    s = numpyro.sample("sigma", dist.Exponential(1.0))
                    numpyro.sample("y", dist.Normal(eta, s), obs=y)
                elif fam == "bernoulli":
                    numpyro.sample("y", dist.Bernoulli(logits=eta), obs=y)
                else:
                    numpyro.sample("y", dist.Poisson(jnp.exp(eta)), obs=y)

        data = {"g": g, "x": x, "y": y}
    guide = autoguide.AutoNormal(model)
    svi = SVI(model, guide, numpyro.optim.Adam(0.05), Trace_ELBO())
    res = svi.run(jax.random.PRNGKey(seed), 10_000, progress_bar=False, **data)
    jax.block_until_ready(res.params)
    wall = time.perf_counter() - t0
    med = guide.median(res.params)
    est = {k: np.asarray(v).tolist() for k, v in med.items() if np.size(v) < 10}
    return {"case": case, "seed": seed, "who": "hand", "wall": wall, "estimates": est, "realized": realized}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default="lmm,fourpl,logistic,poisson")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--no-hand", action="store_true")
    ap.add_argument("--one", nargs=3, metavar=("WHO", "CASE", "SEED"), help=argparse.SUPPRESS)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "bench_svi.json"))
    a = ap.parse_args()
    if a.one:
        who, case, seed = a.one
        os.environ["HBM_FORMULA_CACHE"] = "0"
        r = (ours if who == "ours" else hand)(case, int(seed))
        print("RESULT " + json.dumps(r, default=float), flush=True)
        return
    rows = json.load(open(a.out))["rows"] if os.path.exists(a.out) else []
    for case in a.cases.split(","):
        for seed in [int(s) for s in a.seeds.split(",")]:
            for who in (["ours"] if a.no_hand or case in ("logistic", "poisson") else ["ours", "hand"]):
                env = dict(os.environ, HBM_FORMULA_CACHE="0", JAX_ENABLE_COMPILATION_CACHE="false")
                out = subprocess.run([sys.executable, __file__, "--one", who, case, str(seed)], capture_output=True,
                                     text=True, env=env)
                line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
                if line is None:
                    print(out.stderr[-2000:])
                    continue
                r = json.loads(line[7:])
                rows.append(r)
                print(json.dumps(r)[:400], flush=True)
                os.makedirs(os.path.dirname(a.out), exist_ok=True)
                with open(a.out, "w") as f:
                    json.dump({"rows": rows}, f, indent=1, default=float)


if __name__ == "__main__":
    main()
