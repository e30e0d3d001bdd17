"""After the fit: predictions, posterior predictive checks, LOO, effects, hypotheses, pictures.

Names follow brms/bambi so users feel at home: ``predict`` (``posterior_predict`` /
``posterior_epred`` / ``posterior_linpred`` by ``kind``), ``posterior_predictive``,
``loo``/``compare`` (ArviZ's PSIS-LOO), ``fixef``/``ranef``/``coef``, ``bayes_r2``
(Gelman, Goodrich, Gabry & Vehtari 2019), ``hypothesis`` (brms: coefficients by
name, parsed by the package's own grammar, never by Python) and
``conditional_effects``. Tables are tidy DataFrames with columns ``mean``, ``sd``,
``q2.5``, ``q97.5`` (the central 95% interval unless ``prob`` says otherwise).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from .errors import HBMError, probability
from .predict import predict_draws, summarize


def _q(prob: float) -> tuple[str, str]:
    probability("prob", prob)
    lo, hi = (1 - prob) / 2, (1 + prob) / 2
    return f"q{100 * lo:g}", f"q{100 * hi:g}"


def _table(draws: dict[str, np.ndarray], prob: float = 0.95) -> pd.DataFrame:
    """mean, sd, central interval of named 1-D draws."""
    a, b = _q(prob)
    rows = []
    for name, d in draws.items():
        lo, hi = np.quantile(d, [(1 - prob) / 2, (1 + prob) / 2])
        rows.append({"parameter": name, "mean": float(d.mean()), "sd": float(d.std(ddof=1)), a: lo, b: hi})
    return pd.DataFrame(rows).set_index("parameter")


def _flat(idata: Any, name: str) -> np.ndarray:
    v = np.asarray(idata.posterior[name].values)
    return v.reshape((v.shape[0] * v.shape[1],) + v.shape[2:])


# ---------------------------------------------------------------- predictions
def predict(fit: Any, newdata: Any = None, kind: str = "response", re_formula: str | None = None,
            new_levels: str = "error", ndraws: int | None = None, seed: int = 0, summary: bool = False,
            prob: float = 0.95) -> Any:
    """Draws (an InferenceData ``predictions`` group) or, with ``summary=True``, a DataFrame with one row per
    input row: its columns, then mean, sd and the central ``prob`` interval."""
    probability("prob", prob)
    cm = fit.model
    if "posterior" not in fit.idata.groups():
        raise HBMError("this fit holds prior draws only (prior_only=True): predictions need a posterior; "
                       "fit.prior_predictive() has the prior predictive draws of y")
    if summary:
        table, rows, _ = predict_draws(cm, fit.idata, newdata, kind, re_formula, new_levels, ndraws, seed,
                                       reduce=lambda block: _summary_block(block, prob))
        frame = (rows.frame if rows is not None else cm.design.frame).reset_index(drop=True)
        source = newdata.reset_index(drop=True) if isinstance(newdata, pd.DataFrame) else frame
        return pd.concat([source, table.reset_index(drop=True)], axis=1)
    block, rows, _ = predict_draws(cm, fit.idata, newdata, kind, re_formula, new_levels, ndraws, seed)
    post = fit.idata.posterior
    shape = (post.sizes["chain"], post.sizes["draw"]) if ndraws is None else (1, block.shape[0])
    name = cm.lowered.obs_site if kind == "response" else kind
    arr = block.reshape(shape + block.shape[1:])
    dims = ["obs"] if newdata is None else ["pred_obs"]
    if arr.ndim > 3:
        dims.append("category")
    from .results import _arviz, _quiet_arviz

    with _quiet_arviz():
        return _arviz().from_dict(predictions={name: arr}, dims={name: dims})


def _summary_block(block: np.ndarray, prob: float) -> pd.DataFrame:
    if block.ndim == 3:  # category probabilities: one column per category
        return pd.DataFrame(block.mean(axis=0), columns=[f"P(category {k + 1})" for k in range(block.shape[2])])
    return summarize(block, prob)


def posterior_predictive(fit: Any, seed: int = 0) -> Any:
    """Add ``posterior_predictive`` to the InferenceData: one replicated data set per posterior draw,
    with the name, dims and coords of ``observed_data`` (what ``az.plot_ppc`` needs)."""
    cm = fit.model
    obs = cm.lowered.obs_site
    block, _, _ = predict_draws(cm, fit.idata, None, "response", seed=seed)
    post = fit.idata.posterior
    arr = block.reshape((post.sizes["chain"], post.sizes["draw"]) + block.shape[1:])
    from .results import _arviz, _quiet_arviz

    with _quiet_arviz():
        pp = _arviz().from_dict(posterior_predictive={obs: arr}, dims={obs: ["obs"]})
    if "posterior_predictive" in fit.idata.groups():
        fit.idata.posterior_predictive = pp.posterior_predictive
    else:
        fit.idata.extend(pp)
    return fit.idata


# ---------------------------------------------------------------- LOO
def ensure_log_likelihood(fit: Any) -> None:
    """Compute the pointwise log-likelihood (in chunks of draws, float32) if the fit did not store it."""
    if "log_likelihood" in fit.idata.groups():
        return
    from .results import _arviz, _quiet_arviz, model_shapes, pointwise_log_likelihood

    cm = fit.model
    post = fit.idata.posterior
    C, D = post.sizes["chain"], post.sizes["draw"]
    samples = model_shapes({str(k): _flat(fit.idata, str(k)) for k in post.data_vars}, cm.lowered.squeezed)
    ll = pointwise_log_likelihood(cm.model, samples, cm.data)
    with _quiet_arviz():
        extra = _arviz().from_dict(log_likelihood={k: v.reshape((C, D) + v.shape[1:]) for k, v in ll.items()},
                                   dims={k: ["obs"] for k in ll})
    fit.idata.extend(extra)


def loo(fit: Any, pointwise: bool = True) -> Any:
    """PSIS-LOO (ArviZ); Pareto k above 0.7 is reported in ``fit.warnings`` too."""
    ensure_log_likelihood(fit)
    from .results import _arviz

    az = _arviz()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        out = az.loo(fit.idata, pointwise=pointwise)
    if pointwise and hasattr(out, "pareto_k"):
        good_k = float(getattr(out, "good_k", 0.7))  # ArviZ: min(1 - 1/log10(S), 0.7) for S draws
        bad = int((np.asarray(out.pareto_k) > good_k).sum())
        if bad:
            msg = (f"PSIS-LOO: {bad} observations have Pareto k > {good_k:.2f}: their LOO estimates are unreliable "
                   "(influential points, or too few draws); consider more draws, K-fold cross-validation or a "
                   "more robust model")
            warnings.warn(msg, UserWarning, stacklevel=3)
            if msg not in fit.warnings:
                fit.warnings.append(msg)
    return out


def compare(fits: dict[str, Any], ic: str = "loo") -> pd.DataFrame:
    """Rank models by expected log predictive density (ArviZ ``compare``: stacking weights)."""
    if not isinstance(fits, dict):
        if isinstance(fits, (list, tuple)):
            fits = {f"model_{i + 1}": f for i, f in enumerate(fits)}  # as az.compare: names by position
        else:
            raise HBMError(f"compare takes a dict of named fits, e.g. hf.compare({{'m1': fit1, 'm2': fit2}}), "
                           f"got {type(fits).__name__}")
    if len(fits) < 2:
        raise HBMError("compare needs at least two fits, e.g. hf.compare({'m1': fit1, 'm2': fit2})")
    from .results import _arviz

    n_obs = {name: f.model.design.n for name, f in fits.items()}
    if len(set(n_obs.values())) > 1:
        raise HBMError(f"the fits have different numbers of observations ({n_obs}): LOO compares models of the same data")
    for f in fits.values():
        ensure_log_likelihood(f)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return _arviz().compare({name: f.idata for name, f in fits.items()}, ic=ic)


# ---------------------------------------------------------------- coefficients
def _pop_name(pname: str, coef: str) -> str:
    return coef if pname == "mu" else f"{pname}_{coef}"


def fixef(fit: Any, prob: float = 0.95) -> pd.DataFrame:
    """Population-level coefficients, named as brms names them (``Intercept``, ``floor``, ``sigma_x``)."""
    cm, idata = fit.model, fit.idata
    draws: dict[str, np.ndarray] = {}
    for pname, p in cm.design.predictors.items():
        sfx = "" if pname == "mu" else f"_{pname}"
        if f"Intercept{sfx}" in idata.posterior and (p.intercept or pname == "mu"):
            icept = _flat(idata, f"Intercept{sfx}")
            if icept.ndim == 1:
                draws[_pop_name(pname, "Intercept")] = icept
            else:  # ordinal thresholds
                for k, lab in enumerate(cm.coords.get("Intercept_dim", [])):
                    draws[f"Intercept[{lab}]"] = icept[:, k]
        if p.coef_names:
            b = _flat(idata, f"b{sfx}")
            for k, c in enumerate(p.coef_names):
                draws[_pop_name(pname, c)] = b[:, k]
    return _table(draws, prob)


def _blocks(cm: Any, group: str | None) -> list[Any]:
    blocks = [b for b in cm.design.groups if group is None or b.term.group_label == group]
    if group is not None and not blocks:
        known = sorted({b.term.group_label for b in cm.design.groups})
        raise HBMError(f"the model has no grouping factor '{group}'; its grouping factors: {', '.join(known) or 'none'}")
    return blocks


def ranef(fit: Any, group: str | None = None, prob: float = 0.95) -> pd.DataFrame:
    """Group-level effects (deviations from the population), one row per level and coefficient."""
    cm, idata = fit.model, fit.idata
    a, b_ = _q(prob)
    rows = []
    for blk in _blocks(cm, group):
        r = _flat(idata, f"r_{blk.label}").reshape(-1, len(blk.levels), blk.n_coef)
        lo, hi = np.quantile(r, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
        for j, lv in enumerate(blk.levels):
            for k, c in enumerate(blk.coef_names):
                rows.append({"group": blk.term.group_label, "level": lv, "coef": _pop_name(blk.predictor, c),
                             "mean": float(r[:, j, k].mean()), "sd": float(r[:, j, k].std(ddof=1)),
                             a: lo[j, k], b_: hi[j, k]})
    return pd.DataFrame(rows).set_index(["group", "level", "coef"])


def coef(fit: Any, group: str | None = None, prob: float = 0.95) -> pd.DataFrame:
    """Per level: population coefficient plus the level's deviation, draw by draw (brms ``coef``)."""
    cm, idata = fit.model, fit.idata
    a, b_ = _q(prob)
    rows = []
    for blk in _blocks(cm, group):
        p = cm.design.predictors[blk.predictor]
        sfx = "" if blk.predictor == "mu" else f"_{blk.predictor}"
        r = _flat(idata, f"r_{blk.label}").reshape(-1, len(blk.levels), blk.n_coef)
        for k, c in enumerate(blk.coef_names):
            if c == "Intercept" and f"Intercept{sfx}" in idata.posterior:
                pop = _flat(idata, f"Intercept{sfx}")
            elif c in p.coef_names:
                pop = _flat(idata, f"b{sfx}")[:, list(p.coef_names).index(c)]
            else:
                pop = np.zeros(r.shape[0])
            total = r[:, :, k] + pop[:, None]
            lo, hi = np.quantile(total, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
            for j, lv in enumerate(blk.levels):
                rows.append({"group": blk.term.group_label, "level": lv, "coef": _pop_name(blk.predictor, c),
                             "mean": float(total[:, j].mean()), "sd": float(total[:, j].std(ddof=1)),
                             a: lo[j], b_: hi[j]})
    return pd.DataFrame(rows).set_index(["group", "level", "coef"]).sort_index(level=["group", "level"], sort_remaining=False)


def bayes_r2(fit: Any, ndraws: int | None = 1000, seed: int = 0, prob: float = 0.95) -> pd.DataFrame:
    """Bayesian R² (Gelman et al. 2019, as brms ``bayes_R2``): per draw,
    var(E[y]) / (var(E[y]) + var(y - E[y]))."""
    cm = fit.model
    from .families import family_spec

    if family_spec(cm.spec.family.name).kind != "standard":
        raise HBMError(f"bayes_r2 is defined for a single numeric response, not for the {cm.spec.family.name} family")
    ep, _, _ = predict_draws(cm, fit.idata, None, "epred", ndraws=ndraws, seed=seed)
    y = np.asarray(cm.design.y, dtype=float)
    var_fit = ep.var(axis=1, ddof=1)
    var_res = (y[None, :] - ep).var(axis=1, ddof=1)
    return _table({"R2": var_fit / (var_fit + var_res)}, prob)


# ---------------------------------------------------------------- hypotheses
def _scalar_draws(fit: Any) -> dict[str, np.ndarray]:
    """Every scalar quantity a hypothesis may name: brms-style coefficient names (``floor``, ``sigma_x``),
    parameter names (``b_floor``, ``Intercept``, ``sd_county__floor``, ``cor_county__Intercept__floor``,
    ``sigma``) and every other scalar of the posterior."""
    cm, idata = fit.model, fit.idata
    out: dict[str, np.ndarray] = {}
    for pname, p in cm.design.predictors.items():
        sfx = "" if pname == "mu" else f"_{pname}"
        if f"Intercept{sfx}" in idata.posterior and _flat(idata, f"Intercept{sfx}").ndim == 1:
            out[f"Intercept{sfx}"] = out[_pop_name(pname, "Intercept")] = _flat(idata, f"Intercept{sfx}")
        if p.coef_names:
            b = _flat(idata, f"b{sfx}")
            for k, c in enumerate(p.coef_names):
                out[f"b{sfx}_{c}"] = out[_pop_name(pname, c)] = b[:, k]
    for blk in cm.design.groups:
        sd = _flat(idata, f"sd_{blk.label}").reshape(-1, blk.n_coef)
        for k, c in enumerate(blk.coef_names):
            out[f"sd_{blk.label}__{c}"] = sd[:, k]
        if f"cor_{blk.label}" in idata.posterior:
            cor = _flat(idata, f"cor_{blk.label}")
            for k, pair in enumerate(cm.coords[f"{blk.label}__cor"]):
                out[f"cor_{blk.label}__{pair.replace(',', '__')}"] = cor[:, k]
    for name in idata.posterior.data_vars:
        v = _flat(idata, str(name))
        if v.ndim == 1:
            out.setdefault(str(name), v)
    return out


def hypothesis(fit: Any, text: str, prob: float = 0.95) -> pd.DataFrame:
    """brms-style hypothesis on coefficients by name: ``"floor < 0"``, ``"b_x - b_z > 0.5"``, ``"sigma = 1"``.

    The text is parsed by the package's grammar into an expression over parameter names and evaluated
    on the draws by the package's own interpreter (never by Python). Returns the estimate of
    left - right, its sd and central interval, the posterior probability of the hypothesis and its
    evidence ratio (P / (1 - P)) for ``<``/``>``; for ``=`` or a bare expression only the estimate."""
    from .functions import NL_FUNCTIONS
    from .ir import BinOp, Call, Neg, Num, Var
    from .parse import parse_hypothesis

    left, op, right = parse_hypothesis(text)
    names = _scalar_draws(fit)

    def ev(e: Any) -> np.ndarray:
        if isinstance(e, Num):
            return np.asarray(e.value, dtype=float)
        if isinstance(e, Var):
            if e.name not in names:
                import difflib

                close = difflib.get_close_matches(e.name, list(names), n=3, cutoff=0.5)
                hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
                raise HBMError(f"hypothesis names '{e.name}', which is not a parameter of this model{hint}; "
                               f"names: {', '.join(list(names)[:20])}")
            return names[e.name]
        if isinstance(e, Neg):
            return -ev(e.operand)
        if isinstance(e, BinOp):
            a, b = ev(e.left), ev(e.right)
            with np.errstate(all="ignore"):
                return {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "**": np.power}[e.op](a, b)
        if isinstance(e, Call):
            return np.asarray(NL_FUNCTIONS[e.fn].numpy(*[ev(a) for a in e.args]), dtype=float)  # type: ignore[misc]
        raise HBMError(f"cannot evaluate {e} in a hypothesis")  # pragma: no cover

    value = ev(left) - (ev(right) if right is not None else 0.0)
    value = np.broadcast_to(value, (len(next(iter(names.values()))),))
    a, b_ = _q(prob)
    lo, hi = np.quantile(value, [(1 - prob) / 2, (1 + prob) / 2])
    row: dict[str, Any] = {"hypothesis": text.strip(), "estimate": float(value.mean()), "sd": float(value.std(ddof=1)),
                           a: lo, b_: hi, "post_prob": np.nan, "evidence_ratio": np.nan}
    if op in ("<", ">"):
        p = float(np.mean(value < 0) if op == "<" else np.mean(value > 0))
        row["post_prob"] = p
        row["evidence_ratio"] = p / (1 - p) if p < 1 else np.inf
    return pd.DataFrame([row]).set_index("hypothesis")


# ---------------------------------------------------------------- conditional effects
class Effects(pd.DataFrame):
    """A tidy table of conditional effects with a ``.plot()`` drawing the curve and its band."""

    _metadata = ["effect", "by", "response", "log_x"]

    @property
    def _constructor(self) -> type:
        return Effects

    def plot(self, ax: Any = None) -> Any:  # type: ignore[override]
        """The expected response across the effect (others at reference values) with its credible band;
        one line per level of ``by``. Returns the matplotlib figure."""
        import matplotlib

        if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg") and not _has_display():
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6, 4))
        lo_col = next(c for c in self.columns if c.startswith("q") and c != "q50")
        hi_col = [c for c in self.columns if c.startswith("q")][-1]
        groups = [(None, self)] if self.by is None else list(self.groupby(self.by, sort=False))
        numeric = pd.api.types.is_numeric_dtype(self[self.effect])
        for label, part in groups:
            x = part[self.effect]
            if numeric:
                line = ax.plot(x, part["mean"], label=None if label is None else f"{self.by} = {label}")[0]
                ax.fill_between(x, part[lo_col], part[hi_col], alpha=0.25, color=line.get_color())
            else:
                ax.errorbar(x.astype(str), part["mean"], yerr=[part["mean"] - part[lo_col], part[hi_col] - part["mean"]],
                            fmt="o", capsize=4, label=None if label is None else f"{self.by} = {label}")
        if getattr(self, "log_x", None):  # a dose axis: log scale, with the untreated controls at 0 kept in view
            ax.set_xscale("symlog", linthresh=self.log_x)
        ax.set_xlabel(self.effect)
        ax.set_ylabel(f"E[{self.response}]")
        if self.by is not None:
            ax.legend(frameon=False)
        fig.tight_layout()
        return fig


