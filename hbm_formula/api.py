"""The public entry points: ``compile`` (formula + data → model with code) and
``fit`` (compile, then inference, then InferenceData). The CLI and embedding
tools call these same functions."""

from __future__ import annotations

import builtins
import linecache
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from .design import Design, GroupBlock, build_design
from .errors import HBMError
from .ir import ModelSpec
from .lower import Lowered, lower
from .params import ParamEntry, param_table
from .parse import parse

PriorsArg = Mapping[str, str] | Iterable[tuple[str, str]] | None


@dataclass
class CompiledModel:
    """A formula compiled against data, before any inference.

    ``model(**data)`` is a NumPyro model usable with any NumPyro/BlackJAX
    inference; ``code`` is its source (exactly what runs); ``coords``/``dims``
    name every dimension for ArviZ.
    """

    spec: ModelSpec
    design: Design
    params: list[ParamEntry]
    code: str
    model: Callable[..., Any]
    data: dict[str, Any]
    coords: dict[str, list[str]]
    dims: dict[str, list[str]]
    summary_vars: list[str]
    obs_keys: list[str] = field(default_factory=list)

    @property
    def formula(self) -> str:
        return str(self.spec)

    def parameterization(self) -> pd.DataFrame:
        """How each group term's effects are sampled, and (for auto) why."""
        rows = []
        for b in self.design.groups:
            c = b.centered_levels()
            n_c = int(c.sum())
            chosen = "centered" if n_c == len(c) else "noncentered" if n_c == 0 else "partially centered"
            rows.append({"group": b.label, "term": str(b.term), "requested": b.term.param, "chosen": chosen,
                         "centered_levels": n_c, "levels": len(c), "reason": b.auto_reason})
        return pd.DataFrame(rows).set_index("group") if rows else pd.DataFrame()

    def priors_table(self) -> pd.DataFrame:
        """Every parameter with the prior it gets and where that came from."""
        from .priors import prior_code

        rows = []
        for e in self.params:
            rows.append(
                {
                    "parameter": e.name,
                    "class": e.cls,
                    "prior": str(e.prior),
                    "numpyro": prior_code(e.prior, e.support, e.name) if e.support != "corr" else f"LKJCholesky(eta={e.prior.args[0]:g})",
                    "source": e.source,
                }
            )
        return pd.DataFrame(rows).set_index("parameter")

    def sample_prior(self, draws: int = 1000, seed: int = 0) -> dict[str, Any]:
        """Draws of every site, ``y`` included, from the prior (prior predictive)."""
        import jax
        import numpy as np
        from numpyro.infer import Predictive

        if draws < 1:
            raise HBMError(f"draws must be at least 1, got {draws}")
        data = {k: v for k, v in self.data.items() if k != "y"}
        out = Predictive(self.model, num_samples=draws)(jax.random.PRNGKey(seed), **data)
        return {k: np.asarray(v) for k, v in out.items()}

    def latent_sites(self) -> list[str]:
        """Names of the sampled (not observed) and deterministic sites."""
        import jax
        from numpyro import handlers

        tr = handlers.trace(handlers.seed(self.model, jax.random.PRNGKey(0))).get_trace(**self.data)
        return [k for k, v in tr.items() if (v["type"] == "sample" and not v["is_observed"]) or v["type"] == "deterministic"]

    def log_density(self, params: dict[str, Any]) -> float:
        """Joint log density at ``params`` (unconstrained=False: values in their own space)."""
        from numpyro.infer.util import log_density

        lp, _ = log_density(self.model, (), dict(self.data), params)
        return float(lp)


_model_counter = 0


def _exec_code(code: str) -> Callable[..., Any]:
    """Run the generated source in a fresh namespace and return ``model``.

    The source is built by ``lower`` from checked IR only; registering it with
    linecache makes tracebacks show the generated lines.
    """
    global _model_counter
    _model_counter += 1
    filename = f"<hbm_formula model {_model_counter}>"
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
    namespace: dict[str, Any] = {"__name__": "hbm_formula_generated", "__builtins__": builtins}
    exec(builtins.compile(code, filename, "exec"), namespace)  # noqa: S102 - generated, not user, code
    return namespace["model"]


