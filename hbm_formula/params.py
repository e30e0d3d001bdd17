"""The parameter table: every parameter of a compiled model, its default prior
(scaled to the data) and the user's override, resolved by name brms-style.

Names (``mu`` predictor; other predictors add their name, e.g. ``b_sigma``):

========================  ==========================================================
``Intercept``             intercept (on centered predictors when there are any)
``b`` / ``b_<coef>``      population-level coefficients (class / one coefficient)
``sd`` / ``sd_<g>`` /     group-level SDs: class / one grouping factor / one coefficient
``sd_<g>__<coef>``
``cor`` / ``cor_<g>``     correlations of a correlated group term (LKJ)
``sigma`` ...             auxiliary parameters of the family
========================  ==========================================================

The most specific name wins: ``b_floor`` over ``b``; ``sd_county__floor`` over
``sd_county`` over ``sd``.
"""

from __future__ import annotations

import difflib
import math
import shlex
from dataclasses import dataclass, field

from .design import Design, GroupBlock, PredictorData
from .errors import FormulaError, PriorError
from .families import family_spec
from .ir import BinOp, Call, Expr, ModelSpec, Num, PriorDist, Var
from .priors import check_prior

#: prior of the correlation matrix of every correlated group term
DEFAULT_LKJ_ETA = 2.0


@dataclass
class ParamEntry:
    """One named parameter (a scalar or one element of a vector site)."""

    name: str  # e.g. "b_floor", "sd_county__Intercept", "sigma"
    cls: str  # "Intercept", "b", "sd", "cor", or an auxiliary parameter name
    predictor: str
    keys: tuple[str, ...]  # override names from most to least specific (name first)
    support: str  # "real", "positive", "corr"
    default: PriorDist
    prior: PriorDist = field(init=False)
    source: str = "default"

    def __post_init__(self) -> None:
        self.prior = self.default


def _sig(v: float) -> float:
    return float(f"{v:.3g}")


def _pd(name: str, *args: float) -> PriorDist:
    """A default prior with readable numbers: a location is rounded to the precision of its scale."""
    vals = [_sig(a) for a in args]
    if name == "normal" and len(vals) == 2 and vals[1] > 0:
        digits = max(0, 2 - int(math.floor(math.log10(vals[1]))))
        vals[0] = round(vals[0], digits) + 0.0
    return PriorDist(name, tuple(vals))


def _suffix(pname: str) -> str:
    return "" if pname == "mu" else f"_{pname}"


def build_param_table(spec: ModelSpec, design: Design) -> list[ParamEntry]:
    fam = family_spec(spec.family.name)
    stats = design.stats
    dpars = dict(spec.dpars)
    entries: list[ParamEntry] = []
    nl_names = {n for n, _ in spec.nlpars}
    roles = nl_roles(spec, design) if nl_names else {}
    for pname, pdata in design.predictors.items():
        if pname in nl_names:
            entries += _nl_entries(pname, pdata, roles.get(pname))
            continue
        aux = fam.aux_param(pname)
        # predictors on the response scale (gaussian identity mu) scale with the response; all
        # others live on a link scale, where the rstanarm/bambi rule uses scale 1
        linear_y = pname == "mu" and fam.scale_with_y and spec.family.link == "identity"
        s_y = stats["y_sd"] if linear_y else 1.0
        sfx = _suffix(pname)
        if fam.kind == "ordinal" and pname == "mu":
            levels = design.response.levels or []
            for k in range(1, len(levels)):
                entries.append(ParamEntry(f"Intercept_{k}", "Intercept", pname, (f"Intercept_{k}", "Intercept"),
                                          "real", _pd("normal", 0.0, 2.5)))
        elif pdata.intercept:
            loc = stats["y_mean"] if linear_y else (aux.center(stats) if aux is not None else 0.0)
            entries.append(
                ParamEntry(f"Intercept{sfx}", "Intercept", pname, (f"Intercept{sfx}",), "real", _pd("normal", loc, 2.5 * s_y))
            )
        for coef, xs in zip(pdata.coef_names, pdata.x_scale, strict=True):
            entries.append(
                ParamEntry(f"b{sfx}_{coef}", "b", pname, (f"b{sfx}_{coef}", f"b{sfx}"), "real", _pd("normal", 0.0, 2.5 * s_y / xs))
            )
        for blk in pdata.groups:
            entries += _group_entries(blk, pname, s_y)
    for j in design.joints:  # terms linked by an ID: one correlation matrix across their predictors
        entries.append(_cor_entry(j.label, "mu", "cor"))
    for aux in fam.aux:
        if aux.name in dpars or (aux.name == "sigma" and design.response.se is not None and not design.response.se_sigma):
            continue
        d = aux.default_prior(stats)
        entries.append(ParamEntry(aux.name, aux.name, "mu", (aux.name,), aux.support, _pd(d.name, *d.args)))
    return entries


REQUIRED = PriorDist("required")