def _has_display() -> bool:
    import os

    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def conditional_effects(fit: Any, effect: str, by: str | None = None, re_formula: str | None = "~0",
                        prob: float = 0.95, points: int = 100, ndraws: int | None = 1000, seed: int = 0) -> Effects:
    """The expected response across one predictor, the others at reference values (numeric: their mean;
    categorical: the first level), optionally one curve per level of a categorical ``by`` (brms
    ``conditional_effects``). Group effects are left out by default (``re_formula="~0"``); binomial
    models predict the success probability (trials = 1)."""
    from .design import categorical_uses, response_only_columns

    cm = fit.model
    frame = cm.design.frame
    response_only = response_only_columns(cm.spec)
    predictors = [c for c in frame.columns if c not in response_only]
    for v in (effect, by):
        if v is not None and v not in predictors:
            what = "part of the response, not a predictor" if v in response_only else "not a column the model uses"
            raise HBMError(f"'{v}' is {what}; the predictors: {', '.join(map(str, predictors)) or 'none'}")
    categorical = categorical_uses(cm.spec)
    base: dict[str, Any] = {}
    for col in frame.columns:
        s = frame[col]
        if pd.api.types.is_numeric_dtype(s) and s.dtype != bool and col not in categorical:
            base[col] = float(s.mean())
        else:
            base[col] = _sorted_values(s.unique().tolist())[0] if not isinstance(s.dtype, pd.CategoricalDtype) else s.cat.categories[0]
    _binomial_trials_one(cm, base)
    s = frame[effect]
    log_x = _dose_axis(cm, effect, s)
    if log_x:  # the dose of a dose-response curve: 0, then log-spaced positive doses
        grid = np.concatenate([[0.0] if (s == 0).any() else [], np.geomspace(log_x, float(s.max()), points)])
    elif pd.api.types.is_numeric_dtype(s) and s.dtype != bool and s.nunique() > 2 and effect not in categorical:
        grid = np.linspace(float(s.min()), float(s.max()), points)
    else:
        grid = np.array(_sorted_values(s.unique().tolist()), dtype=object)
    levels = [None] if by is None else sorted(frame[by].unique().tolist(), key=str)
    rows = []
    for lv in levels:
        for x in grid:
            r = dict(base)
            r[effect] = x
            if by is not None:
                r[by] = lv
            rows.append(r)
    newdata = pd.DataFrame(rows)
    for col in frame.columns:  # keep the training dtypes (a grouping column read as text stays text)
        if frame[col].dtype == object:
            newdata[col] = newdata[col].astype(object)
    table = predict(fit, newdata, kind="epred", re_formula=re_formula, new_levels="population", ndraws=ndraws,
                    seed=seed, summary=True, prob=prob)
    keep = [effect] + ([by] if by is not None else [])
    out = Effects(table[keep + [c for c in table.columns if c in ("mean", "sd") or c.startswith("q")]])
    out.effect, out.by, out.response, out.log_x = effect, by, cm.design.response_label, log_x
    return out