#: a level is centered when its posterior variance of z (at a low plausible SD) is below this, i.e. when its
#: data outweigh the group-level prior 4:1 (n·sd²/sigma² > 4 for a Gaussian). The Gibbs-sampler analysis
#: puts the break-even at 0.5; for HMC the cost is asymmetric — a centered level whose SD can shrink is a
#: funnel (divergences, bias), a non-centered informative level only a correlation — so the bar is higher.
#: Chosen on benchmarks/bench_param.py (radon, sleepstudy, mixed, 4PL, InstEval).
AUTO_THRESHOLD = 0.2
#: partial centering only when at most this fraction of levels sits between AUTO_THRESHOLD and 0.5
AUTO_AMBIGUOUS = 0.05
#: ... evaluated at a low plausible group SD: sd · exp(-this many standard errors of log sd)
AUTO_SD_QUANTILE_Z = 2.0


def choose_parameterization(design: Design, lowered: Lowered, seed: int = 0) -> None:
    """Decide, per level of every ``param="auto"`` group term, centered or not.

    The rule (Papaspiliopoulos, Roberts & Sköld 2007): centering pays where a
    level's data are informative relative to the group SD, non-centering where
    they are not. With z the non-centered offset, a level's posterior variance
    Var(z | data) = 1 / (1 + I·sd²) (I its data precision), so it measures that
    ratio in one number for any family. A short mean-field SVI pilot of the
    non-centered model (``lowered``, where auto terms are non-centered) gives
    Var(z | data) for every level and coefficient at the pilot's SD, hence
    I = (1/Var - 1) / sd². A centered level turns into a funnel wherever the
    posterior lets its SD approach zero, so the rule asks for informative data
    at a low plausible SD, not only at the typical one: sd_low = sd·exp(-2·se),
    se the standard error of log(sd) — the larger of the pilot's (mean-field,
    too small) and the normal-normal model's Fisher information, 2·Σ_j κ_j² with
    κ_j = 1 - Var(z_j). Levels with Var(z) < 0.2 at sd_low for every
    coefficient (I·sd_low² > 4) are centered, the others stay non-centered, so
    one term can be partially centered (Gorinova, Moore & Hoffman 2020 learn
    such a split by SVI too). A weakly identified SD (a wide pilot posterior
    reaching toward zero) keeps its term non-centered. Partial centering is
    used only when the levels fall into clearly separate regimes (at most 5%
    of them between 0.2 and 0.5); when they spread over that middle ground, as
    crossed or nested factors with continuously varying level sizes do, the
    mixed geometry sampled worse than either fixed choice (InstEval), so the
    factor gets one choice by its median level (centered if Var(z) < 0.5).
    """
    from . import infer

    model = _exec_code(lowered.code)
    cfg = infer.SVIConfig(steps=4000, lr=0.02, window=250, tol=1e-3, seed=seed, progress=False, init_scale=0.5)
    res = infer.run_svi(model, lowered.data, lowered.obs_keys, cfg)
    import numpy as np

    def sd_scale(members: list[GroupBlock]) -> tuple[np.ndarray, np.ndarray]:
        """Pilot SD of each coefficient and the mean-field scale of its log."""

        def get(m: GroupBlock, what: str) -> np.ndarray:
            if f"sd_{m.label}_auto_{what}" in res.params:  # one vector site (or one site per coefficient)
                return np.atleast_1d(np.asarray(res.params[f"sd_{m.label}_auto_{what}"]))
            return np.array([float(res.params[f"sd_{m.label}__{c}_auto_{what}"]) for c in m.coef_names])

        loc = np.concatenate([get(m, "loc") for m in members])
        return np.exp(loc), np.concatenate([get(m, "scale") for m in members])

    for blk in design.groups:
        if blk.term.param != "auto":
            continue
        members = blk.joint.members if blk.joint is not None else [blk]
        site = f"z_{blk.joint.label if blk.joint is not None else blk.label}"
        var_z = np.clip(np.square(np.asarray(res.params[f"{site}_auto_scale"])), 1e-12, 1.0)  # (levels, coefficients)
        sd_mid, mf_scale = sd_scale(members)
        # uncertainty of log(sd): the normal-normal model's Fisher information 2·sum_j kappa_j^2 with
        # kappa_j = 1 - Var(z_j) (a level's shrinkage weight); mean-field SVI understates it
        kappa = 1.0 - var_z
        se_log_sd = np.maximum(mf_scale, 1.0 / np.sqrt(2.0 * np.square(kappa).sum(axis=0) + 1e-12))
        sd_low = sd_mid * np.exp(-AUTO_SD_QUANTILE_Z * se_log_sd)
        info = (1.0 / var_z - 1.0) / np.square(sd_mid)  # data precision per level and coefficient
        var_low = (1.0 / (1.0 + info * np.square(sd_low))).max(axis=-1)
        ambiguous = float(np.mean((var_low >= AUTO_THRESHOLD) & (var_low < 0.5)))
        med = float(np.median(var_low))
        at = f"at a low plausible group SD ({', '.join(f'{v:.3g}' for v in sd_low)})"
        if ambiguous <= AUTO_AMBIGUOUS:
            # two clear regimes (or one): informative levels centered, the rest non-centered
            blk.centered = var_low < AUTO_THRESHOLD
            n_c, J = int(blk.centered.sum()), len(blk.levels)
            rule = (f"posterior variance of z < {AUTO_THRESHOLD}, i.e. data precision x sd^2 > "
                    f"{1 / AUTO_THRESHOLD - 1:g}, in a pilot SVI fit {at}")
            blk.auto_reason = (
                f"{n_c} of {J} levels centered: their data pin the effects down ({rule})"
                + (f"; the others are far from it (median variance {med:.2f})" if n_c < J else "") if n_c else
                f"no level centered: none has data that pin its effects down ({rule}; median variance {med:.2f})"
            )
        else:
            # levels spread over the middle ground: one choice for the factor, by its typical level
            blk.centered = np.full(len(blk.levels), med < 0.5)
            blk.auto_reason = (
                f"{'all levels centered' if med < 0.5 else 'all levels non-centered'}: {ambiguous:.0%} of the levels "
                f"are neither clearly informative nor clearly not {at}, so the factor gets one choice, by its "
                f"median level (posterior variance of z {med:.2f} {'<' if med < 0.5 else '>='} 0.5)"
            )


