"""The public entry points: ``compile`` (formula + data → model with code) and
``fit`` (compile, then inference, then InferenceData). The CLI and embedding
tools call these same functions."""

from __future__ import annotations

import builtins
import contextlib
import difflib
import linecache
import os
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from . import parameterize, progcache
from .design import Design, build_design, float32_risk, prior_range_risk
from .errors import HBMError
from .ir import ModelSpec
from .lower import Lowered, lower
from .parameterize import Centering
from .params import ParamEntry, param_table
from .parse import parse

PriorsArg = Mapping[str, str] | Iterable[tuple[str, str]] | None


@dataclass(frozen=True)
class CompiledModel:
    """A formula compiled against data, before any inference.

    ``model(**data)`` is a NumPyro model usable with any NumPyro/BlackJAX
    inference; ``code`` is its source (exactly what runs); ``coords``/``dims``
    name every dimension for ArviZ.
    """

    spec: ModelSpec
    design: Design
    params: list[ParamEntry]
    centering: Centering
    lowered: Lowered
    model: Callable[..., Any]
    #: seconds spent measuring the data for param="auto" (0 when nothing was measured)
    auto_seconds: float = 0.0
    #: the auto measurement itself (a ``pilot.Information``; None when nothing was measured): NUTS's start
    measurement: Any = field(default=None, repr=False, compare=False)

    @property
    def code(self) -> str:
        return self.lowered.code

    @property
    def data(self) -> dict[str, Any]:
        return self.lowered.data

    @property
    def coords(self) -> dict[str, list[str]]:
        return self.lowered.coords

    @property
    def dims(self) -> dict[str, list[str]]:
        return self.lowered.dims

    @property
    def summary_vars(self) -> list[str]:
        return self.lowered.summary_vars

    @property
    def obs_keys(self) -> list[str]:
        return self.lowered.obs_keys

    @property
    def formula(self) -> str:
        return str(self.spec)

    def parameterization(self) -> pd.DataFrame:
        """How each group term's effects are sampled, and (for auto) why."""
        rows = []
        for b in self.design.groups:
            c = self.centering.of(b)
            rows.append({"group": b.label, "term": str(b.term), "requested": b.term.param,
                         "chosen": Centering.chosen(c), "centered_levels": int(c.sum()), "levels": len(c),
                         "reason": self.centering.reason(b)})
        return pd.DataFrame(rows).set_index("group") if rows else pd.DataFrame()

    def priors_table(self) -> pd.DataFrame:
        """Every parameter with the prior it gets and where that came from."""
        from .priors import prior_code

        rows = []
        for e in self.params:
            numpyro_code = (prior_code(e.prior, e.support, e.name) if e.support != "corr"
                            else f"LKJCholesky(eta={e.prior.args[0]:g})")
            rows.append({"parameter": e.name, "class": e.cls, "prior": str(e.prior), "numpyro": numpyro_code,
                         "source": e.source})
        return pd.DataFrame(rows).set_index("parameter")

    def sample_prior(self, draws: int = 1000, seed: int = 0) -> dict[str, Any]:
        """Draws of every site, ``y`` included, from the prior (prior predictive)."""
        import jax
        import numpy as np
        from numpyro.infer import Predictive

        from . import infer

        if draws < 1:
            raise HBMError(f"draws must be at least 1, got {draws}")
        data = {k: v for k, v in self.data.items() if k != self.lowered.obs_site}
        pred = Predictive(self.model, num_samples=draws)
        out = infer.jit(lambda k, d: pred(k, **d))(jax.random.PRNGKey(seed), data)  # one program, not op by op
        return {k: np.asarray(v) for k, v in out.items()}

    def latent_sites(self) -> list[str]:
        """Names of the sampled (not observed) and deterministic sites."""
        import jax
        from numpyro import handlers

        names: list[str] = []

        def walk(data: dict[str, Any]) -> int:  # traced abstractly: nothing is evaluated or compiled
            tr = handlers.trace(handlers.seed(self.model, 0)).get_trace(**data)
            names.extend(k for k, v in tr.items()
                         if (v["type"] == "sample" and not v["is_observed"]) or v["type"] == "deterministic")
            return 0

        jax.eval_shape(walk, dict(self.data))
        return names

    def log_density(self, params: dict[str, Any]) -> float:
        """Joint log density at ``params`` (values in their own, constrained space)."""
        from numpyro.infer.util import log_density

        lp, _ = log_density(self.model, (), dict(self.data), params)
        return float(lp)