def _sorted_values(values: list[Any]) -> list[Any]:
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=str)


def _dose_axis(cm: Any, effect: str, s: pd.Series) -> float | None:
    """The smallest positive dose when ``effect`` is the dose of a dose-response call, else None."""
    from .functions import DOSE_MODELS
    from .ir import Var, expr_calls

    if not cm.spec.formula.is_nonlinear:
        return None
    for c in expr_calls(cm.spec.formula.rhs):
        if c.fn in DOSE_MODELS and c.args[0] == Var(effect) and (s > 0).any():
            return float(s[s > 0].min())
    return None


def _binomial_trials_one(cm: Any, base: dict[str, Any]) -> None:
    """Binomial models: the reference row has one trial (the prediction is a probability)."""
    from .design import data_vars
    from .ir import Call

    resp = cm.spec.formula.response
    tr = resp.addterm("trials")
    if tr is not None:
        for v in data_vars(tr.args[0]):
            base[v.name] = 1
    elif isinstance(resp.expr, Call) and resp.expr.fn == "cbind":
        for i, a in enumerate(resp.expr.args):
            for v in data_vars(a):
                base[v.name] = 1 if i == 0 else 0


# ---------------------------------------------------------------- pictures
PLOTS = ("trace", "forest", "ppc", "effects")


