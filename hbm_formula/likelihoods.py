"""How each family's likelihood is written in the generated NumPyro code.

Read only by the lowering stage: templates over the code of the linear
predictor and the distributional parameters, the inverse links as code, and
helper definitions (censoring, truncation, ordered priors) emitted into a
generated model that uses them. The backend-free family table is
``families.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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


def inv_link(link: str, eta: str) -> str:
    return INV_LINK[link].format(eta)


@dataclass(frozen=True)
class Lik:
    """What a likelihood template gets: the code of mu (or eta), of each
    distributional parameter and of the response addition terms."""

    link: str
    eta: str
    aux: dict[str, str]
    trials: str | None = None


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
    cut = a.aux["thresholds"]
    if a.link == "logit":
        return f"dist.OrderedLogistic({a.eta}, {cut})"
    # probit: P(y <= k) = Phi(c_k - eta)
    return f"dist.Categorical(probs=ordinal_probs(jax.scipy.stats.norm.cdf, {a.eta}, {cut}))"


def _categorical(a: Lik) -> str:
    return f"dist.Categorical(logits={a.eta})"


#: family name -> likelihood code template ("dist.X(...)")
LIKELIHOODS: dict[str, Callable[[Lik], str]] = {
    "gaussian": _gaussian,
    "student": _student,
    "bernoulli": _bernoulli,
    "binomial": _binomial,
    "beta_binomial": _beta_binomial,
    "poisson": _poisson,
    "negbinomial": _negbinomial,
    "zero_inflated_poisson": _zip,
    "zero_inflated_negbinomial": _zinb,
    "hurdle_poisson": _hurdle_poisson,
    "gamma": _gamma,
    "lognormal": _lognormal,
    "beta": _beta,
    "exponential": _exponential,
    "weibull": _weibull,
    "cumulative": _cumulative,
    "categorical": _categorical,
}


#: helper code emitted into a generated model when it uses censoring, truncation or probit ordinal
HELPERS: dict[str, str] = {
    "cdf": '''
def cdf(d, y):
    """CDF of a distribution, including LogNormal (not provided by NumPyro): 0 below its support (at its lower end,
    for a continuous one) and 1 at its upper end or above, computed at a point inside, where a CDF's gradient at
    the end is NaN (log(0) in LogNormal's, 0 ** k in Weibull's: a truncation at lb = 0 had no finite gradient)."""
    low = getattr(d.support, "lower_bound", None)
    high = getattr(d.support, "upper_bound", None)
    discrete = d.support.is_discrete
    below = None if low is None else (y < low if discrete else y <= low)
    above = None if high is None else y >= high
    if below is not None or above is not None:
        inside = (low + high) / 2 if low is not None and high is not None else (low + 1 if low is not None else high - 1)
        out = (below if below is not None else False) | (above if above is not None else False)
        y = jnp.where(out, inside, y)
    if isinstance(d, dist.LogNormal):
        p = jax.scipy.stats.norm.cdf((jnp.log(y) - d.base_dist.loc) / d.base_dist.scale)
    else:
        p = d.cdf(y)
    if below is not None:
        p = jnp.where(below, 0.0, p)
    if above is not None:
        p = jnp.where(above, 1.0, p)
    return p


def log_clipped(p):
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
        return self.base.sample(key, sample_shape)  # a new observation, uncensored (as brms predicts)

    @property
    def mean(self):
        return self.base.mean

    def log_prob(self, y):
        step = 1.0 if self.discrete else 0.0
        exact = self.base.log_prob(y)
        left = log_clipped(cdf(self.base, y))
        right = log_clipped(1.0 - cdf(self.base, y - step))
        interval = log_clipped(cdf(self.base, self.upper) - cdf(self.base, y - step))
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

    def _inside(self, x):
        ok = jnp.ones(jnp.shape(x), dtype=bool)
        if self.low is not None:
            ok &= x >= self.low
        if self.high is not None:
            ok &= x <= self.high
        return ok

    def sample(self, key, sample_shape=()):
        """Draws inside the bounds: 64 proposals from the base per draw, the first inside kept (when
        none is, the draw is clipped: the bounds then hold almost none of the base's mass)."""
        xs = self.base.sample(key, (64,) + tuple(sample_shape))
        ok = self._inside(xs)
        first = jnp.argmax(ok, axis=0)
        x = jnp.take_along_axis(xs, first[None], axis=0)[0]
        if self.discrete:  # (a count's bounds between integers: the integers within)
            return jnp.clip(x, None if self.low is None else jnp.ceil(self.low),
                            None if self.high is None else jnp.floor(self.high))
        return jnp.clip(x, self.low, self.high)

    @property
    def mean(self):
        """The mean of the truncated distribution, by Monte Carlo over 4096 draws with a fixed key."""
        xs = self.sample(jax.random.PRNGKey(0), (4096,))
        return jnp.mean(xs, axis=0)

    def log_prob(self, y):
        # a count's mass within [low, high]: F(floor(high)) - F(ceil(low) - 1) (lb = 0.5 keeps 1, 2, ... as lb = 1)
        high = None if self.high is None else (jnp.floor(self.high) if self.discrete else self.high)
        low = None if self.low is None else (jnp.ceil(self.low) - 1.0 if self.discrete else self.low)
        upper = 1.0 if high is None else cdf(self.base, high)
        lower = 0.0 if low is None else cdf(self.base, low)
        return self.base.log_prob(y) - log_clipped(upper - lower)
''',
    "CorrelatedNormal": '''
class CorrelatedNormal(dist.Distribution):
    """n rows, each multivariate normal with mean loc and covariance T T' (T = diag(sd) L, shared by all
    rows): one K x K inverse for all rows (NumPyro's batched MultivariateNormal solves n small systems,
    about 6x slower on CPU)."""

    support = dist.constraints.independent(dist.constraints.real, 2)

    def __init__(self, loc, scale_tril, n):
        self.loc, self.scale_tril, self.n = loc, scale_tril, n
        super().__init__(batch_shape=(), event_shape=(n, scale_tril.shape[-1]))

    def sample(self, key, sample_shape=()):
        z = jax.random.normal(key, tuple(sample_shape) + self.event_shape)
        return self.loc + z @ self.scale_tril.T

    def log_prob(self, value):
        K = self.scale_tril.shape[-1]
        inv = jax.scipy.linalg.solve_triangular(self.scale_tril, jnp.eye(K), lower=True)
        w = (value - self.loc) @ inv.T
        log_det = jnp.sum(jnp.log(jnp.diag(self.scale_tril)))
        return -0.5 * jnp.sum(w**2, axis=(-2, -1)) - self.n * (log_det + 0.5 * K * jnp.log(2 * jnp.pi))
''',
    "mean_split": '''
def mean_split(first, rest):
    """Rows [first; rest] reflected by the Householder H that takes the first axis to the direction of the
    mean (1, ..., 1) / sqrt(J): H is orthogonal, so rows independent N(0, Sigma) stay so, and the mean of
    the result is first / sqrt(J) while the rest only move the levels around it."""
    w = jnp.concatenate([first[None], rest], axis=0)
    u = 1.0 / jnp.sqrt(w.shape[0])
    v = jnp.zeros(w.shape[0]).at[0].set(1.0) - u
    c = (w[0] - u * w.sum(0)) / (1.0 - u)
    return w - (v[:, None] * c if w.ndim == 2 else v * c)
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
    "LKJ": '''
class _CorrCholeskyTransform(dist.transforms.CorrCholeskyTransform):
    """NumPyro's CorrCholeskyTransform (the same map, Jacobian and inverse), written out element by element for
    a small matrix: elementwise operations XLA fuses, where the general form scatters into the triangle, takes
    cumulative products and pads (a leapfrog step 0.83-0.91 times as dear on radon, sleepstudy and Orthodont,
    the sampler compiled 0.1-0.5 s sooner: benchmarks/bench_lkj.py)."""

    def __call__(self, x):
        K = round((1 + (1 + 8 * x.shape[-1]) ** 0.5) / 2)
        eps = jnp.finfo(x.dtype).eps  # as NumPyro: tanh rounds to 1 from |x| ~ 8 in float32, a zero diagonal
        t = jnp.clip(jnp.tanh(x), -1 + eps, 1 - eps)
        one, zero = jnp.ones_like(t[..., 0]), jnp.zeros_like(t[..., 0])
        rows, at = [[one] + [zero] * (K - 1)], 0
        for i in range(1, K):
            row, left = [], one  # left: the squared length still free in row i
            for j in range(i):
                row.append(t[..., at] * jnp.sqrt(left))
                left = left * (1 - t[..., at] * t[..., at])
                at += 1
            rows.append(row + [jnp.sqrt(left)] + [zero] * (K - 1 - i))
        return jnp.stack([jnp.stack(r, axis=-1) for r in rows], axis=-2)

    def log_abs_det_jacobian(self, x, y, intermediates=None):
        K = round((1 + (1 + 8 * x.shape[-1]) ** 0.5) / 2)
        eps = jnp.finfo(x.dtype).eps
        t = jnp.clip(jnp.tanh(x), -1 + eps, 1 - eps)
        # as NumPyro: the tanh part from x (log(1 - tanh(x)^2), stable), the stick-breaking part from the clipped
        # values (0.5 log(1 - t^2) once per later element of the row)
        weight = []
        for i in range(1, K):
            weight += [0.5 * max(i - 1 - k, 0) for k in range(i)]
        tanh_part = jnp.sum(2 * (jnp.log(2.0) - x - jax.nn.softplus(-2 * x)), axis=-1)
        return tanh_part + jnp.sum(jnp.log1p(-t * t) * jnp.asarray(weight, dtype=x.dtype), axis=-1)


class _CorrCholesky(type(dist.constraints.corr_cholesky)):
    """The Cholesky factors of correlation matrices, mapped by the transform above."""


# registered once per process (the first generated model that needs it)
_corr_cholesky = getattr(dist.constraints, "_hbm_corr_cholesky_v1", None)
if _corr_cholesky is None:
    _corr_cholesky = _CorrCholesky()
    dist.transforms.biject_to.register(type(_corr_cholesky), lambda c: _CorrCholeskyTransform())
    dist.constraints._hbm_corr_cholesky_v1 = _corr_cholesky


class LKJ(dist.LKJCholesky):
    """LKJCholesky(K, eta): NumPyro's distribution, its unnormalized log density written out over the diagonal and
    its support mapped by the transform above."""

    support = _corr_cholesky

    def log_prob(self, value):
        K, eta = self.dimension, self.concentration
        unnormalized = sum((2 * eta - 2 + K - 1 - i) * jnp.log(value[..., i, i]) for i in range(1, K))
        alpha = eta + 0.5 * (K - 1)
        normalize = (0.5 * (K - 1) * jnp.log(jnp.pi) + jax.scipy.special.multigammaln(alpha - 0.5, K - 1)
                     - (K - 1) * jax.scipy.special.gammaln(alpha))
        return unnormalized - normalize
''',
    "ordinal_probs": '''
def ordinal_probs(cdf_fn, eta, cutpoints):
    """Category probabilities of a cumulative model: P(y <= k) = F(c_k - eta)."""
    c = cdf_fn(cutpoints - eta[..., None])
    c = jnp.concatenate([jnp.zeros_like(c[..., :1]), c, jnp.ones_like(c[..., :1])], axis=-1)
    return jnp.clip(jnp.diff(c, axis=-1), 1e-12, 1.0)
''',
}