_model_counter = 0


def _exec_code(code: str) -> Callable[..., Any]:
    """Run the generated source in a fresh namespace and return ``model``.

    The source is built by ``lower`` from checked IR only; registering it with
    linecache makes tracebacks show the generated lines. The function carries a hash of its source
    (``progcache.KEY``): the source is exactly what runs (the data are arguments), so it names the
    model's traced programs kept on disk. A wrapped model (``with_obs_mask``) has none.
    """
    global _model_counter
    _model_counter += 1
    filename = f"<hbm_formula model {_model_counter}>"
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
    namespace: dict[str, Any] = {"__name__": "hbm_formula_generated", "__builtins__": builtins}
    exec(builtins.compile(code, filename, "exec"), namespace)  # noqa: S102 - generated, not user, code
    model = namespace["model"]
    setattr(model, progcache.KEY, progcache.source_key(code))
    return model


def _pilot(design: Design, spec: ModelSpec, table: list[ParamEntry], batch_size: int | None = None,
           measure_only: bool = False, population: bool = True) -> tuple[Centering, Any]:
    """The ``auto`` decision: each level's information, measured on the non-centered model, then the rule;
    and the measurement (None where it failed). A measurement that fails falls back to non-centered, with a
    warning that says so (``measure_only``: for NUTS's start alone, no warning, no decision)."""
    from . import infer, pilot

    infer.enable_compilation_cache()  # the measurement's two compiled passes are cached like the fit's programs
    lowered = lower(spec, design, table, parameterize.fixed(design))
    try:
        info = pilot.measure(_exec_code(lowered.code), lowered.data, lowered.obs_keys, design, table, batch_size,
                             obs=lowered.obs_site, decide=None if measure_only else lambda i: parameterize.choose(design, i),
                             population=population and batch_size is None)
    except Exception as exc:  # noqa: BLE001 - any failure here must not stop the fit: the safe choice remains
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if not measure_only:
            warnings.warn(f"param='auto' could not measure the data's information ({msg}); using non-centered",
                          UserWarning, stacklevel=4)
        return parameterize.fixed(design), None
    if measure_only:
        return parameterize.fixed(design), info
    choice = parameterize.choose(design, info)
    failed = [b.label for b in design.groups
              if choice.reasons.get(b.number, "").startswith("non-centered: the data's information could not")]
    if failed:
        warnings.warn(f"param='auto' could not measure the data's information for {', '.join(failed)} (a non-finite "
                      "curvature); using non-centered there", UserWarning, stacklevel=4)
    return choice, info


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
    return compile_spec(spec, data, na=na)


def compile_spec(spec: ModelSpec, data: Any, na: str = "drop", centering: Centering | None = None,
                 batch_size: int | None = None, population: bool = False) -> CompiledModel:
    """Design, parameters, parameterization and code of a parsed model (``centering`` given: no pilot;
    ``population``: the measurement also takes the population-level curvature NUTS's start reads)."""
    design = build_design(spec, data, na=na)
    spec = design.spec  # the parsed spec with what the data decide written in (dose-response bounds)
    table = param_table(spec, design)
    measured, info = 0.0, None
    if centering is None and parameterize.needs_decision(design):
        import jax  # noqa: F401 - the model's own imports (it runs on them): not the measurement's time
        import numpyro  # noqa: F401

        from . import infer

        t0 = time.perf_counter()
        with infer.compiling_for(design.n):
            centering, info = _pilot(design, spec, table, batch_size, population=population)
        measured = time.perf_counter() - t0
    elif centering is None:
        centering = parameterize.fixed(design)
    lowered = lower(spec, design, table, centering)
    return CompiledModel(spec, design, table, centering, lowered, _exec_code(lowered.code), measured, info)