def compile(  # noqa: A001 - the natural name of the stage, as in the issue's API
    formula: str | ModelSpec,
    data: Any,
    *,
    family: str | None = None,
    link: str | None = None,
    priors: PriorsArg = None,
    dpars: Mapping[str, str] | None = None,
    nl: Mapping[str, str] | None = None,
    param: str | Mapping[str, str] | None = None,
    na: str = "drop",
) -> CompiledModel:
    """Parse, check and lower ``formula`` against ``data`` into a runnable model."""
    spec = parse(formula, family=family, link=link, priors=priors, dpars=dpars, nl=nl, param=param)
    design = build_design(spec, data, na=na)
    table = param_table(spec, design)
    lowered: Lowered = lower(spec, design, table)
    if any(b.term.param == "auto" for b in design.groups):
        choose_parameterization(design, lowered, seed=0)
        lowered = lower(spec, design, table)
    model = _exec_code(lowered.code)
    return CompiledModel(
        spec, design, table, lowered.code, model, lowered.data, lowered.coords, lowered.dims, lowered.summary_vars,
        lowered.obs_keys,
    )


@dataclass
class Fit:
    """A fitted model: the compiled model, the InferenceData and diagnostics."""

    model: CompiledModel
    idata: Any
    method: str
    warnings: list[str] = field(default_factory=list)
    raw: Any = None  # the NumPyro MCMC object
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self, hdi_prob: float = 0.94) -> pd.DataFrame:
        """The table of the CLI; for a prior-only fit, of the prior draws."""
        from .results import summary

        return summary(self.idata, self.model.summary_vars, hdi_prob)

    def prior_predictive(self, draws: int = 1000, seed: int = 0) -> Any:
        """Add ``prior`` and ``prior_predictive`` groups (draws from the prior) to ``idata``."""
        from .results import prior_idata

        self.idata.extend(prior_idata(self.model, draws, seed))
        return self.idata

    def save(self, path: str) -> None:
        from .results import save_netcdf

        save_netcdf(self.idata, path)

    @property
    def code(self) -> str:
        return self.model.code


