"""Simulation-based calibration (Talts, Betancourt, Simpson, Vehtari & Gelman 2018)
for the core model classes of hbm_formula, with NUTS and with mean-field SVI.

For each class: a small fixed design, explicit priors for every parameter (the
default priors are scaled by sd(y), so they would depend on the simulated
response), S data sets drawn from the prior predictive (``cm.sample_prior``),
each fitted, and for every tracked scalar the rank of the true value among L
nearly independent posterior draws. If the inference is calibrated the ranks
are uniform on 0..L; a chi-square test over B bins checks that.

Speed: every class is compiled once, and the data sets run through one jitted,
vmapped program (NumPyro's functional NUTS, or SVI as a ``lax.scan``) in
batches, never ``hf.fit`` per data set.

    python benchmarks/sbc.py --sims 200 --method both --out benchmarks/results/sbc/

Importable: ``CLASSES``, ``run_class`` (one class, one method: ranks, p-values,
diagnostics), ``rank_stats``, ``plot_ranks``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

if __name__ == "__main__":  # one host device: the vmapped batch is the parallelism
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ.setdefault("HBM_FORMULA_CACHE", "0")

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))


# ---------------------------------------------------------------- the model classes
def _grouped_design(n_groups: int, per_group: int, seed: int) -> pd.DataFrame:
    """A fixed design: ``n_groups`` × ``per_group`` rows, x ~ N(0, 1) (seeded), and
    placeholder responses (the priors are explicit, so their values never matter)."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), per_group)
    n = g.size
    return pd.DataFrame({
        "g": [f"g{i:02d}" for i in g],
        "x": rng.normal(size=n),
        "t": np.tile(np.linspace(0.0, 3.0, per_group), n_groups),
        "y": rng.normal(size=n) + 1.0,  # gaussian and non-linear placeholder
        "s": np.full(n, 3),  # binomial successes placeholder
        "n": np.full(n, 10),  # binomial trials (fixed design)
        "c": np.full(n, 2),  # Poisson counts placeholder
    })


@dataclass(frozen=True)
class SBCClass:
    """One model class: formula, family, explicit priors, the fixed design, and the
    scalars to check, each as (label, site, index into the site's value)."""

    name: str
    formula: str
    priors: dict[str, str]
    params: list[tuple[str, str, tuple[int, ...]]]
    family: str | None = None
    nl: dict[str, str] | None = None
    n_groups: int = 10
    per_group: int = 8
    design_seed: int = 20260101

    def frame(self) -> pd.DataFrame:
        return _grouped_design(self.n_groups, self.per_group, self.design_seed)

    def compile(self) -> Any:
        import hbm_formula as hf

        # one program for every simulated data set: auto would decide from the placeholder response, so the
        # group terms are non-centered, as every figure of the SBC table was measured
        cm = hf.compile(self.formula, self.frame(), family=self.family, nl=self.nl, priors=self.priors,
                        param="noncentered")
        table = cm.priors_table()
        not_set = [p for p, src in table["source"].items() if not src.startswith("user")]
        if not_set:  # a default prior would be scaled by the placeholder response
            raise ValueError(f"{self.name}: priors not given explicitly: {not_set}")
        return cm


_R3 = [("r_g[0]", "r_g", (0,)), ("r_g[1]", "r_g", (1,)), ("r_g[2]", "r_g", (2,))]

