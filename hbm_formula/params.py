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
from dataclasses import dataclass, field

from .design import Design, GroupBlock
from .errors import PriorError
from .families import family_spec
from .ir import ModelSpec, PriorDist
from .parse import parse_prior
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
    return PriorDist(name, tuple(_sig(a) for a in args))


def _suffix(pname: str) -> str:
    return "" if pname == "mu" else f"_{pname}"


def build_param_table(spec: ModelSpec, design: Design) -> list[ParamEntry]:
    fam = family_spec(spec.family.name)
    stats = design.stats
    dpars = dict(spec.dpars)
    entries: list[ParamEntry] = []
    for pname, pdata in design.predictors.items():
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
    for aux in fam.aux:
        if aux.name in dpars or (aux.name == "sigma" and design.response.se is not None and not design.response.se_sigma):
            continue
        d = parse_prior(aux.default_prior(stats))
        entries.append(ParamEntry(aux.name, aux.name, "mu", (aux.name,), aux.support, _pd(d.name, *d.args)))
    return entries


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
    if blk.term.correlated and blk.n_coef > 1:
        cor_cls = "cor" if pname == "mu" else f"cor_{pname}"
        out.append(
            ParamEntry(f"cor_{blk.label}", "cor", pname, (f"cor_{blk.label}", cor_cls), "corr", PriorDist("lkj", (DEFAULT_LKJ_ETA,)))
        )
    return out


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
    for p in spec.priors:
        if p.target not in names:
            close = difflib.get_close_matches(p.target, names, n=3, cutoff=0.5)
            hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
            raise PriorError(f"prior for unknown parameter '{p.target}'{hint}; parameters: {', '.join(names)}")
        given[p.target] = check_prior(p.dist, p.target, str(p.dist))
    for e in entries:
        for k in e.keys:
            if k in given:
                e.prior = given[k]
                e.source = "user" if k == e.name else f"user ({k})"
                break
    return entries


def param_table(spec: ModelSpec, design: Design) -> list[ParamEntry]:
    return apply_priors(spec, build_param_table(spec, design))