@dataclass
class Fit:
    """A fitted model: the compiled model, the draws (``idata``) and diagnostics."""

    model: CompiledModel
    #: the draws: an InferenceData, or the arrays it is made of until ``idata`` is first read
    result: Any
    method: str
    warnings: list[str] = field(default_factory=list)
    raw: Any = None  # the sampler's or SVI's own result
    timings: dict[str, float] = field(default_factory=dict)
    #: what the fit chose for the user that they should know (e.g. double precision), not problems
    notes: list[str] = field(default_factory=list)

    @property
    def idata(self) -> Any:
        """The ``arviz.InferenceData`` (built on first use: importing ArviZ takes a second and a half)."""
        from .results import Draws

        if isinstance(self.result, Draws):
            self.result = self.result.to_idata()
        return self.result

    @idata.setter
    def idata(self, value: Any) -> None:
        self.result = value

    def summary(self, hdi_prob: float = 0.94) -> pd.DataFrame:
        """The table of the CLI; for a prior-only fit, of the prior draws."""
        from .results import summary

        return summary(self.result, self.model.summary_vars, hdi_prob)

    def prior_predictive(self, draws: int = 1000, seed: int = 0) -> Any:
        """Add ``prior`` and ``prior_predictive`` groups (draws from the prior) to ``idata``."""
        from .results import prior_idata

        self.idata.extend(prior_idata(self.model, draws, seed))
        return self.idata

    # ---- after the fit (postfit.py): names follow brms and bambi
    def predict(self, newdata: Any = None, kind: str = "response", re_formula: str | None = None,
                new_levels: str = "error", ndraws: int | None = None, seed: int = 0, summary: bool = False,
                prob: float = 0.95) -> Any:
        """Predictions for ``newdata`` (the training rows if None).

        ``kind``: ``"response"`` (draws of y), ``"epred"`` (E[y]), ``"linpred"`` (the linear predictor of
        the mean, on the link scale), a distributional parameter (``"sigma"``) or a non-linear parameter
        (``"e"``). ``re_formula``: None (all group terms), ``"~0"`` (none), or some (``"~(1 | county)"``).
        ``new_levels``: ``"error"``, ``"gaussian"``, ``"uncertainty"``, ``"old_levels"``, ``"population"``.
        Returns InferenceData with a ``predictions`` group, or with ``summary=True`` a DataFrame: the input
        columns, then mean, sd and the central ``prob`` interval per row."""
        from .postfit import predict

        return predict(self, newdata, kind, re_formula, new_levels, ndraws, seed, summary, prob)

    def posterior_predictive(self, seed: int = 0) -> Any:
        """Add ``idata.posterior_predictive``: one replicated data set per posterior draw."""
        from .postfit import posterior_predictive

        return posterior_predictive(self, seed)

    def loo(self, pointwise: bool = True) -> Any:
        """PSIS-LOO cross-validation (ArviZ), computing the log-likelihood first if it was not stored."""
        from .postfit import loo

        return loo(self, pointwise)

    def fixef(self, prob: float = 0.95) -> pd.DataFrame:
        from .postfit import fixef

        return fixef(self, prob)

    def ranef(self, group: str | None = None, prob: float = 0.95) -> pd.DataFrame:
        from .postfit import ranef

        return ranef(self, group, prob)

    def coef(self, group: str | None = None, prob: float = 0.95) -> pd.DataFrame:
        from .postfit import coef

        return coef(self, group, prob)

    def bayes_r2(self, ndraws: int | None = 1000, seed: int = 0, prob: float = 0.95) -> pd.DataFrame:
        from .postfit import bayes_r2

        return bayes_r2(self, ndraws, seed, prob)

    def hypothesis(self, text: str, prob: float = 0.95) -> pd.DataFrame:
        from .postfit import hypothesis

        return hypothesis(self, text, prob)

    def conditional_effects(self, effect: str, by: str | None = None, re_formula: str | None = "~0",
                            prob: float = 0.95, points: int = 100) -> Any:
        from .postfit import conditional_effects

        return conditional_effects(self, effect, by, re_formula, prob, points)

    def ed(self, p: float | list[float] = 50, type: str = "relative", by: str | None = None,  # noqa: A002
           population: bool = True, prob: float = 0.95) -> pd.DataFrame:
        """Effective doses of a dose-response model (drc ``ED``), per group level and for the population."""
        from .postfit import ed

        return ed(self, p, type, by, population, prob)

    def ed_ratio(self, p: float, a: str, b: str, by: str | None = None, prob: float = 0.95) -> pd.DataFrame:
        """Relative potency ED_p(a) / ED_p(b) (drc ``EDcomp``)."""
        from .postfit import ed_ratio

        return ed_ratio(self, p, a, b, by, prob)

    def plot(self, kind: str = "trace", var: str | None = None, path: str | None = None) -> Any:
        from .postfit import plot

        return plot(self, kind, var, path)

    def save(self, path: str) -> None:
        """Write the fit to one netCDF file that ``hf.load`` turns back into a working ``Fit``."""
        from .fitfile import save

        save(self, path)

    @property
    def code(self) -> str:
        return self.model.code


