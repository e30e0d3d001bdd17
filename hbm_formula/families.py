"""The family table: one record per response distribution, free of any backend.

A family says which links it takes (the first is the default, as in brms),
which distributional parameters it has, how they are constrained and what
their default priors are, and what data it accepts. The parser and the design
stage read this table; how a family's likelihood is written in NumPyro lives
apart, in ``likelihoods.py``, which only the lowering stage reads (brms keeps
``family-lists.R`` apart from ``stan-likelihood.R`` the same way). Adding a
family is a record here plus a template there.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .errors import DataError, FormulaError
from .ir import Family, PriorDist

#: link functions applied to numbers (centres of default intercept priors)
LINK_FN: dict[str, Callable[[float], float]] = {
    "identity": lambda v: v,
    "log": lambda v: math.log(max(v, 1e-12)),
    "logit": lambda v: math.log(min(max(v, 1e-6), 1 - 1e-6) / (1 - min(max(v, 1e-6), 1 - 1e-6))),
    "inverse": lambda v: 1.0 / v if v else 0.0,
    "sqrt": lambda v: math.sqrt(max(v, 0.0)),
    "softplus": lambda v: math.log(math.expm1(max(v, 1e-6))),
    "probit": lambda v: 0.0,
    "cloglog": lambda v: 0.0,
}

Stats = dict[str, float]


@dataclass(frozen=True)
class AuxParam:
    """A distributional parameter such as ``sigma``.

    ``link`` is the scale on which a formula for it is modelled; ``support``
    the constraint of the parameter itself; ``default_prior`` its prior (a
    value of the IR's prior type, scaled to the data) when it is a single
    scalar; ``center`` the value its intercept is centred on when it gets a
    formula.
    """

    name: str
    link: str
    support: str
    default_prior: Callable[[Stats], PriorDist]
    center: Callable[[Stats], float] = lambda s: 0.0


@dataclass(frozen=True)
class FamilySpec:
    name: str
    links: tuple[str, ...]
    aux: tuple[AuxParam, ...]
    #: raises DataError for a response (and trials) the family cannot take
    check: Callable[[np.ndarray, np.ndarray | None], None]
    #: whether default priors scale with the response's SD (identity-link real responses)
    scale_with_y: bool = False
    #: transform applied to y before computing the default-prior statistics
    y_transform: Callable[[np.ndarray], np.ndarray] | None = None
    needs_trials: bool = False
    discrete: bool = False
    #: "standard", "ordinal" (thresholds instead of an intercept) or "categorical" (one predictor per category)
    kind: str = "standard"
    #: whether the distribution has a cdf (needed by censoring and truncation)
    has_cdf: bool = True
    addterms: frozenset[str] = field(default_factory=lambda: frozenset({"weights", "cens", "trunc"}))

    @property
    def default_link(self) -> str:
        return self.links[0]

    def aux_param(self, name: str) -> AuxParam | None:
        for a in self.aux:
            if a.name == name:
                return a
        return None


# ---------------------------------------------------------------- data checks
def _check_real(y: np.ndarray, trials: np.ndarray | None) -> None:
    if not np.all(np.isfinite(y)):
        raise DataError("the response has non-finite values (inf or nan after transformation)")


def _check_positive(y: np.ndarray, trials: np.ndarray | None, what: str = "") -> None:
    _check_real(y, trials)
    if (y <= 0).any():
        raise DataError(f"{what} response must be positive; found {float(y[y <= 0][0]):g} ({int((y <= 0).sum())} rows)")


def _positive(name: str) -> Callable[[np.ndarray, np.ndarray | None], None]:
    return lambda y, t: _check_positive(y, t, name)


def _check_unit(y: np.ndarray, trials: np.ndarray | None) -> None:
    _check_real(y, trials)
    bad = (y <= 0) | (y >= 1)
    if bad.any():
        raise DataError(f"beta response must lie strictly between 0 and 1; found {float(y[bad][0]):g} ({int(bad.sum())} rows)")


def _check_binary(y: np.ndarray, trials: np.ndarray | None) -> None:
    bad = ~np.isin(y, (0, 1))
    if bad.any():
        vals = ", ".join(repr(v) for v in np.unique(y[bad])[:5].tolist())
        raise DataError(f"bernoulli response must be 0 or 1 (or True/False); found {vals}")


def _check_count(y: np.ndarray, trials: np.ndarray | None) -> None:
    _check_real(y, trials)
    if (y < 0).any():
        raise DataError(f"count response must be non-negative; found {float(y[y < 0][0]):g} ({int((y < 0).sum())} rows)")
    if (y != np.round(y)).any():
        raise DataError(f"count response must be whole numbers; found {float(y[y != np.round(y)][0]):g}")


def _check_binomial(y: np.ndarray, trials: np.ndarray | None) -> None:
    _check_count(y, trials)
    if trials is None:
        raise DataError("this family needs trials: write cbind(successes, failures) ~ ... or y | trials(n) ~ ...")
    if (trials < 0).any() or (trials != np.round(trials)).any():
        raise DataError("trials must be non-negative whole numbers")
    over = y > trials
    if over.any():
        raise DataError(
            f"binomial successes exceed trials in {int(over.sum())} rows (first: {y[over][0]:g} > {trials[over][0]:g})"
        )


def _check_codes(y: np.ndarray, trials: np.ndarray | None) -> None:
    """Ordinal/categorical responses arrive here already coded 0..K-1."""


def _const(name: str, *args: float) -> Callable[[Stats], PriorDist]:
    prior = PriorDist(name, tuple(float(a) for a in args))
    return lambda s: prior


def _exp_of_sd(s: Stats) -> PriorDist:
    return PriorDist("exponential", (float(f"{1.0 / s['y_sd']:.4g}"),))


SIGMA = AuxParam("sigma", "log", "positive", _exp_of_sd, lambda s: math.log(s["y_sd"]))
SHAPE_GAMMA = AuxParam("shape", "log", "positive", _const("gamma", 0.01, 0.01))
SHAPE_NB = AuxParam("shape", "log", "positive", _const("inv_gamma", 0.4, 0.3))
PHI = AuxParam("phi", "log", "positive", _const("gamma", 0.01, 0.01))
NU = AuxParam("nu", "log", "positive", _const("gamma", 2, 0.1), lambda s: math.log(10.0))
ZI = AuxParam("zi", "logit", "unit", _const("beta", 1, 1))
HU = AuxParam("hu", "logit", "unit", _const("beta", 1, 1))

_REAL_TERMS = frozenset({"weights", "cens", "trunc", "se"})
_WEIGHTS = frozenset({"weights"})
_COUNT = ("log", "identity", "sqrt", "softplus")
_BINARY = ("logit", "probit", "cloglog")

FAMILIES: dict[str, FamilySpec] = {
    f.name: f
    for f in (
        FamilySpec("gaussian", ("identity", "log", "inverse"), (SIGMA,), _check_real, scale_with_y=True,
                   addterms=_REAL_TERMS),
        # (student and beta: their CDFs are the incomplete beta function, whose gradient in its parameters JAX
        # does not have, so no censoring or truncation)
        FamilySpec("student", ("identity", "log", "inverse"), (SIGMA, NU), _check_real, scale_with_y=True,
                   has_cdf=False, addterms=_REAL_TERMS),
        FamilySpec("bernoulli", _BINARY, (), _check_binary, discrete=True, has_cdf=False, addterms=_WEIGHTS),
        FamilySpec("binomial", _BINARY, (), _check_binomial, needs_trials=True, discrete=True, has_cdf=False,
                   addterms=frozenset({"weights", "trials"})),
        FamilySpec("beta_binomial", _BINARY, (PHI,), _check_binomial, needs_trials=True, discrete=True,
                   has_cdf=False, addterms=frozenset({"weights", "trials"})),
        FamilySpec("poisson", _COUNT, (), _check_count, discrete=True),
        FamilySpec("negbinomial", _COUNT, (SHAPE_NB,), _check_count, discrete=True, has_cdf=False, addterms=_WEIGHTS),
        FamilySpec("zero_inflated_poisson", _COUNT, (ZI,), _check_count, discrete=True, has_cdf=False,
                   addterms=_WEIGHTS),
        FamilySpec("zero_inflated_negbinomial", _COUNT, (SHAPE_NB, ZI), _check_count, discrete=True, has_cdf=False,
                   addterms=_WEIGHTS),
        FamilySpec("hurdle_poisson", _COUNT, (HU,), _check_count, discrete=True, has_cdf=False, addterms=_WEIGHTS),
        FamilySpec("gamma", ("log", "identity", "inverse"), (SHAPE_GAMMA,), _positive("gamma")),
        FamilySpec("lognormal", ("identity", "inverse"), (SIGMA,), _positive("lognormal"), scale_with_y=True,
                   y_transform=np.log),
        FamilySpec("beta", _BINARY, (PHI,), _check_unit, has_cdf=False),
        FamilySpec("exponential", ("log", "identity", "inverse"), (), _positive("exponential")),
        FamilySpec("weibull", ("log", "identity", "softplus"), (SHAPE_GAMMA,), _positive("weibull")),
        FamilySpec("cumulative", ("logit", "probit"), (), _check_codes, discrete=True, kind="ordinal",
                   has_cdf=False, addterms=_WEIGHTS),
        FamilySpec("categorical", ("logit",), (), _check_codes, discrete=True, kind="categorical", has_cdf=False,
                   addterms=_WEIGHTS),
    )
}

#: every distributional parameter name of any family (a formula line for another name is a non-linear parameter)
DPAR_NAMES: frozenset[str] = frozenset(a.name for f in FAMILIES.values() for a in f.aux)

_ALIASES = {
    "normal": "gaussian", "logistic": "bernoulli", "student_t": "student", "t": "student",
    "negative_binomial": "negbinomial", "ordinal": "cumulative", "multinomial": "categorical",
    "zip": "zero_inflated_poisson", "zinb": "zero_inflated_negbinomial", "betabinomial": "beta_binomial",
}


def family_spec(name: str) -> FamilySpec:
    return FAMILIES[_ALIASES.get(name, name)]


def resolve_family(name: str, link: str | None = None) -> Family:
    """Validate a family/link pair, filling in the default link."""
    key = _ALIASES.get(str(name).lower(), str(name).lower())
    if key not in FAMILIES:
        raise FormulaError(f"unknown family '{name}'; families: {', '.join(FAMILIES)}")
    fam = FAMILIES[key]
    if link is None:
        return Family(key, fam.default_link)
    if link not in fam.links:
        raise FormulaError(f"family '{key}' does not take link '{link}'; its links: {', '.join(fam.links)}")
    return Family(key, link)