def plot(fit: Any, kind: str, var: str | None = None, path: str | None = None) -> Any:
    """A picture of the fit (ArviZ/matplotlib, no display needed): ``trace`` (population and SD
    parameters), ``forest`` (a grouping factor's effects per level), ``ppc`` (posterior predictive
    check), ``effects`` (conditional effects of ``var``). Saved as PNG when ``path`` is given."""
    import matplotlib

    if not _has_display():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .results import _arviz

    az = _arviz()
    cm = fit.model
    if kind not in PLOTS:
        raise HBMError(f"unknown plot '{kind}'; plots: {', '.join(PLOTS)}")
    if kind == "trace":
        names = [v for v in cm.summary_vars if v in fit.idata.posterior][:8]
        axes = az.plot_trace(fit.idata, var_names=names, compact=True)
        fig = np.ravel(axes)[0].figure
    elif kind == "forest":
        blocks = cm.design.groups
        if not blocks:
            raise HBMError("a forest plot shows group effects; this model has no group terms")
        label = var or blocks[0].term.group_label
        chosen = [b for b in blocks if b.term.group_label == label or b.label == label]
        if not chosen:
            raise HBMError(f"no grouping factor '{label}'; grouping factors: "
                           f"{', '.join(sorted({b.term.group_label for b in blocks}))}")
        axes = az.plot_forest(fit.idata, var_names=[f"r_{b.label}" for b in chosen], combined=True, hdi_prob=0.95,
                              figsize=(6, max(3, 0.22 * len(chosen[0].levels) * chosen[0].n_coef)))
        fig = np.ravel(axes)[0].figure
        np.ravel(axes)[0].set_xlabel(f"group effect (r_{chosen[0].label})")
    elif kind == "ppc":
        if "posterior_predictive" not in fit.idata.groups():
            posterior_predictive(fit)
        ax = az.plot_ppc(fit.idata, num_pp_samples=min(100, fit.idata.posterior.sizes["draw"]))
        fig = np.ravel(ax)[0].figure
        np.ravel(ax)[0].set_xlabel(cm.design.response_label)
    else:
        if var is None:
            pop = [str(v.name) for v in (cm.spec.formula.rhs.terms[0].factors if hasattr(cm.spec.formula.rhs, "terms")
                                          and cm.spec.formula.rhs.terms else [])
                   if hasattr(v, "name")]
            if not pop:
                raise HBMError("effects needs a predictor: plot(kind='effects', var='x') (--var x)")
            var = pop[0]
        fig = conditional_effects(fit, var).plot()
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
        plt.close(fig)
    return fig