#: options of ``fit`` beyond the common ones, and the settings object each belongs to
_NUTS_OPTIONS = ("target_accept", "max_tree_depth", "chain_method")
_SVI_OPTIONS = ("guide", "rank", "steps", "lr", "optimizer", "schedule", "batch_size", "tol")
_RUN_OPTIONS = ("init", "shard_data", "x64", "log_lik")


def _local_sites(cm: CompiledModel) -> tuple[str, ...]:
    """The latent sites that are tables of group-level effects (judged as a whole, not one by one)."""
    labels = [b.label for b in cm.design.groups] + [j.label for j in cm.design.joints]
    return tuple(f"{kind}_{lab}" for lab in labels for kind in ("z", "rc", "coef", "r", "rot"))


def _units_off(svi_cfg: Any) -> str:
    """The sites whose data unit is more than 10x from 1 (see pilot.step_units), as text; empty when none."""
    import numpy as np

    far = {k: float(np.max(np.abs(np.log10(np.asarray(v))))) for k, v in (svi_cfg.units or {}).items()}
    return ", ".join(f"{k} ~1e{int(round(np.log10(np.max(np.asarray(svi_cfg.units[k])))))}" for k, d in far.items()
                     if d > 1.0)


#: rows of a group term's median level that a window of minibatch SVI steps should see at least (below, see
#: _sparse_minibatches)
SPARSE_ROWS = 32


#: a variational group SD this far below the auto measurement's moment estimate (in standard errors of its log,
#: and as a fraction) is reported
SD_OFF_SE, SD_OFF_FRACTION = 3.0, 0.15


def _sds_off(cm: CompiledModel, post: dict[str, Any]) -> str | None:
    """Variational approximations shrink group SDs (mean-field most) and can distort correlations where levels
    are neither clearly informative nor clearly not; the auto measurement's moment estimate of each SD (from
    the levels' own estimates and their noise, DerSimonian-Laird) is an independent check. A message when an
    SVI fit's SD is more than SD_OFF_SE standard errors and SD_OFF_FRACTION below it. Only below: the moment
    estimate at the quick mode runs low itself for non-Gaussian families (a logistic model: 0.52 against a
    true 0.6, which SVI found), so an SVI SD above it says nothing."""
    import numpy as np

    worst = None
    for blk in cm.design.groups:
        est = cm.centering.sd_estimates.get(blk.number)
        site = f"sd_{blk.label}"
        if est is None or site not in post:
            continue
        fitted = np.asarray(post[site], dtype=float).reshape(np.shape(post[site])[0], -1).mean(axis=0)
        sd, se = (np.asarray(v, dtype=float).ravel() for v in est)
        if fitted.size != sd.size:
            continue
        for c, name in enumerate(blk.coef_names if len(blk.coef_names) == sd.size else range(sd.size)):
            if not (np.isfinite(sd[c]) and sd[c] > 0 and np.isfinite(se[c]) and se[c] > 0 and fitted[c] > 0):
                continue
            z = np.log(fitted[c] / sd[c]) / se[c]
            off = fitted[c] / sd[c] - 1.0
            if z < -SD_OFF_SE and off < -SD_OFF_FRACTION and (worst is None or z < worst[0]):
                worst = (z, off, f"{site}[{name}]", fitted[c], sd[c])
    if worst is None:
        return None
    z, off, name, fitted_sd, moment = worst
    return (f"SVI's group SD {name} is {fitted_sd:.3g}, {-off:.0%} below the data's moment estimate {moment:.3g} "
            f"({-z:.1f} standard errors): the variational approximation is likely "
            "biased here (it shrinks group SDs and can distort their correlations); fix: NUTS (method='nuts'), "
            "or guide='lowrank'/'fullrank'")