CLASSES: dict[str, SBCClass] = {
    c.name: c
    for c in [
        SBCClass(
            "varying_intercept", "y ~ x + (1 | g)",
            {"Intercept": "normal(0, 1)", "b": "normal(0, 1)", "sd_g": "half_normal(1)", "sigma": "exponential(1)"},
            [("Intercept", "Intercept", ()), ("b_x", "b", ()), ("sd_g", "sd_g", ()), ("sigma", "sigma", ()), *_R3],
        ),
        SBCClass(
            "correlated_slopes", "y ~ x + (1 + x | g)",
            {"Intercept": "normal(0, 1)", "b": "normal(0, 1)", "sd_g__Intercept": "half_normal(1)",
             "sd_g__x": "half_normal(0.5)", "cor_g": "lkj(2)", "sigma": "exponential(1)"},
            [("Intercept", "Intercept", ()), ("b_x", "b", ()), ("sd_g__Intercept", "sd_g", (0,)),
             ("sd_g__x", "sd_g", (1,)), ("cor_g", "cor_g", (0,)), ("sigma", "sigma", ()),
             ("r_g[0,Intercept]", "r_g", (0, 0)), ("r_g[0,x]", "r_g", (0, 1)), ("r_g[1,Intercept]", "r_g", (1, 0)),
             ("r_g[1,x]", "r_g", (1, 1))],
            n_groups=12, per_group=8,
        ),
        SBCClass(
            "binomial", "s | trials(n) ~ x + (1 | g)",
            {"Intercept": "normal(0, 1)", "b": "normal(0, 1)", "sd_g": "half_normal(1)"},
            [("Intercept", "Intercept", ()), ("b_x", "b", ()), ("sd_g", "sd_g", ()), *_R3],
            family="binomial",
        ),
        SBCClass(
            "poisson", "c ~ x + (1 | g)",
            {"Intercept": "normal(1, 0.5)", "b": "normal(0, 0.5)", "sd_g": "half_normal(0.5)"},
            [("Intercept", "Intercept", ()), ("b_x", "b", ()), ("sd_g", "sd_g", ()), *_R3],
            family="poisson",
        ),
        SBCClass(
            "nonlinear_exp_decay", "y ~ a * exp(-k * t)",
            {"Intercept_a": "normal(3, 1)", "Intercept_k": "normal(-0.5, 0.5)",
             "sd_g__a__Intercept": "half_normal(1)", "sigma": "exponential(2)"},
            [("Intercept_a", "Intercept_a", ()), ("Intercept_k", "Intercept_k", ()), ("sd_g__a", "sd_g__a", ()),
             ("sigma", "sigma", ()), ("r_g__a[0]", "r_g__a", (0,)), ("r_g__a[1]", "r_g__a", (1,)),
             ("r_g__a[2]", "r_g__a", (2,))],
            nl={"a": "1 + (1 | g)", "k": "1, lb = 0"},
        ),
    ]
}