# ---------------------------------------------------------------- effective doses (dose-response)
def _dose_call(cm: Any) -> Any:
    from .functions import DOSE_MODELS
    from .ir import expr_calls

    if not cm.spec.formula.is_nonlinear:
        raise HBMError("effective doses need a dose-response model: resp ~ LL4(dose, b, c, d, e) (or LL3, LL5, W1_4, "
                       "W2_4, LN4, BC5)")
    calls = [c for c in expr_calls(cm.spec.formula.rhs) if c.fn in DOSE_MODELS]
    if not calls:
        raise HBMError("effective doses need a dose-response function (LL4, LL3, LL5, W1_4, W2_4, LN4, BC5) in the "
                       "formula; for other curves, predict(kind=...) gives the parameters")
    return calls[0]


def _units(fit: Any, by: str | None) -> tuple[str, list[Any], pd.DataFrame, str | None]:
    """Rows at which to evaluate the curve's parameters: one per level of ``by`` (default: the grouping
    factor of the dose-response parameters, if any), else one population row."""
    cm = fit.model
    frame = cm.design.frame
    nl = {n for n, _ in cm.spec.nlpars}
    factors = [b.term.group_label for b in cm.design.groups if b.predictor in nl]
    if by is None and factors:
        by = factors[0]
    if by is not None and by not in frame.columns and by not in factors:
        raise HBMError(f"by='{by}' is not a column of the model; its columns: {', '.join(map(str, frame.columns))}")
    base = {}
    for col in frame.columns:
        s = frame[col]
        base[col] = s.iloc[0] if not (pd.api.types.is_numeric_dtype(s) and s.dtype != bool) else float(s.median())
    if by is None:
        return "population", ["population"], pd.DataFrame([base]), "~0"
    cols = by.split(":")
    units = frame[cols].drop_duplicates().reset_index(drop=True)
    rows = pd.DataFrame([base] * len(units))
    for c in cols:
        rows[c] = units[c].to_numpy()
    labels = [":".join(str(v) for v in r) for r in units.itertuples(index=False)]
    return by, labels, rows, None