def nl_roles(spec: ModelSpec, design: Design) -> dict[str, tuple[float, float, float]]:
    """Default-prior (centre, scale, group-SD scale) of each parameter of a
    recognised non-linear template, from the data; {} when none is recognised.

    The 4-parameter logistic ``A + (B - A) / (1 + exp(H * (E - x)))`` (or with
    ``(x - E)``): A and B are the asymptotes at low and high x (centred on the
    mean response of the lowest and highest 10% of x, scale 2.5 sd(y)), E the
    mid-point on the x scale (centred on the median x, scale 2.5 sd(x)), H the
    slope (log scale when bounded below by 0: normal(0, 1), i.e. a median of 1).
    """
    import numpy as np
    import pandas as pd

    from .design import evaluate

    if design.nl_roles:  # a dose-response call (LL4, ...): its defaults come with the design
        return dict(design.nl_roles)
    names = {n for n, _ in spec.nlpars}
    found = _match_4pl(spec.formula.rhs, names)  # type: ignore[arg-type]
    if found is None:
        return {}
    a, b, h, mid, xexpr, b_high = found
    x = evaluate(xexpr, pd.DataFrame(dict(design.columns)))
    y = design.y
    sd_y = float(np.std(y)) or 1.0
    sd_x = float(np.std(x)) or 1.0
    lo, hi = np.quantile(x, [0.1, 0.9])
    y_lo, y_hi = float(np.mean(y[x <= lo])), float(np.mean(y[x >= hi]))
    high, low = (b, a) if b_high else (a, b)
    h_lb, _ = spec.bounds(h)
    hill = (0.0, 1.0, 0.5) if h_lb is not None else (0.0, 2.5 / sd_x, 1.0 / sd_x)
    return {
        low: (y_lo, 2.5 * sd_y, sd_y),
        high: (y_hi, 2.5 * sd_y, sd_y),
        mid: (float(np.median(x)), 2.5 * sd_x, sd_x),
        h: hill,
    }


def _match_4pl(e: Expr, names: set[str]) -> tuple[str, str, str, str, Expr, bool] | None:
    """``A + (B - A) / (1 + exp(H * (E - x)))`` (or ``(x - E)``) with A, B, H, E distinct parameters:
    (A, B, H, E, x, whether B is the high-dose asymptote); None for any other expression."""

    def binop(x: Expr, op: str) -> BinOp | None:
        return x if isinstance(x, BinOp) and x.op == op else None

    top = binop(e, "+")
    if top is None or not isinstance(top.left, Var):
        return None
    a = top.left.name
    frac = binop(top.right, "/")
    num = binop(frac.left, "-") if frac else None
    den = binop(frac.right, "+") if frac else None
    if num is None or den is None or not isinstance(num.left, Var) or num.right != Var(a) or den.left != Num(1.0):
        return None
    b = num.left.name
    ex = den.right
    if not (isinstance(ex, Call) and ex.fn == "exp" and len(ex.args) == 1):
        return None
    prod = binop(ex.args[0], "*")
    diff = binop(prod.right, "-") if prod else None
    if prod is None or diff is None or not isinstance(prod.left, Var):
        return None
    h = prod.left.name
    if isinstance(diff.left, Var) and diff.left.name in names:
        mid, xexpr, b_high = diff.left.name, diff.right, True
    elif isinstance(diff.right, Var) and diff.right.name in names:
        mid, xexpr, b_high = diff.right.name, diff.left, False
    else:
        return None
    if not ({a, b, h, mid} <= names and len({a, b, h, mid}) == 4):
        return None
    return a, b, h, mid, xexpr, b_high


def _nl_entries(pname: str, pdata: PredictorData, role: tuple[float, float, float] | None) -> list[ParamEntry]:
    """Parameters of a non-linear parameter's formula; priors left REQUIRED where
    no default is known (filled from the intercept prior, or an error, later)."""
    out: list[ParamEntry] = []
    sfx = _suffix(pname)
    center, scale, sd_scale = role if role is not None else (0.0, 0.0, 0.0)
    if pdata.intercept:
        d = _pd("normal", center, scale) if role else REQUIRED
        out.append(ParamEntry(f"Intercept{sfx}", "Intercept", pname, (f"Intercept{sfx}",), "real", d))
    for coef, xs in zip(pdata.coef_names, pdata.x_scale, strict=True):
        d = _pd("normal", 0.0, scale / xs) if role else REQUIRED
        out.append(ParamEntry(f"b{sfx}_{coef}", "b", pname, (f"b{sfx}_{coef}", f"b{sfx}"), "real", d))
    for blk in pdata.groups:
        for e in _group_entries(blk, pname, 1.0):
            if e.cls == "sd":
                zs = blk.z_scale[blk.coef_names.index(e.name.rsplit("__", 1)[1])]
                e.default = e.prior = _pd("half_normal", sd_scale / zs) if role else REQUIRED
            out.append(e)
    return out