def _sparse_minibatches(cm: CompiledModel, batch: int | None, window: int) -> str | None:
    """A warning when minibatches are so small beside the groups that a window of steps sees few rows of a
    typical level: SVI then settles with the group SDs biased low and its convergence test cannot tell (a
    review found, 1,000 groups x 4 rows, logistic, batch_size=64: SD 0.25 against NUTS's 0.49, 'converged';
    batch_size=256, 64 rows of the median level per window: 0.48-0.49)."""
    import numpy as np

    if batch is None:
        return None
    n = cm.design.n
    for blk in cm.design.groups:
        med = float(np.median(np.bincount(blk.g, minlength=len(blk.levels))))
        seen = window * batch * med / max(n, 1)
        if seen < SPARSE_ROWS:
            need = int(np.ceil(SPARSE_ROWS * n / (window * max(med, 1.0))))
            return (f"minibatches of {batch} rows show the median level of {blk.label} ({med:g} rows) only {seen:.3g} "
                    f"rows per {window} steps: SVI's group SDs may be biased low without its convergence test seeing "
                    f"it; fix: batch_size >= {need} (--batch-size), full-batch SVI (no batch_size), or NUTS")
    return None


def _start_values(cm: CompiledModel, positive: tuple[str, ...] = ()) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every latent site at its prior median (constrained): SVI starts there without sampling anything; and the
    unit of each site's steps (``pilot.step_units``; ``positive``: the sites on the log scale)."""

    from . import infer, pilot

    shapes = infer.latent_shapes(cm.model, dict(cm.data))
    start = {k: infer.on_device(v) for k, v in pilot.prior_point(shapes, cm.params, cm.design).items()}
    return start, pilot.step_units(shapes, cm.params, positive)