def ed(fit: Any, p: float | list[float] = 50, type: str = "relative", by: str | None = None,  # noqa: A002 - drc's name
       population: bool = True, prob: float = 0.95, store: bool = True) -> pd.DataFrame:
    """Effective doses (drc ``ED``) with posterior intervals: for each level of ``by`` (default: the grouping
    factor of the curve's parameters, or the population), and at the population level (group effects zero,
    as medrc). ``type="relative"``: the dose at which the mean has moved p% of the way from its dose-0 level
    towards its high-dose level; ``"absolute"``: the dose at which the mean equals the response level ``p``.
    The draws are added to ``idata.posterior`` as ``ED<p>`` (dims: the units)."""
    from .doseresponse import MODELS, effective_dose
    from .ir import Num, Var

    if type not in ("relative", "absolute"):
        raise HBMError(f"type must be 'relative' or 'absolute', not {type!r}")
    cm = fit.model
    call = _dose_call(cm)
    model = MODELS[call.fn]
    ps = [float(v) for v in (p if isinstance(p, (list, tuple)) else [p])]
    for v in ps:
        if type == "relative" and not 0 < v < 100:
            raise HBMError(f"a relative effective dose needs 0 < p < 100, got {v:g}")
    label, units, rows, re_formula = _units(fit, by)
    sets = [(units, rows, re_formula)]
    nl = {n for n, _ in cm.spec.nlpars}
    if population and re_formula is None and any(b.predictor in nl for b in cm.design.groups):
        sets.append((["population"], rows.iloc[:1], "~0"))  # group effects zero (medrc's ED)
    a, b_ = _q(prob)
    out, stored = [], {}
    for names, newdata, ref in sets:
        params: dict[str, np.ndarray] = {}
        for role, arg in zip(model.params, call.args[1:], strict=True):
            if isinstance(arg, Var):
                draws, _, _ = predict_draws(cm, fit.idata, newdata, arg.name, ref, "population")
                params[role] = draws  # (S, units)
            elif isinstance(arg, Num):
                params[role] = np.asarray(arg.value)
            else:
                params[role] = -np.asarray(arg.operand.value)
        for v in ps:
            edd = effective_dose(call.fn, v, {k: np.asarray(x) for k, x in params.items()}, absolute=type == "absolute")
            edd = np.broadcast_to(edd, (next(x for x in params.values() if np.ndim(x) == 2).shape[0], len(names)))
            for j, unit in enumerate(names):
                col = edd[:, j]
                ok = np.isfinite(col)
                lo, hi = np.quantile(col[ok], [(1 - prob) / 2, (1 + prob) / 2]) if ok.any() else (np.nan, np.nan)
                out.append({"unit": unit, "p": v, "type": type, "mean": float(np.mean(col[ok])) if ok.any() else np.nan,
                            "median": float(np.median(col[ok])) if ok.any() else np.nan, a: lo, b_: hi,
                            "defined": float(ok.mean())})
                stored.setdefault(v, {})[unit] = col
    table = pd.DataFrame(out)
    table = table.rename(columns={"unit": label}).set_index([label, "p"])
    if store:
        _store_ed(fit, stored, label, type)
    return table