def _fill_required(entries: list[ParamEntry]) -> None:
    """b and sd of a non-linear parameter default to the scale of its intercept's
    prior; an intercept without a prior is an error naming what to set."""
    missing = [e.name for e in entries if e.prior is REQUIRED and e.cls == "Intercept"]
    if missing:
        ex = missing[0]
        raise PriorError(
            f"no default prior for {', '.join(missing)}: a non-linear parameter's scale is unknown; "
            f"set one, e.g. priors={{{ex!r}: 'normal(0, 1)'}} (CLI: --prior {shlex.quote(ex + '=normal(0, 1)')})"
        )
    scale = {e.predictor: (e.prior.args[-1] if e.prior.args else 1.0) for e in entries if e.cls == "Intercept"}
    for e in entries:
        if e.prior is REQUIRED:
            s = scale.get(e.predictor)
            if s is None:
                raise PriorError(f"no default prior for {e.name}: set one, e.g. priors={{{e.name!r}: 'normal(0, 1)'}} "
                                 f"(CLI: --prior {shlex.quote(e.name + '=normal(0, 1)')})")
            e.prior = _pd("half_normal", s) if e.cls == "sd" else _pd("normal", 0.0, s)
            e.source = "default (intercept prior's scale)"


def _group_entries(blk: GroupBlock, pname: str, s_y: float) -> list[ParamEntry]:
    out = []
    sd_cls = "sd" if pname == "mu" else f"sd_{pname}"
    for coef, zs in zip(blk.coef_names, blk.z_scale, strict=True):
        out.append(
            ParamEntry(
                f"sd_{blk.label}__{coef}", "sd", pname,
                (f"sd_{blk.label}__{coef}", f"sd_{blk.label}", sd_cls),
                "positive", _pd("half_normal", 2.5 * s_y / zs),
            )
        )
    if blk.term.correlated and blk.n_coef > 1 and blk.joint is None:
        out.append(_cor_entry(blk.label, pname, "cor" if pname == "mu" else f"cor_{pname}"))
    return out


def _cor_entry(label: str, pname: str, cor_cls: str) -> ParamEntry:
    """The LKJ prior of a correlated block: by its own name, or by class."""
    return ParamEntry(f"cor_{label}", "cor", pname, (f"cor_{label}", cor_cls), "corr", PriorDist("lkj", (DEFAULT_LKJ_ETA,)))


def valid_names(entries: list[ParamEntry]) -> list[str]:
    names: list[str] = []
    for e in entries:
        for k in e.keys:
            if k not in names:
                names.append(k)
    return names


def apply_priors(spec: ModelSpec, entries: list[ParamEntry]) -> list[ParamEntry]:
    """Resolve the spec's prior overrides onto the table (most specific name wins)."""
    names = valid_names(entries)
    given: dict[str, PriorDist] = {}
    as_given: dict[str, str] = {}
    for p in spec.priors:
        target, bare = p.target, p.target.strip()
        if target != bare and target in names and bare in names:
            raise PriorError(f"prior for {target!r}: both {target!r} and {bare!r} are parameters (columns whose names "
                             "differ by spaces); rename one of the columns")
        if target not in names and bare in names:
            target = bare  # ('b = normal(0, 1)' on the command line; a name may end in a space: exact first)
        if target not in names:
            close = difflib.get_close_matches(p.target, names, n=3, cutoff=0.5)
            hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
            raise PriorError(f"prior for unknown parameter {p.target!r}{hint}; parameters: {', '.join(names)}")
        if target in as_given:  # (as brms: a prior given twice is a mistake, not the last one winning)
            twice = f"{as_given[target]!r} and {p.target!r}" if as_given[target] != p.target else "twice"
            raise PriorError(f"two priors for {target!r} (given {twice}); give one")
        as_given[target] = p.target
        given[target] = check_prior(p.dist, target, str(p.dist))
    for e in entries:
        for k in e.keys:
            if k in given:
                e.prior = given[k]
                e.source = "user" if k == e.name else f"user ({k})"
                break
    return entries


def _check_unique(entries: list[ParamEntry]) -> None:
    """Two parameters must not share a name (``b_k_x_y`` from parameter ``k`` with column ``x_y``
    and from parameter ``k_x`` with column ``y``): priors by name would be ambiguous."""
    seen: dict[str, ParamEntry] = {}
    for e in entries:
        if e.name in seen:
            a, b = seen[e.name], e
            raise FormulaError(
                f"two parameters would both be named '{e.name}' (of {a.predictor} and of {b.predictor}); "
                "rename a non-linear parameter or a column so the names differ"
            )
        seen[e.name] = e


def param_table(spec: ModelSpec, design: Design) -> list[ParamEntry]:
    entries = build_param_table(spec, design)
    _check_unique(entries)
    entries = apply_priors(spec, entries)
    _fill_required(entries)
    return entries