def _options(method: str, options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Split ``fit``'s extra keyword options into NUTS, SVI and run settings; unknown names are an error."""
    known = (*_NUTS_OPTIONS, *_SVI_OPTIONS, *_RUN_OPTIONS)
    options = {k: v for k, v in options.items() if v is not None}  # None: the default
    for k in options:
        if k not in known:
            close = difflib.get_close_matches(k, known, n=2)
            hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
            raise HBMError(f"fit() has no option '{k}'{hint}; options: {', '.join(known)}")
    nuts = {k: v for k, v in options.items() if k in _NUTS_OPTIONS}
    svi = {k: v for k, v in options.items() if k in _SVI_OPTIONS}
    run = {k: v for k, v in options.items() if k in _RUN_OPTIONS}
    if method == "nuts" and run.get("init") is None and "batch_size" in svi:
        raise HBMError("batch_size (minibatches) applies to SVI: use method='svi' (--method svi), or drop it for NUTS")
    return nuts, svi, run


#: warmup shorter than this, with most transitions divergent, is named as their likely cause: the step size was not
#: tuned (warmup 0-2 on a small Gaussian model: every transition diverged, the chains never moved; 10: none)
SHORT_WARMUP = 50


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
    na: str = "drop",
    method: str = "nuts",
    chains: int = 4,
    warmup: int = 1000,
    draws: int = 1000,
    seed: int = 0,
    progress: bool = True,
    prior_only: bool = False,
    **options: Any,
) -> Fit:
    """Compile ``formula`` against ``data`` and run inference.

    ``method="nuts"`` (default) samples ``chains`` chains of ``warmup`` +
    ``draws`` iterations with NUTS; ``method="svi"`` fits an autoguide by
    stochastic variational inference and returns ``draws`` draws from it.
    Further options (``**options``):

    - NUTS: ``target_accept`` (0.8), ``max_tree_depth`` (10), ``chain_method``
      ("auto": one chain per device when there are enough, else vectorized),
      ``init``: where NUTS starts and its first mass matrix, whose square root also scales the coordinates
      NUTS runs on: by default the ``param="auto"`` measurement's quick mode where there is one (with group
      terms; measured for the start alone without group terms), else (a fixed ``param``) NumPyro's
      uniform(-2, 2) with scale 1; ``"pilot"`` (that measurement, made for the start whatever ``param``),
      ``"uniform"``, or ``"svi"`` (an SVI fit's draws and variances);
    - SVI: ``guide`` ("normal", "lowrank", "fullrank"), ``rank``, ``steps``,
      ``lr``, ``optimizer``, ``schedule``, ``batch_size`` (minibatches), ``tol``;
    - ``shard_data=True``: split the observations over all JAX devices (across
      processes after ``hf.distributed.initialize``);
    - ``log_lik``: store the pointwise log-likelihood (``None``, the default: unless it would
      exceed 2e8 numbers, e.g. 400K rows x 4000 draws, with a note; ``fit.loo()`` computes it then);
    - ``x64``: compute in double precision (``None``, the default: when the data need it,
      e.g. counts near 1e7, with a note in ``fit.notes``; ``True``/``False`` to choose).

    Returns a ``Fit`` whose ``idata`` is an ``arviz.InferenceData`` with
    posterior, sample_stats (NUTS), observed_data and log_likelihood groups.
    With ``prior_only=True`` nothing is fitted: ``idata`` holds ``chains * draws``
    draws from the prior (``prior`` and ``prior_predictive`` groups).
    """
    from . import infer

    if method not in ("nuts", "svi"):
        raise HBMError(f"unknown method '{method}': use 'nuts' or 'svi'")
    nuts_opts, svi_opts, run = _options(method, options)
    init, shard_data = run.get("init"), bool(run.get("shard_data", False))
    if init not in (None, "svi", "pilot", "uniform"):
        shown = repr(init) if len(repr(init)) <= 40 else repr(init)[:37] + "..."
        raise HBMError(f"unknown init {shown}: use init='pilot', 'svi' or 'uniform' (or leave it out)")
    if init in ("svi", "pilot", "uniform") and method != "nuts":
        raise HBMError(f"init='{init}' is where NUTS starts; it goes with method='nuts'")
    if init is not None and prior_only:
        raise HBMError(f"init='{init}' is where NUTS starts; a prior-only fit draws from the prior directly, without "
                       "NUTS: leave init out")
    if shard_data and svi_opts.get("batch_size") is not None:
        raise HBMError("shard_data splits the full data over devices; minibatches (batch_size) are small already: use one")
    cfg = infer.NUTSConfig(chains=chains, warmup=warmup, draws=draws, seed=seed, progress=progress, **nuts_opts)
    if shard_data and cfg.chain_method == "parallel":
        raise HBMError("with shard_data every device holds part of the data, so chains cannot also take a device each")
    cfg.check()
    svi_cfg = infer.SVIConfig(seed=seed, draws=draws, progress=progress, **svi_opts)
    if init == "svi":
        svi_cfg = replace(svi_cfg, guide="normal")
    svi_cfg.check()
    # an SVI fit (without NUTS after it) as a process's first fit keeps one device: its programs run on one
    infer.set_host_devices(method="svi" if method == "svi" else "nuts")
    t0 = time.perf_counter()
    spec = parse(formula, family=family, link=link, priors=priors, dpars=dpars, nl=nl, param=param)
    # auto's measurement streams the rows batch_size at a time when minibatches are asked for
    cm = compile_spec(spec, data, na=na, batch_size=svi_cfg.batch_size if method == "svi" else None,
                      population=method == "nuts" and init in (None, "pilot") and not prior_only)
    t1 = time.perf_counter()
    log_sites = tuple(f"sd_{b.label}" for b in cm.design.groups) + tuple(e.name for e in cm.params
                                                                         if e.support == "positive")
    if method == "svi" or init == "svi":  # (a trace of the model: not for NUTS alone)
        start, units = _start_values(cm, log_sites)
        svi_cfg = replace(svi_cfg, local_sites=_local_sites(cm), init_values=start, log_sites=log_sites,
                          units=units)
    notes: list[str] = []
    x64 = run.get("x64")
    risk = float32_risk(cm.design) or prior_range_risk(cm.params)
    if x64 is None and risk is not None:
        x64 = True
        notes.append(f"computed in double precision (float64): {risk}; x64=False forces float32")
    with contextlib.ExitStack() as stack:
        stack.enter_context(infer.compiling_for(cm.design.n))
        if x64:
            import jax

            stack.enter_context(jax.enable_x64(True))
        out = _infer(cm, method, cfg, svi_cfg, init, shard_data, prior_only, chains, draws, seed, run.get("log_lik"))
    # what the data showed (separation, dropped rows): warned while the design was built, kept with the fit
    out.warnings[:0] = [m for m in cm.design.warnings if m not in out.warnings]
    out.timings["compile"] = t1 - t0  # parse, design, the auto measurement, code
    out.timings["auto"] = cm.auto_seconds
    out.notes.extend(notes)
    infer.release_compiled()
    return out


