"""The family table: one record per response distribution.

A family says which links it takes (the first is the default, as in brms),
which auxiliary (distributional) parameters it has, how they are constrained
and what their default priors are, what data it accepts, and how its
likelihood is written in the generated code. Adding a family is adding a
record here; nothing else branches on family names.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

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


def inv_link(link: str, eta: str) -> str:
    return INV_LINK[link].format(eta)


@dataclass(frozen=True)
class AuxParam:
    """An auxiliary (distributional) parameter such as ``sigma``.

    ``link`` is the scale on which a formula for it is modelled; ``support``
    the constraint of the parameter itself; ``default_prior`` its prior when
    it is a single scalar; ``center`` the value its intercept is centred on
    when it gets a formula.
    """

    name: str
    link: str
    support: str
    default_prior: Callable[[dict[str, float]], str]
    center: Callable[[dict[str, float]], float] = lambda s: 0.0


@dataclass(frozen=True)
class Lik:
    """What a likelihood template gets: the code of mu (or eta), of each
    auxiliary parameter and of the response addition terms."""

    link: str
    eta: str
    aux: dict[str, str]
    trials: str | None = None
    se: str | None = None


@dataclass(frozen=True)
class FamilySpec:
    name: str
    links: tuple[str, ...]
    aux: tuple[AuxParam, ...]
    #: likelihood code, "dist.X(...)"
    likelihood: Callable[[Lik], str]
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
        raise DataError(f"{what} response must be positive; found {y[y <= 0][0]!r} ({int((y <= 0).sum())} rows)")


def _positive(name: str) -> Callable[[np.ndarray, np.ndarray | None], None]:
    return lambda y, t: _check_positive(y, t, name)


def _check_unit(y: np.ndarray, trials: np.ndarray | None) -> None:
    _check_real(y, trials)
    bad = (y <= 0) | (y >= 1)
    if bad.any():
        raise DataError(f"beta response must lie strictly between 0 and 1; found {y[bad][0]!r} ({int(bad.sum())} rows)")


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


# ---------------------------------------------------------------- likelihood templates
def _gaussian(a: Lik) -> str:
    return f"dist.Normal({inv_link(a.link, a.eta)}, {a.aux['sigma']})"


def _student(a: Lik) -> str:
    return f"dist.StudentT({a.aux['nu']}, {inv_link(a.link, a.eta)}, {a.aux['sigma']})"


def _bernoulli(a: Lik) -> str:
    if a.link == "logit":
        return f"dist.Bernoulli(logits={a.eta})"
    return f"dist.Bernoulli(probs={inv_link(a.link, a.eta)})"


def _binomial(a: Lik) -> str:
    if a.link == "logit":
        return f"dist.Binomial(total_count={a.trials}, logits={a.eta})"
    return f"dist.Binomial(total_count={a.trials}, probs={inv_link(a.link, a.eta)})"


def _beta_binomial(a: Lik) -> str:
    mu, phi = inv_link(a.link, a.eta), a.aux["phi"]
    return f"dist.BetaBinomial({mu} * {phi}, (1.0 - {mu}) * {phi}, total_count={a.trials})"


def _poisson(a: Lik) -> str:
    return f"dist.Poisson({inv_link(a.link, a.eta)})"


def _negbinomial(a: Lik) -> str:
    return f"dist.NegativeBinomial2({inv_link(a.link, a.eta)}, {a.aux['shape']})"


def _zip(a: Lik) -> str:
    return f"dist.ZeroInflatedPoisson(gate={a.aux['zi']}, rate={inv_link(a.link, a.eta)})"


def _zinb(a: Lik) -> str:
    return f"dist.ZeroInflatedNegativeBinomial2({inv_link(a.link, a.eta)}, {a.aux['shape']}, gate={a.aux['zi']})"


def _hurdle_poisson(a: Lik) -> str:
    return f"dist.HurdlePoisson(gate={a.aux['hu']}, rate={inv_link(a.link, a.eta)})"


def _gamma(a: Lik) -> str:
    shape = a.aux["shape"]
    return f"dist.Gamma({shape}, {shape} / {inv_link(a.link, a.eta)})"


def _lognormal(a: Lik) -> str:
    return f"dist.LogNormal({inv_link(a.link, a.eta)}, {a.aux['sigma']})"


def _beta(a: Lik) -> str:
    mu, phi = inv_link(a.link, a.eta), a.aux["phi"]
    return f"dist.Beta({mu} * {phi}, (1.0 - {mu}) * {phi})"


def _exponential(a: Lik) -> str:
    return f"dist.Exponential(1.0 / {inv_link(a.link, a.eta)})"


def _weibull(a: Lik) -> str:
    k = a.aux["shape"]
    # brms parameterisation: mu is the mean, scale = mu / Gamma(1 + 1/k)
    return f"dist.Weibull({inv_link(a.link, a.eta)} / jnp.exp(jax.scipy.special.gammaln(1.0 + 1.0 / {k})), {k})"


def _cumulative(a: Lik) -> str:
    if a.link == "logit":
        return f"dist.OrderedLogistic({a.eta}, Intercept)"
    # probit: P(y <= k) = Phi(c_k - eta)
    return f"dist.Categorical(probs=ordinal_probs(jax.scipy.stats.norm.cdf, {a.eta}, Intercept))"


def _categorical(a: Lik) -> str:
    return f"dist.Categorical(logits={a.eta})"


def _exp_of_sd(s: dict[str, float]) -> str:
    return f"exponential({1.0 / s['y_sd']:.4g})"


SIGMA = AuxParam("sigma", "log", "positive", _exp_of_sd, lambda s: math.log(s["y_sd"]))
SHAPE_GAMMA = AuxParam("shape", "log", "positive", lambda s: "gamma(0.01, 0.01)")
PHI = AuxParam("phi", "log", "positive", lambda s: "gamma(0.01, 0.01)")

FAMILIES: dict[str, FamilySpec] = {
    f.name: f
    for f in (
        FamilySpec("gaussian", ("identity", "log", "inverse"), (SIGMA,), _gaussian, _check_real, scale_with_y=True,
                   addterms=frozenset({"weights", "cens", "trunc", "se"})),
        FamilySpec(
            "student", ("identity", "log", "inverse"),
            (SIGMA, AuxParam("nu", "log", "positive", lambda s: "gamma(2, 0.1)", lambda s: math.log(10.0))),
            _student, _check_real, scale_with_y=True, addterms=frozenset({"weights", "cens", "trunc", "se"}),
        ),
        FamilySpec("bernoulli", ("logit", "probit", "cloglog"), (), _bernoulli, _check_binary, discrete=True,
                   has_cdf=False, addterms=frozenset({"weights"})),
        FamilySpec("binomial", ("logit", "probit", "cloglog"), (), _binomial, _check_binomial, needs_trials=True,
                   discrete=True, has_cdf=False, addterms=frozenset({"weights", "trials"})),
        FamilySpec("beta_binomial", ("logit", "probit", "cloglog"), (PHI,), _beta_binomial, _check_binomial,
                   needs_trials=True, discrete=True, has_cdf=False, addterms=frozenset({"weights", "trials"})),
        FamilySpec("poisson", ("log", "identity", "sqrt", "softplus"), (), _poisson, _check_count, discrete=True),
        FamilySpec(
            "negbinomial", ("log", "identity", "sqrt", "softplus"),
            (AuxParam("shape", "log", "positive", lambda s: "inv_gamma(0.4, 0.3)"),),
            _negbinomial, _check_count, discrete=True, has_cdf=False, addterms=frozenset({"weights"}),
        ),
        FamilySpec(
            "zero_inflated_poisson", ("log", "identity", "sqrt", "softplus"),
            (AuxParam("zi", "logit", "unit", lambda s: "beta(1, 1)"),),
            _zip, _check_count, discrete=True, has_cdf=False, addterms=frozenset({"weights"}),
        ),
        FamilySpec(
            "zero_inflated_negbinomial", ("log", "identity", "sqrt", "softplus"),
            (AuxParam("shape", "log", "positive", lambda s: "inv_gamma(0.4, 0.3)"),
             AuxParam("zi", "logit", "unit", lambda s: "beta(1, 1)")),
            _zinb, _check_count, discrete=True, has_cdf=False, addterms=frozenset({"weights"}),
        ),
        FamilySpec(
            "hurdle_poisson", ("log", "identity", "sqrt", "softplus"),
            (AuxParam("hu", "logit", "unit", lambda s: "beta(1, 1)"),),
            _hurdle_poisson, _check_count, discrete=True, has_cdf=False, addterms=frozenset({"weights"}),
        ),
        FamilySpec("gamma", ("log", "identity", "inverse"), (SHAPE_GAMMA,), _gamma, _positive("gamma")),
        FamilySpec("lognormal", ("identity", "inverse"), (SIGMA,), _lognormal, _positive("lognormal"),
                   scale_with_y=True, y_transform=np.log),
        FamilySpec("beta", ("logit", "probit", "cloglog"), (PHI,), _beta, _check_unit),
        FamilySpec("exponential", ("log", "identity", "inverse"), (), _exponential, _positive("exponential")),
        FamilySpec("weibull", ("log", "identity", "softplus"), (SHAPE_GAMMA,), _weibull, _positive("weibull")),
        FamilySpec("cumulative", ("logit", "probit"), (), _cumulative, _check_codes, discrete=True,
                   kind="ordinal", has_cdf=False, addterms=frozenset({"weights"})),
        FamilySpec("categorical", ("logit",), (), _categorical, _check_codes, discrete=True,
                   kind="categorical", has_cdf=False, addterms=frozenset({"weights"})),
    )
}

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


#: helper code emitted into a generated model when it uses censoring, truncation or probit ordinal
HELPERS: dict[str, str] = {
    "cdf": '''
def cdf(d, y):
    """CDF of a distribution, including LogNormal (not provided by NumPyro)."""
    if isinstance(d, dist.LogNormal):
        return jax.scipy.stats.norm.cdf((jnp.log(y) - d.base_dist.loc) / d.base_dist.scale)
    return d.cdf(y)


def safe_log(p):
    return jnp.log(jnp.clip(p, jnp.finfo(jnp.result_type(p, float)).tiny, 1.0))
''',
    "Censored": '''
class Censored(dist.Distribution):
    """Observations with brms censoring codes: 0 exact, 1 right (y or more),
    -1 left (y or less), 2 interval (between y and upper)."""

    def __init__(self, base, cens, upper, discrete=False):
        self.base, self.cens, self.upper, self.discrete = base, cens, upper, discrete
        super().__init__(batch_shape=jnp.broadcast_shapes(base.batch_shape, jnp.shape(cens)))

    @property
    def support(self):
        return self.base.support

    def sample(self, key, sample_shape=()):
        return self.base.sample(key, sample_shape)

    def log_prob(self, y):
        step = 1.0 if self.discrete else 0.0
        exact = self.base.log_prob(y)
        left = safe_log(cdf(self.base, y))
        right = safe_log(1.0 - cdf(self.base, y - step))
        interval = safe_log(cdf(self.base, self.upper) - cdf(self.base, y - step))
        return jnp.select([self.cens == 0, self.cens == 1, self.cens == -1], [exact, right, left], interval)
''',
    "Truncated": '''
class Truncated(dist.Distribution):
    """A distribution restricted to [low, high] (None: unbounded), renormalised by its CDF."""

    def __init__(self, base, low=None, high=None, discrete=False):
        self.base, self.low, self.high, self.discrete = base, low, high, discrete
        super().__init__(batch_shape=base.batch_shape)

    @property
    def support(self):
        return self.base.support

    def sample(self, key, sample_shape=()):
        # prior predictive only: clip the untruncated draw into the bounds
        x = self.base.sample(key, sample_shape)
        return jnp.clip(x, self.low, self.high)

    def log_prob(self, y):
        step = 1.0 if self.discrete else 0.0
        upper = 1.0 if self.high is None else cdf(self.base, self.high)
        lower = 0.0 if self.low is None else cdf(self.base, self.low - step)
        return self.base.log_prob(y) - safe_log(upper - lower)
''',
    "OrderedIID": '''
class OrderedIID(dist.Distribution):
    """Independent priors restricted to increasing values (Stan's ordered vector
    with a prior per element); draws are the sorted independent draws."""

    support = dist.constraints.ordered_vector

    def __init__(self, base):
        self.base = base
        super().__init__(batch_shape=base.batch_shape[:-1], event_shape=base.batch_shape[-1:])

    def sample(self, key, sample_shape=()):
        return jnp.sort(self.base.sample(key, sample_shape), axis=-1)

    def log_prob(self, value):
        return jnp.sum(self.base.log_prob(value), axis=-1)
''',
    "ordinal_probs": '''
def ordinal_probs(cdf_fn, eta, cutpoints):
    """Category probabilities of a cumulative model: P(y <= k) = F(c_k - eta)."""
    c = cdf_fn(cutpoints - eta[..., None])
    c = jnp.concatenate([jnp.zeros_like(c[..., :1]), c, jnp.ones_like(c[..., :1])], axis=-1)
    return jnp.clip(jnp.diff(c, axis=-1), 1e-12, 1.0)
''',
}