def fit(
    formula: str | ModelSpec,
    data: Any,
    *,
    family: str | None = None,
    link: str | None = None,
    priors: PriorsArg = None,
    dpars: Mapping[str, str] | None = None,
    nl: Mapping[str, str] | None = None,
    param: str | Mapping[str, str] | None = None,
    method: str = "nuts",
    chains: int = 4,
    warmup: int = 1000,
    draws: int = 1000,
    seed: int = 0,
    target_accept: float = 0.8,
    max_tree_depth: int = 10,
    chain_method: str = "auto",
    init: str | None = None,
    guide: str = "normal",
    rank: int | None = None,
    steps: int | None = None,
    lr: float = 0.01,
    optimizer: str = "adam",
    schedule: str = "auto",
    batch_size: int | None = None,
    tol: float = 1e-4,
    progress: bool = True,
    na: str = "drop",
    prior_only: bool = False,
    shard_data: bool = False,
) -> Fit:
    """Compile ``formula`` against ``data`` and run inference.

    ``method="nuts"`` (default) samples with NUTS; ``init="svi"`` starts it from
    an SVI fit. ``method="svi"`` fits an autoguide (``guide`` normal, lowrank or
    fullrank) by stochastic variational inference, on minibatches of
    ``batch_size`` rows if given, and returns ``draws`` draws from it.

    Returns a ``Fit`` whose ``idata`` is an ``arviz.InferenceData`` with
    posterior, sample_stats (NUTS), observed_data and log_likelihood groups.
    With ``prior_only=True`` nothing is fitted: ``idata`` holds ``chains * draws``
    draws from the prior (``prior`` and ``prior_predictive`` groups).
    ``shard_data=True`` splits the observations over all JAX devices (across
    processes after ``hf.distributed.initialize``): each log-density gradient
    then runs on every device, chains are vectorized.
    """
    import time

    from . import infer, results

    if method not in ("nuts", "svi"):
        raise HBMError(f"unknown method '{method}': use 'nuts' or 'svi'")
    if init not in (None, "svi"):
        raise HBMError(f"unknown init '{init}': use init='svi' (or leave it out)")
    if init == "svi" and method != "nuts":
        raise HBMError("init='svi' starts NUTS from an SVI fit; it goes with method='nuts'")
    if shard_data and batch_size is not None:
        raise HBMError("shard_data splits the full data over devices; minibatches (batch_size) are small already: use one")
    if shard_data and chain_method == "parallel":
        raise HBMError("with shard_data every device holds part of the data, so chains cannot also take a device each")
    cfg = infer.NUTSConfig(chains, warmup, draws, seed, target_accept, max_tree_depth, chain_method, progress)
    cfg.check()
    svi_cfg = infer.SVIConfig(guide if init is None else "normal", rank, steps, lr, optimizer, schedule, batch_size,
                              tol, seed=seed, draws=draws, progress=progress)
    svi_cfg.check()
    infer.set_host_devices()
    t0 = time.perf_counter()
    cm = compile(formula, data, family=family, link=link, priors=priors, dpars=dpars, nl=nl, param=param, na=na)
    t1 = time.perf_counter()
    attrs = {"formula": cm.formula, "family": str(cm.spec.family), "hbm_formula_method": method}
    run_model, run_data = cm.model, cm.data
    multi_process = False
    if shard_data:
        import jax

        multi_process = jax.process_count() > 1
        if multi_process and init == "svi":
            raise HBMError("init='svi' is not available across processes; run NUTS without it")
        run_model, run_data = infer.with_obs_mask(cm.model), infer.shard_data(cm.data, cm.obs_keys)
        if chain_method == "auto":
            cfg = replace(cfg, chain_method="vectorized" if chains > 1 else "sequential")
    if prior_only:
        idata = results.prior_idata(cm, chains * draws, seed)
        return Fit(cm, idata, "prior", [], None, {"compile": t1 - t0, "sample": time.perf_counter() - t1})
    if method == "svi":
        res = infer.run_svi(run_model, run_data, [*cm.obs_keys, "obs_mask"] if shard_data else cm.obs_keys, svi_cfg)
        t2 = time.perf_counter()
        sites = cm.latent_sites()
        post = infer.guide_draws(cm.model, res, cm.data, draws, seed, sites)
        attrs |= {"svi_steps": str(res.steps), "svi_converged": str(res.converged),
                  "svi_final_loss": f"{float(res.losses[-min(len(res.losses), svi_cfg.window):].mean()):.6g}"}
        idata = results.idata_from_draws(cm.model, post, cm.data, cm.coords, cm.dims, attrs)
        msgs = [] if res.converged else [
            f"SVI stopped at the step cap ({res.steps} steps) before the ELBO settled; raise steps= or lr="
        ]
        for m in msgs:
            warnings.warn(m, UserWarning, stacklevel=2)
        return Fit(cm, idata, "svi", msgs, res, {"compile": t1 - t0, "fit": t2 - t1, "results": time.perf_counter() - t2})
    init_params, inv_mass, svi_res = None, None, None
    if init == "svi":
        svi_res = infer.run_svi(run_model, run_data, [*cm.obs_keys, "obs_mask"] if shard_data else cm.obs_keys, svi_cfg)
        init_params, inv_mass = infer.nuts_init_from_guide(svi_res, chains, seed)
    t2 = time.perf_counter()
    if shard_data and multi_process:
        # NumPyro's MCMC embeds its data in the compiled program, which cannot hold other
        # processes' shards: use the functional NUTS that takes the data as arguments
        local = dict(cm.data) | {"obs_mask": None}
        samples, extra = infer.run_nuts_sharded(run_model, run_data, local, cfg)
        mcmc = None
        t3 = time.perf_counter()
        idata = results.idata_from_chains(samples, extra, cm.model, cm.data, cm.coords, cm.dims, attrs)
    else:
        mcmc = infer.run_nuts(run_model, run_data, cfg, init_params=init_params, inverse_mass_matrix=inv_mass)
        t3 = time.perf_counter()
        idata = results.idata_from_mcmc(mcmc, cm.model, cm.data, cm.coords, cm.dims, attrs)
    t4 = time.perf_counter()
    msgs = results.diagnostics(idata, cm.summary_vars)
    for m in msgs:
        warnings.warn(m, UserWarning, stacklevel=2)
    return Fit(cm, idata, "nuts", msgs, mcmc,
               {"compile": t1 - t0, "svi": t2 - t1, "sample": t3 - t2, "results": t4 - t3})


def default_priors(
    formula: str | ModelSpec,
    data: Any,
    *,
    family: str | None = None,
    link: str | None = None,
    priors: PriorsArg = None,
    **kwargs: Any,
) -> pd.DataFrame:
    """Every parameter of the model with its prior (defaults unless overridden)."""
    return compile(formula, data, family=family, link=link, priors=priors, **kwargs).priors_table()