def _infer(
    cm: CompiledModel, method: str, cfg: Any, svi_cfg: Any, init: str | None, shard_data: bool, prior_only: bool,
    chains: int, draws: int, seed: int, log_lik_setting: bool | None = None,
) -> Fit:
    """Inference on a compiled model, then InferenceData and diagnostics."""
    import numpy as np

    from . import infer, results

    t1 = time.perf_counter()
    obs = cm.lowered.obs_site
    total_draws = draws if method == "svi" else chains * draws
    log_lik, skipped = results.want_log_lik(log_lik_setting, cm.design.n, total_draws)
    notes = [skipped] if skipped else []
    attrs = {"formula": cm.formula, "family": str(cm.spec.family), "hbm_formula_method": method}
    run_model, run_data = cm.model, cm.data
    obs_keys = cm.obs_keys
    multi_process = False
    if shard_data:
        import jax

        multi_process = jax.process_count() > 1
        if multi_process and init == "svi":
            raise HBMError("init='svi' is not available across processes; run NUTS without it")
        run_model, run_data = infer.with_obs_mask(cm.model), infer.shard_data(cm.data, cm.obs_keys)
        obs_keys = [*cm.obs_keys, "obs_mask"]
        if cfg.chain_method == "auto":
            cfg = replace(cfg, chain_method="vectorized" if chains > 1 else "sequential")
    if prior_only:
        idata = results.prior_idata(cm, chains * draws, seed)
        return Fit(cm, idata, "prior", [], None, {"sample": time.perf_counter() - t1})
    if method == "svi":
        res = infer.run_svi(run_model, run_data, obs_keys, svi_cfg, obs)
        t2 = time.perf_counter()
        post = infer.guide_draws(cm.model, res, cm.data, draws, seed, cm.latent_sites())
        attrs |= {"svi_steps": str(res.steps), "svi_converged": str(res.converged),
                  "svi_final_loss": f"{float(res.losses[-min(len(res.losses), svi_cfg.window):].mean()):.6g}"}
        idata = results.idata_from_draws(cm.model, post, cm.data, cm.coords, cm.dims, attrs, log_lik, obs)
        msgs = [] if res.converged else [infer.svi_warning(res, svi_cfg.window)]
        sparse = _sparse_minibatches(cm, res.batch_size, svi_cfg.window)
        if sparse:
            msgs.append(sparse)
        shrunk = _sds_off(cm, post)
        if shrunk:
            msgs.append(shrunk)
        far = _units_off(svi_cfg) if svi_cfg.guide != "normal" else ""
        if far:
            msgs.append(f"guide='{svi_cfg.guide}' takes Adam's steps in the data's raw units, and these data are far "
                        f"from unit scale ({far}): it can stop short of the answer and still read as "
                        "converged; fix: guide='normal' (steps in the data's units), rescale the data, or NUTS")
        for m in msgs:
            warnings.warn(m, UserWarning, stacklevel=3)
        return Fit(cm, idata, "svi", msgs, res, {"fit": t2 - t1, "results": time.perf_counter() - t2}, notes)
    init_params, inv_mass = None, None
    t_svi = time.perf_counter()
    if init == "svi":
        svi_res = infer.run_svi(run_model, run_data, obs_keys, svi_cfg, obs)
        init_params, inv_mass = infer.nuts_init_from_guide(svi_res, chains, seed)
    elif init in (None, "pilot") and not multi_process:
        # (the default: from the auto measurement where param="auto" made one; init="pilot" measures for it, and
        # so does a model without group terms: its population coefficients' scales, which NUTS runs on)
        from . import start

        info = cm.measurement
        if (init == "pilot" or not cm.design.groups) and (info is None or not info.population_curvature):
            info = _pilot(cm.design, cm.spec, cm.params, measure_only=True)[1]
        try:
            if info is not None:
                init_params, inv_mass = start.pilot_start(cm, info, chains, seed)
        except Exception as exc:  # noqa: BLE001 - a start is an optimisation: NumPyro's own remains
            init_params, inv_mass = None, None
            notes.append(f"NUTS started from NumPyro's uniform start: the measurement's start failed "
                         f"({(str(exc).splitlines() or [type(exc).__name__])[0]})")
        if init_params is not None and chains == 1:  # (run_nuts takes one chain's start without a chain axis)
            init_params = {k: v[0] for k, v in init_params.items()}
    t2 = time.perf_counter()
    t_start = 0.0 if init == "svi" else t2 - t_svi
    if shard_data and multi_process:
        # NumPyro's MCMC embeds its data in the compiled program, which cannot hold other
        # processes' shards: use the functional NUTS that takes the data as arguments
        local = dict(cm.data) | {"obs_mask": None}
        samples, extra = infer.run_nuts_sharded(run_model, run_data, local, cfg)
        mcmc = None
        t3 = time.perf_counter()
        idata = results.idata_from_chains(samples, extra, cm.model, cm.data, cm.coords, cm.dims, attrs, log_lik, obs)
    else:
        try:
            mcmc = infer.run_nuts(run_model, run_data, cfg, init_params=init_params, inverse_mass_matrix=inv_mass)
        except RuntimeError as exc:
            if "valid initial parameters" not in str(exc):
                raise
            from .diagnose import gradient_report

            cause = gradient_report(cm)
            raise HBMError(f"NUTS found no starting point: {cause or 'the log density is not finite anywhere it tried'}"
                           ) from None
        t3 = time.perf_counter()
        idata = results.idata_from_chains(mcmc.samples, mcmc.extra, cm.model, cm.data, cm.coords, cm.dims, attrs,
                                          log_lik, obs)
    t4 = time.perf_counter()
    if cfg.chain_method == "auto" and chains > 1 and not shard_data:
        import jax

        if jax.local_device_count() == 1 and jax.default_backend() == "cpu" and (os.cpu_count() or 1) > 1:
            notes.append(f"the {chains} chains ran vectorized on one CPU device (JAX started with one in this process "
                         "before its first NUTS fit: an SVI fit, hf.compile's auto measurement or other JAX work came "
                         "first): hf.set_host_devices(4) before anything else, or HBM_FORMULA_DEVICES=4, runs them in "
                         "parallel")
    msgs = results.diagnostics(idata, cm.summary_vars)
    draws = idata if isinstance(idata, results.Draws) else results.Draws.from_idata(idata)
    div = draws.groups.get("sample_stats", {}).get("diverging")
    if div is not None and float(np.mean(div)) > 0.25:  # most of the run is unreliable: look for the cause
        from .diagnose import gradient_report

        cause = gradient_report(cm)
        if cause:
            msgs.insert(0, f"{float(np.mean(div)):.0%} of transitions diverged because {cause}")
        elif cfg.warmup < SHORT_WARMUP:
            msgs = _short_warmup(msgs, float(np.mean(div)), cfg.warmup)
    elif div is not None and float(np.mean(div)) > 0 and cfg.warmup < SHORT_WARMUP:
        # fewer diverge from the measurement's start, but the cause is the same
        msgs = _short_warmup(msgs, float(np.mean(div)), cfg.warmup)
    deep = _deep_trees(draws, cfg.max_tree_depth)
    if deep:
        msgs.append(deep)
    for m in msgs:
        warnings.warn(m, UserWarning, stacklevel=3)
    return Fit(cm, idata, "nuts", msgs, mcmc, {"svi": t2 - t1 - t_start, "start": t_start, "sample": t3 - t2,
                                                "results": t4 - t3}, notes)


