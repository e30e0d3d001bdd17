"""The family table: one record per response distribution.

A family says which links it takes (the first is the default, as in brms),
which auxiliary parameters it has and how they are constrained, what data it
accepts, and how its likelihood is written in the generated code. Adding a
family is adding a record here; nothing else branches on family names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .errors import DataError, FormulaError
from .ir import Family

#: inverse link functions as code templates over the linear predictor text
INV_LINK: dict[str, str] = {
    "identity": "{}",
    "log": "jnp.exp({})",
    "logit": "jax.nn.sigmoid({})",
    "probit": "jax.scipy.stats.norm.cdf({})",
    "cloglog": "-jnp.expm1(-jnp.exp({}))",
    "inverse": "1.0 / ({})",
    "sqrt": "jnp.square({})",
    "softplus": "jax.nn.softplus({})",
}


@dataclass(frozen=True)
class AuxParam:
    """An auxiliary (distributional) parameter such as ``sigma``."""

    name: str
    #: the link on which a formula for this parameter is modelled
    link: str
    #: the default prior when the parameter is a single scalar, given data stats
    default_prior: Callable[[dict[str, float]], str]


@dataclass(frozen=True)
class FamilySpec:
    name: str
    links: tuple[str, ...]
    aux: tuple[AuxParam, ...]
    #: likelihood code: f(link, eta_code, aux_codes, trials_code) -> "dist.X(...)"
    likelihood: Callable[[str, str, dict[str, str], str | None], str]
    #: raises DataError for a response (and trials) the family cannot take
    check: Callable[[np.ndarray, np.ndarray | None], None]
    #: whether the default priors scale with the response's SD (identity-link real responses)
    scale_with_y: bool = False
    needs_trials: bool = False

    @property
    def default_link(self) -> str:
        return self.links[0]


# ---------------------------------------------------------------- data checks
def _check_real(y: np.ndarray, trials: np.ndarray | None) -> None:
    if not np.all(np.isfinite(y)):
        raise DataError("the response has non-finite values (inf or nan after transformation)")


def _check_binary(y: np.ndarray, trials: np.ndarray | None) -> None:
    bad = ~np.isin(y, (0, 1))
    if bad.any():
        vals = ", ".join(repr(v) for v in np.unique(y[bad])[:5].tolist())
        raise DataError(f"bernoulli response must be 0 or 1 (or True/False); found {vals}")


def _check_count(y: np.ndarray, trials: np.ndarray | None) -> None:
    _check_real(y, trials)
    if (y < 0).any():
        raise DataError(f"count response must be non-negative; found {y[y < 0][0]!r} ({int((y < 0).sum())} rows)")
    if (y != np.round(y)).any():
        raise DataError(f"count response must be whole numbers; found {y[y != np.round(y)][0]!r}")


def _check_binomial(y: np.ndarray, trials: np.ndarray | None) -> None:
    _check_count(y, trials)
    if trials is None:
        raise DataError("binomial family needs trials: write cbind(successes, failures) ~ ... or y | trials(n) ~ ...")
    if (trials < 0).any() or (trials != np.round(trials)).any():
        raise DataError("binomial trials must be non-negative whole numbers")
    over = y > trials
    if over.any():
        raise DataError(
            f"binomial successes exceed trials in {int(over.sum())} rows (first: {y[over][0]:g} > {trials[over][0]:g})"
        )


# ---------------------------------------------------------------- likelihoods
def _gaussian(link: str, eta: str, aux: dict[str, str], trials: str | None) -> str:
    return f"dist.Normal({INV_LINK[link].format(eta)}, {aux['sigma']})"


def _bernoulli(link: str, eta: str, aux: dict[str, str], trials: str | None) -> str:
    if link == "logit":
        return f"dist.Bernoulli(logits={eta})"
    return f"dist.Bernoulli(probs={INV_LINK[link].format(eta)})"


def _binomial(link: str, eta: str, aux: dict[str, str], trials: str | None) -> str:
    if link == "logit":
        return f"dist.Binomial(total_count={trials}, logits={eta})"
    return f"dist.Binomial(total_count={trials}, probs={INV_LINK[link].format(eta)})"


def _poisson(link: str, eta: str, aux: dict[str, str], trials: str | None) -> str:
    return f"dist.Poisson({INV_LINK[link].format(eta)})"


FAMILIES: dict[str, FamilySpec] = {
    f.name: f
    for f in (
        FamilySpec(
            "gaussian",
            ("identity", "log", "inverse"),
            (AuxParam("sigma", "log", lambda s: f"exponential({1.0 / s['y_sd']:.4g})"),),
            _gaussian,
            _check_real,
            scale_with_y=True,
        ),
        FamilySpec("bernoulli", ("logit", "probit", "cloglog"), (), _bernoulli, _check_binary),
        FamilySpec("binomial", ("logit", "probit", "cloglog"), (), _binomial, _check_binomial, needs_trials=True),
        FamilySpec("poisson", ("log", "identity", "sqrt", "softplus"), (), _poisson, _check_count),
    )
}

_ALIASES = {"normal": "gaussian", "logistic": "bernoulli"}


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