def _store_ed(fit: Any, stored: dict[float, dict[str, np.ndarray]], label: str, type_: str) -> None:
    post = fit.idata.posterior
    C, D = post.sizes["chain"], post.sizes["draw"]
    import xarray as xr

    for v, per_unit in stored.items():
        name = f"ED{v:g}" + ("_abs" if type_ == "absolute" else "")
        units = list(per_unit)
        arr = np.stack([per_unit[u] for u in units], axis=-1).reshape(C, D, len(units))
        dim = f"{name}_{label}".replace(":", "_")
        post[name] = xr.DataArray(arr, dims=("chain", "draw", dim), coords={dim: [str(u) for u in units]})


def ed_ratio(fit: Any, p: float, a: str, b: str, by: str | None = None, prob: float = 0.95) -> pd.DataFrame:
    """Relative potency (drc ``EDcomp``): ED_p of unit ``a`` over ED_p of unit ``b``, per draw."""
    table = ed(fit, p, by=by, store=True)
    label = table.index.names[0]
    name = f"ED{float(p):g}"
    post = fit.idata.posterior[name]
    dim = post.dims[-1]
    known = [str(u) for u in post.coords[dim].values]
    for u in (a, b):
        if str(u) not in known:
            raise HBMError(f"'{u}' is not a level of {label}; levels: {', '.join(known)}")
    ra = post.sel({dim: str(a)}).values.ravel() / post.sel({dim: str(b)}).values.ravel()
    q1, q2 = _q(prob)
    lo, hi = np.nanquantile(ra, [(1 - prob) / 2, (1 + prob) / 2])
    return pd.DataFrame([{"ratio": f"ED{float(p):g}({a}) / ED{float(p):g}({b})", "mean": float(np.nanmean(ra)),
                          "median": float(np.nanmedian(ra)), q1: lo, q2: hi,
                          "P(ratio > 1)": float(np.nanmean(ra > 1))}]).set_index("ratio")