#: the share of draws at NUTS's maximum tree depth above which a fit says so
DEEP_SHARE = 0.1


def _deep_trees(draws: Any, max_tree_depth: int) -> str | None:
    """A warning when many draws took the most leapfrog steps NUTS allows (its trajectory was cut, not ended
    by a U-turn): the draws are valid, the fit slow and its ESS per draw low. The usual cause is parameters on
    very different scales that the adapted diagonal mass matrix did not even out, or a posterior correlation
    it cannot follow."""
    import numpy as np

    steps = draws.groups.get("sample_stats", {}).get("n_steps")
    if steps is None or not np.size(steps):
        return None
    most = 2 ** int(max_tree_depth) - 1
    share = float(np.mean(np.asarray(steps) >= most))
    if share <= DEEP_SHARE:
        return None
    return (f"{share:.0%} of draws reached NUTS's maximum tree depth ({max_tree_depth}: {most:,} leapfrog steps "
            "per draw): valid but slow, with few effective draws per step; usually parameters on very different "
            "scales (a predictor in large units, a response far from unit scale) or strongly correlated ones: "
            "rescale (scale(x), or other units), compute in double precision (x64=True: a posterior SD below "
            "float32's resolution of the value), or raise max_tree_depth")


def _short_warmup(msgs: list[str], share: float, warmup: int) -> list[str]:
    """The divergence warning with its cause, a warmup too short to tune the step size, in place of the general
    advice (target_accept or the parameterization, which is not it)."""
    from .results import DIVERGED

    shown = f"{share:.0%}" if share >= 0.01 else f"{share:.1%}"
    return [f"{shown} of transitions diverged: warmup={warmup} is too short to tune NUTS's step size (it samples "
            f"with a step size from its first iterations); use warmup of at least 100 (the default is 1000)"] + [
        m for m in msgs if DIVERGED not in m]


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