# ---------------------------------------------------------------- simulation
def simulate(cm: Any, sims: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """S draws from the prior predictive: (every site's true value, the responses (S, N))."""
    prior = cm.sample_prior(sims, seed)
    return prior, prior["y"]


def _fixed_data(cm: Any) -> dict[str, Any]:
    import jax.numpy as jnp

    return {k: jnp.asarray(v) for k, v in cm.data.items() if k != "y"}


def _setup(cm: Any, y0: np.ndarray) -> Any:
    import jax
    from numpyro.infer.util import initialize_model

    return initialize_model(jax.random.PRNGKey(0), cm.model, model_kwargs={**_fixed_data(cm), "y": y0},
                            dynamic_args=True)


def _constrained(info: Any, kw: dict[str, Any], z: dict[str, Any], sites: list[str]) -> dict[str, Any]:
    """Unconstrained draws (L, ...) of one fit → the named sites, constrained and
    deterministic ones included (L, ...)."""
    import jax

    post = info.postprocess_fn(**kw)
    out = jax.vmap(post)(z)
    return {k: out[k] for k in sites}


def _compiled_batches(one: Callable[..., Any], keys: Any, ys: np.ndarray, batch: int) -> tuple[Callable[[], Any], float]:
    """``one(key, y)`` jitted and vmapped over ``batch`` data sets, compiled ahead of time
    (so its compile time is measured apart), and a generator running it over all data
    sets; the last batch is padded with copies and the copies' results dropped."""
    import jax
    import jax.numpy as jnp

    s = ys.shape[0]
    batch = min(batch, s)
    t0 = time.perf_counter()
    compiled = jax.jit(jax.vmap(one)).lower(keys[:batch], jnp.asarray(ys[:batch])).compile()
    seconds = time.perf_counter() - t0

    def gen() -> Any:
        for lo in range(0, s, batch):
            k, y = keys[lo:lo + batch], ys[lo:lo + batch]
            n = y.shape[0]
            if n < batch:
                k = jnp.concatenate([k, jnp.repeat(k[-1:], batch - n, 0)])
                y = np.concatenate([y, np.repeat(y[-1:], batch - n, 0)])
            out = compiled(k, jnp.asarray(y))
            yield jax.tree.map(lambda a, n=n: np.asarray(a)[:n], out)

    return gen, seconds


@dataclass
class Posterior:
    draws: dict[str, np.ndarray]  # site -> (S, L, ...)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def nuts_posteriors(
    cm: Any, ys: np.ndarray, sites: list[str], *, warmup: int = 500, draws: int = 1000, thin: int = 10,
    target_accept: float = 0.8, max_tree_depth: int = 10, batch: int = 50, seed: int = 0,
) -> Posterior:
    """One NUTS chain per data set (``warmup`` adaptation iterations, then ``draws``),
    kept every ``thin``-th draw: L = draws // thin - 1 draws (so L + 1 divides evenly
    into bins). Data sets run vmapped, ``batch`` at a time, through one jitted program.

    NumPyro's functional NUTS (as ``run_nuts_sharded`` in hbm_formula.infer), with the
    response as an argument of the compiled sampler. Initial values: uniform(-2, 2) on
    the unconstrained scale (NumPyro's default), redrawn while the density is not finite.
    """
    import jax
    import jax.numpy as jnp
    from numpyro.diagnostics import effective_sample_size
    from numpyro.infer.hmc import hmc

    t0 = time.perf_counter()
    fixed = _fixed_data(cm)
    info = _setup(cm, ys[0])
    init_kernel, sample_kernel = hmc(potential_fn_gen=info.potential_fn, algo="NUTS")
    z_proto = info.param_info.z
    keep = np.arange(thin, draws, thin)  # L = ceil(draws / thin) - 1

    def init_z(key: Any, kw: dict[str, Any]) -> Any:
        pe_fn = info.potential_fn(**kw)

        def draw(k: Any) -> Any:
            leaves, tree = jax.tree.flatten(z_proto)
            ks = jax.random.split(k, len(leaves))
            return jax.tree.unflatten(tree, [jax.random.uniform(kk, jnp.shape(v), minval=-2, maxval=2)
                                             for kk, v in zip(ks, leaves, strict=True)])

        def cond(c: Any) -> Any:
            _, z, i = c
            return (~jnp.isfinite(pe_fn(z))) & (i < 100)

        def body(c: Any) -> Any:
            k, _, i = c
            k, k1 = jax.random.split(k)
            return k, draw(k1), i + 1

        k, k1 = jax.random.split(key)
        return jax.lax.while_loop(cond, body, (k, draw(k1), 0))[1]

    def one(key: Any, y: Any) -> Any:
        kw = {**fixed, "y": y}
        k_init, k_run = jax.random.split(key)
        state = init_kernel(init_z(k_init, kw), warmup, target_accept_prob=target_accept,
                            max_tree_depth=max_tree_depth, model_kwargs=kw, rng_key=k_run)

        def body(st: Any, _: Any) -> Any:
            st = sample_kernel(st, model_kwargs=kw)
            return st, (st.z, st.diverging, st.num_steps)

        # one scan over warmup and draws (two scans would compile the NUTS kernel twice)
        state, (z, div, steps) = jax.lax.scan(body, state, None, length=warmup + draws)
        z = jax.tree.map(lambda v: v[warmup:], z)
        return (_constrained(info, kw, z, sites), div[warmup:].sum(), steps[warmup:].mean(), steps.sum(),
                state.adapt_state.step_size)

    keys = jax.random.split(jax.random.PRNGKey(seed), ys.shape[0])
    run, compile_s = _compiled_batches(one, keys, ys, batch)
    post_b: list[dict[str, np.ndarray]] = []
    divs, mean_steps, grads, step_sizes = [], [], [], []
    ess: dict[str, list[np.ndarray]] = {k: [] for k in sites}
    for draws_b, div, ms, ng, ss in run():
        # bulk ESS of each tracked site over the full chain (the minimum over its elements):
        # the L kept draws are nearly independent when ESS >= L (Talts et al.: thin to the ESS)
        for k, v in draws_b.items():
            flat = v.reshape(v.shape[0], v.shape[1], -1)  # (b, draws, elements)
            ess[k].append(np.array([effective_sample_size(flat[i][None]).min() for i in range(flat.shape[0])]))
        post_b.append({k: v[:, keep] for k, v in draws_b.items()})
        divs.append(div)
        mean_steps.append(ms)
        grads.append(ng)
        step_sizes.append(ss)
    post = {k: np.concatenate([b[k] for b in post_b]) for k in sites}
    div = np.concatenate(divs)
    ess_all = {k: np.concatenate(v) for k, v in ess.items()}
    low = np.stack([e < len(keep) for e in ess_all.values()]).any(0)
    diag = {
        "divergent_total": int(div.sum()),
        "sims_with_divergences": int((div > 0).sum()),
        "divergences_per_sim": div.tolist(),
        "mean_leapfrog_steps": float(np.mean(np.concatenate(mean_steps))),
        "gradient_evaluations_total": int(np.sum(np.concatenate(grads))),
        "median_step_size": float(np.median(np.concatenate(step_sizes))),
        "ess_median": {k: float(np.median(e)) for k, e in ess_all.items()},
        "sims_ess_below_L": {k: int((e < len(keep)).sum()) for k, e in ess_all.items()},
        "sims_any_ess_below_L": int(low.sum()),
        "draws": draws, "thin": thin, "L": len(keep),
        "xla_compile_seconds": compile_s,
    }
    return Posterior(post, diag, time.perf_counter() - t0)


def svi_posteriors(
    cm: Any, ys: np.ndarray, sites: list[str], *, steps: int = 20000, draws: int = 99, lr: float = 0.01,
    guide: str = "normal", batch: int = 100, seed: int = 0,
) -> Posterior:
    """SVI as hbm_formula runs it (its autoguide, Adam at ``lr`` through optax, the
    same initialisation), for a fixed number of ``steps`` as a jitted ``lax.scan``
    vmapped over data sets; then ``draws`` independent draws from each guide.

    hbm_formula stops SVI early when the mean loss of 500-step windows settles
    (relative change < 1e-4 for 3 windows) and runs at most 20000 steps; the
    fixed count here is that cap. The returned diagnostics say how many fits met
    hbm_formula's convergence rule by the end.
    """
    import jax
    import jax.numpy as jnp
    from numpyro.infer import SVI, Trace_ELBO

    from hbm_formula import infer

    t0 = time.perf_counter()
    fixed = _fixed_data(cm)
    info = _setup(cm, ys[0])
    cfg = infer.SVIConfig(guide=guide, lr=lr, steps=steps, progress=False)
    g = infer.make_guide(cm.model, cfg)
    svi = SVI(cm.model, g, infer._optimizer(cfg, steps, False), Trace_ELBO())
    # sets up the guide's prototype once, outside the vmap (init locations: the prior median)
    svi.init(jax.random.PRNGKey(0), **fixed, y=jnp.asarray(ys[0]))
    window = cfg.window

    def one(key: Any, y: Any) -> Any:
        kw = {**fixed, "y": y}
        k_init, k_draw = jax.random.split(key)
        state = svi.init(k_init, **kw)

        def step(st: Any, _: Any) -> Any:
            return svi.update(st, **kw)

        state, losses = jax.lax.scan(step, state, None, length=steps)
        params = svi.get_params(state)
        if guide == "normal":
            locs = {k: params[f"{k}_auto_loc"] for k in info.param_info.z}
            scales = {k: params[f"{k}_auto_scale"] for k in info.param_info.z}
            ks = jax.random.split(k_draw, len(locs))
            z = {k: locs[k] + scales[k] * jax.random.normal(kk, (draws,) + jnp.shape(locs[k]))
                 for kk, k in zip(ks, sorted(locs), strict=True)}
        else:  # a joint (low-rank or full-rank) normal guide on the flattened unconstrained vector
            base = g.get_transform(params)
            eps = jax.random.normal(k_draw, (draws, g.latent_dim))
            z = jax.vmap(g._unpack_latent)(jax.vmap(base)(eps))
        return _constrained(info, kw, z, sites), losses.reshape(-1, window).mean(-1)

    keys = jax.random.split(jax.random.PRNGKey(seed), ys.shape[0])
    run, compile_s = _compiled_batches(one, keys, ys, batch)
    post_b, wins = [], []
    for d, w in run():
        post_b.append(d)
        wins.append(w)
    post = {k: np.concatenate([b[k] for b in post_b]) for k in sites}
    w = np.concatenate(wins)  # (S, windows)
    stop = _hbm_stop_window(w, cfg.tol, cfg.patience)
    rel = np.abs(np.diff(w, axis=1)) / np.maximum(np.abs(w[:, 1:]), 1e-12)
    diag = {
        "steps": steps, "lr": lr, "guide": guide, "L": draws,
        # hbm_formula.infer.run_svi stops once the relative change of consecutive window
        # means stays below tol for `patience` windows; here: would it ever, and when
        "sims_settled_by_hbm_rule": int((stop > 0).sum()),
        "hbm_rule_stop_step_median": float(np.median(stop[stop > 0]) * window) if (stop > 0).any() else None,
        "nonfinite_loss_sims": int((~np.isfinite(w[:, -1])).sum()),
        "median_last_window_rel_change": float(np.median(rel[:, -1])),
        "median_window_rel_change_second_half": float(np.median(rel[:, rel.shape[1] // 2:])),
        "xla_compile_seconds": compile_s,
    }
    return Posterior(post, diag, time.perf_counter() - t0)


def _hbm_stop_window(w: np.ndarray, tol: float, patience: int) -> np.ndarray:
    """hbm_formula's SVI stopping rule applied to window means ``w`` (S, windows): the
    number of windows after which it stops (0: never), as ``run_svi`` counts them."""
    out = np.zeros(w.shape[0], int)
    for i, row in enumerate(w):
        calm, prev = 0, None
        for j, mean in enumerate(row):
            calm = calm + 1 if prev is not None and abs(prev - mean) / max(abs(mean), 1e-12) < tol else 0
            if calm >= patience:
                out[i] = j + 1
                break
            prev = mean
    return out


# ---------------------------------------------------------------- ranks and tests
def ranks_of(truth: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Rank of each true value among its L posterior draws: #(draws < truth), in 0..L."""
    return (draws < truth[:, None]).sum(1)


def rank_stats(ranks: np.ndarray, L: int, bins: int) -> dict[str, Any]:
    """Histogram of ranks 0..L in ``bins`` bins and the chi-square test of uniformity.
    (L + 1) should be a multiple of ``bins``, so that every bin holds as many ranks."""
    from scipy import stats

    if (L + 1) % bins:
        raise ValueError(f"L + 1 = {L + 1} ranks do not split evenly into {bins} bins")
    counts = np.bincount(ranks * bins // (L + 1), minlength=bins)
    chi2, p = stats.chisquare(counts)
    return {"counts": counts.tolist(), "chi2": float(chi2), "p": float(p)}


def _extract(arr: np.ndarray, idx: tuple[int, ...], lead: int) -> np.ndarray:
    return arr[(slice(None),) * lead + idx]


@dataclass
class ClassResult:
    name: str
    method: str
    sims: int
    L: int
    bins: int
    ranks: dict[str, np.ndarray]
    stats: dict[str, dict[str, Any]]
    diagnostics: dict[str, Any]
    seconds: dict[str, float]
    truth: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # site -> (S, ...)
    draws: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # site -> (S, L, ...)

    def rerank(self, perturb: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]) -> ClassResult:
        """The same simulations ranked against transformed posterior draws (to check
        that the test detects a wrong posterior without fitting again)."""
        cls = CLASSES[self.name]
        draws = perturb(self.draws)
        ranks, stats = _rank_all(cls, self.truth, draws, self.L, self.bins)
        return replace(self, ranks=ranks, stats=stats, draws=draws)

    @property
    def min_p(self) -> float:
        return min(s["p"] for s in self.stats.values())

    def to_json(self) -> dict[str, Any]:
        return {"class": self.name, "method": self.method, "sims": self.sims, "L": self.L, "bins": self.bins,
                "p": {k: v["p"] for k, v in self.stats.items()},
                "chi2": {k: v["chi2"] for k, v in self.stats.items()},
                "counts": {k: v["counts"] for k, v in self.stats.items()},
                "min_p": self.min_p, "n_params": len(self.stats),
                "diagnostics": self.diagnostics, "seconds": self.seconds}


def run_class(
    cls: SBCClass | str, method: str = "nuts", sims: int = 200, bins: int = 20, seed: int = 0,
    cm: Any = None, **kwargs: Any,
) -> ClassResult:
    """SBC of one class with one method: simulate ``sims`` data sets from the prior
    predictive (seed ``seed``), fit each, rank, test. ``cm``: the compiled class, if
    already at hand. ``kwargs`` go to ``nuts_posteriors`` / ``svi_posteriors``."""
    cls = CLASSES[cls] if isinstance(cls, str) else cls
    t0, c0 = time.perf_counter(), time.process_time()
    cm = cm if cm is not None else cls.compile()
    t1 = time.perf_counter()
    truth, ys = simulate(cm, sims, seed)
    sites = sorted({site for _, site, _ in cls.params})
    if method == "nuts":
        post = nuts_posteriors(cm, ys, sites, seed=seed + 1, **kwargs)
    elif method == "svi":
        post = svi_posteriors(cm, ys, sites, seed=seed + 1, **kwargs)
        if kwargs.get("guide", "normal") != "normal":
            method = f"svi-{kwargs['guide']}"
    else:
        raise ValueError(f"unknown method {method!r}")
    L = post.diagnostics["L"]
    ranks, stats = _rank_all(cls, truth, post.draws, L, bins)
    secs = {"compile": t1 - t0, "fit": post.seconds, "total": time.perf_counter() - t0,
            "process_cpu": time.process_time() - c0}
    return ClassResult(cls.name, method, sims, L, bins, ranks, stats, post.diagnostics, secs,
                       {k: truth[k] for k in sites}, post.draws)


def _rank_all(cls: SBCClass, truth: dict[str, np.ndarray], draws: dict[str, np.ndarray], L: int,
              bins: int) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
    ranks, stats = {}, {}
    for label, site, idx in cls.params:
        r = ranks_of(_extract(truth[site], idx, 1), _extract(draws[site], idx, 2))
        ranks[label] = r
        stats[label] = rank_stats(r, L, bins)
    return ranks, stats


def plot_ranks(res: ClassResult, path: str) -> None:
    """Rank histograms, one panel per parameter, with the 99% band of a bin's count
    under uniformity (binomial(S, 1/B) quantiles 0.005 and 0.995)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import stats

    labels = list(res.stats)
    ncol = min(4, len(labels))
    nrow = -(-len(labels) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.5 * nrow), squeeze=False)
    lo, hi = stats.binom.ppf([0.005, 0.995], res.sims, 1 / res.bins)
    for ax, label in zip(axes.flat, labels, strict=False):
        counts = res.stats[label]["counts"]
        ax.axhspan(lo, hi, color="0.85", zorder=0)
        ax.axhline(res.sims / res.bins, color="0.5", lw=0.8, zorder=1)
        ax.bar(np.arange(res.bins), counts, width=1.0, color="C0", edgecolor="white", zorder=2)
        ax.set_title(f"{label}\np = {res.stats[label]['p']:.3g}", fontsize=9)
        ax.set_xticks([0, res.bins - 1])
        ax.set_xticklabels(["0", str(res.L)])
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(labels):]:
        ax.axis("off")
    fig.suptitle(f"SBC {res.name}, {res.method}: {res.sims} simulations, L = {res.L}, {res.bins} bins "
                 "(grey: 99% band of uniform counts)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ---------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sims", type=int, default=200)
    ap.add_argument("--method", choices=["nuts", "svi", "both"], default="both")
    ap.add_argument("--classes", nargs="*", default=list(CLASSES), choices=list(CLASSES))
    ap.add_argument("--out", default=os.path.join(HERE, "results", "sbc"))
    ap.add_argument("--bins", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--draws", type=int, default=1000, help="NUTS draws per chain, before thinning")
    ap.add_argument("--thin", type=int, default=10)
    ap.add_argument("--svi-steps", type=int, default=20000)
    ap.add_argument("--svi-guide", choices=["normal", "lowrank", "fullrank"], default="normal",
                    help="normal (mean-field, hbm_formula's default); others are stored as svi-<guide>")
    ap.add_argument("--nuts-batch", type=int, default=50)
    ap.add_argument("--svi-batch", type=int, default=100)
    args = ap.parse_args(argv)

    import jax
    import numpyro

    os.makedirs(args.out, exist_ok=True)
    methods = ["nuts", "svi"] if args.method == "both" else [args.method]
    path = os.path.join(args.out, "sbc.json")
    report: dict[str, Any] = {}
    if os.path.exists(path):  # add to an earlier run's results (other classes/methods)
        with open(path) as f:
            report = json.load(f)
    report.setdefault("results", {})
    runs = report.setdefault("runs", [])
    if "meta" in report:  # older layout: one run
        runs.insert(0, report.pop("meta"))
    runs.append({"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "jax": jax.__version__,
                 "numpyro": numpyro.__version__, "cores": os.cpu_count(), "argv": sys.argv[1:],
                 "settings": vars(args)})
    for name in args.classes:
        cls = CLASSES[name]
        for method in methods:
            kw = ({"warmup": args.warmup, "draws": args.draws, "thin": args.thin, "batch": args.nuts_batch}
                  if method == "nuts" else {"steps": args.svi_steps, "batch": args.svi_batch, "guide": args.svi_guide})
            res = run_class(cls, method, sims=args.sims, bins=args.bins, seed=args.seed, **kw)
            method = res.method
            report["results"][f"{name}/{method}"] = res.to_json() | {"formula": cls.formula,
                                                                       "priors": cls.priors}
            plot_ranks(res, os.path.join(args.out, f"sbc_{name}_{method}.png"))
            d = res.diagnostics
            extra = (f"divergent {d['divergent_total']} in {d['sims_with_divergences']} sims, "
                     f"some ESS < L in {d['sims_any_ess_below_L']} sims" if method == "nuts"
                     else f"settled {d['sims_settled_by_hbm_rule']}/{res.sims}")
            print(f"{name:22s} {method:4s} min p {res.min_p:.3g} over {len(res.stats)} params; "
                  f"{res.seconds['total']:.0f} s; {extra}", flush=True)
            with open(path, "w") as f:
                json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
