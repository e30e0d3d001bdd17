"""Every family: parameter recovery on simulated grouped data, data checks,
distributional regression, response addition terms and prior predictive."""

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import hbm_formula as hf

B0, B1 = 0.4, 0.6  # true population intercept and slope on the link scale
QUICK = dict(chains=2, warmup=300, draws=300, progress=False, seed=1)


def _grouped(rng: np.random.Generator, G: int = 12, n: int = 30, sd: float = 0.3):
    g = np.repeat(np.arange(G), n)
    x = rng.normal(size=G * n)
    eta = B0 + B1 * x + rng.normal(0, sd, G)[g]
    return g, x, eta


def _inv_logit(v):
    return 1 / (1 + np.exp(-v))


def simulate(family: str, rng: np.random.Generator) -> pd.DataFrame:
    g, x, eta = _grouped(rng)
    n = eta.size
    df = pd.DataFrame({"g": g, "x": x, "n": 12})
    mu = _inv_logit(eta)
    y = {
        "gaussian": lambda: eta + rng.normal(0, 0.5, n),
        "student": lambda: eta + 0.5 * rng.standard_t(5, n),
        "bernoulli": lambda: rng.binomial(1, mu),
        "binomial": lambda: rng.binomial(12, mu),
        "beta_binomial": lambda: rng.binomial(12, rng.beta(mu * 8, (1 - mu) * 8)),
        "poisson": lambda: rng.poisson(np.exp(eta)),
        "negbinomial": lambda: rng.negative_binomial(4, 4 / (4 + np.exp(eta))),
        "zero_inflated_poisson": lambda: np.where(rng.uniform(size=n) < 0.25, 0, rng.poisson(np.exp(eta))),
        "zero_inflated_negbinomial": lambda: np.where(
            rng.uniform(size=n) < 0.25, 0, rng.negative_binomial(4, 4 / (4 + np.exp(eta)))
        ),
        "hurdle_poisson": lambda: _hurdle(rng, np.exp(eta), 0.3),
        "gamma": lambda: rng.gamma(5, np.exp(eta) / 5),
        "lognormal": lambda: np.exp(eta + rng.normal(0, 0.4, n)),
        "beta": lambda: np.clip(rng.beta(mu * 15, (1 - mu) * 15), 1e-6, 1 - 1e-6),
        "exponential": lambda: rng.exponential(np.exp(eta)),
        # brms: mu is the mean; numpy's weibull has scale 1, mean Gamma(1 + 1/k)
        "weibull": lambda: rng.weibull(2.5, n) * np.exp(eta) / 0.887264,
        "cumulative": lambda: np.digitize(eta - B0 + rng.logistic(size=n), [-1.0, 0.3, 1.5]),
        "categorical": lambda: np.array(["a", "b", "c"])[
            (np.stack([np.zeros(n), eta, -eta], 1) + rng.gumbel(size=(n, 3))).argmax(1)
        ],
    }[family]()
    df["y"] = y
    return df


def _hurdle(rng, rate, p0):
    out = np.zeros(rate.size, dtype=int)
    pos = rng.uniform(size=rate.size) >= p0
    for i in np.flatnonzero(pos):  # zero-truncated Poisson draws
        v = 0
        while v == 0:
            v = rng.poisson(rate[i])
        out[i] = v
    return out


FORMULA = {
    "binomial": "y | trials(n) ~ x + (1 | g)",
    "beta_binomial": "y | trials(n) ~ x + (1 | g)",
}
# (parameter, true value) pairs checked for coverage by the 90% interval
TRUTH = {
    "cumulative": [("b", B1)],
    "categorical": [("b_mu2", B1), ("Intercept_mu2", B0), ("b_mu3", -B1), ("Intercept_mu3", -B0)],
}


FAMILY_NAMES = sorted(hf.families.FAMILIES)


@pytest.fixture(scope="module")
def family_fits() -> dict[str, tuple[hf.Fit, list[tuple[str, float]]]]:
    """One fit per family on simulated data (seed = the family's place in the table)."""
    out = {}
    for i, family in enumerate(FAMILY_NAMES):
        df = simulate(family, np.random.default_rng(100 + i))
        fit = hf.fit(FORMULA.get(family, "y ~ x + (1 | g)"), df, family=family, **QUICK)
        out[family] = (fit, TRUTH.get(family, [("Intercept", B0), ("b", B1)]))
    return out


def _interval(fit: hf.Fit, name: str, prob: float) -> tuple[float, float]:
    draws = fit.idata.posterior[name].values.reshape(-1)
    lo, hi = np.quantile(draws, [(1 - prob) / 2, (1 + prob) / 2])
    return float(lo), float(hi)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_family_recovers_population_parameters(family: str, family_fits) -> None:
    """Each truth inside its 99% interval: a miss here is a bug, not bad luck (p = 0.01 per check)."""
    fit, truths = family_fits[family]
    for name, truth in truths:
        lo, hi = _interval(fit, name, 0.99)
        assert lo < truth < hi, f"{family}: {name} 99% interval [{lo:.3f}, {hi:.3f}] misses {truth}"
    if family == "cumulative":
        cut = fit.idata.posterior["Intercept"].mean(("chain", "draw")).values
        np.testing.assert_allclose(cut, [-1.0, 0.3, 1.5], atol=0.45)
        assert list(fit.idata.posterior["Intercept"].coords["Intercept_dim"].values) == ["0|1", "1|2", "2|3"]


def test_ninety_percent_intervals_cover_at_the_nominal_rate(family_fits) -> None:
    """Across all families, the 90% intervals cover the truth about 90% of the time.
    With ~36 checks, fewer than 80% covered has probability < 5% for calibrated intervals."""
    hits = [
        _interval(fit, name, 0.90)[0] < truth < _interval(fit, name, 0.90)[1]
        for fit, truths in family_fits.values()
        for name, truth in truths
    ]
    assert np.mean(hits) >= 0.8, f"90% intervals covered {sum(hits)}/{len(hits)}"


@pytest.mark.parametrize(
    "family,values,match",
    [
        ("poisson", [1, -1, 2, 0], "non-negative"),
        ("negbinomial", [1, 0.5, 2, 0], "whole numbers"),
        ("zero_inflated_poisson", [1, -3, 2, 0], "non-negative"),
        ("hurdle_poisson", [1, 2.2, 2, 0], "whole numbers"),
        ("beta", [0.2, 1.0, 0.5, 0.3], "strictly between 0 and 1"),
        ("beta", [0.2, 0.0, 0.5, 0.3], "strictly between 0 and 1"),
        ("gamma", [1.0, 0.0, 2.0, 3.0], "gamma response must be positive"),
        ("lognormal", [1.0, -1.0, 2.0, 3.0], "lognormal response must be positive"),
        ("weibull", [1.0, 0.0, 2.0, 3.0], "weibull response must be positive"),
        ("exponential", [1.0, -2.0, 2.0, 3.0], "exponential response must be positive"),
        ("bernoulli", [0, 1, 1, 3], "must be 0 or 1"),
        ("cumulative", [1, 2, 1, 2], "at least 3 categories"),
        ("categorical", [1, 1, 1, 1], "at least 2 categories"),
    ],
)
def test_invalid_data_per_family(family: str, values: list[float], match: str) -> None:
    df = pd.DataFrame({"y": values, "x": [0.1, 0.5, 0.2, 0.9]})
    with pytest.raises(hf.DataError, match=match):
        hf.compile("y ~ x", df, family=family)


def test_beta_binomial_checks_trials() -> None:
    df = pd.DataFrame({"y": [3, 9], "n": [5, 5], "x": [0.0, 1.0]})
    with pytest.raises(hf.DataError, match="exceed trials"):
        hf.compile("y | trials(n) ~ x", df, family="beta_binomial")


def test_censoring_codes_must_be_known() -> None:
    df = pd.DataFrame({"y": [1.0, 2.0, 3.0], "c": ["none", "upward", "left"]})
    with pytest.raises(hf.DataError, match="unknown censoring code 'upward'"):
        hf.compile("y | cens(c) ~ 1", df)


def test_interval_censoring_needs_upper_bound() -> None:
    df = pd.DataFrame({"y": [1.0, 2.0, 3.0], "c": [0, 2, 0]})
    with pytest.raises(hf.DataError, match="needs the upper bound"):
        hf.compile("y | cens(c) ~ 1", df)


@pytest.mark.parametrize(
    "family,link,ok",
    [
        ("poisson", "log", True), ("poisson", "logit", False), ("gamma", "inverse", True),
        ("beta", "logit", True), ("beta", "log", False), ("bernoulli", "cloglog", True),
        ("cumulative", "probit", True), ("cumulative", "log", False), ("gaussian", "softplus", False),
    ],
)
def test_family_link_pairs(family: str, link: str, ok: bool) -> None:
    if ok:
        assert hf.parse("y ~ x", family=family, link=link).family.link == link
    else:
        with pytest.raises(hf.FormulaError, match=f"does not take link '{link}'"):
            hf.parse("y ~ x", family=family, link=link)


def test_unknown_distributional_parameter() -> None:
    df = pd.DataFrame({"y": [1.0, 2.0, 3.0], "x": [0.0, 1.0, 2.0]})
    with pytest.raises(hf.FormulaError, match="family 'gaussian' has no parameter 'nu'; its parameters: sigma"):
        hf.compile("y ~ x", df, dpars={"nu": "~ x"})


# ---------------------------------------------------------------- distributional regression
def test_sigma_formula_with_group_terms_recovers_truth() -> None:
    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(15), 40)
    x = rng.normal(size=g.size)
    log_sigma = -0.3 + 0.5 * x + rng.normal(0, 0.3, 15)[g]
    df = pd.DataFrame({"g": g, "x": x, "y": 1 + 0.5 * x + rng.normal(size=g.size) * np.exp(log_sigma)})
    fit = hf.fit("y ~ x + (1 | g)", df, family="student", dpars={"sigma": "~ x + (1 | g)"}, **QUICK)
    post = fit.idata.posterior
    b = post["b_sigma"].values.ravel()
    assert np.quantile(b, 0.05) < 0.5 < np.quantile(b, 0.95)
    assert "sigma = jnp.exp(eta_sigma)" in fit.model.code
    assert "sd_g__sigma" in post and "nu" in post
    # the same model written brms-style in one multi-line formula
    same = hf.compile("y ~ x + (1 | g)\nsigma ~ x + (1 | g)", df, family="student")
    assert same.code == fit.model.code


def test_zero_inflation_formula_uses_logit_link(grouped: pd.DataFrame) -> None:
    cm = hf.compile("yc ~ x + (1 | g)", grouped, family="zero_inflated_poisson", dpars={"zi": "~ x"})
    assert "zi = jax.nn.sigmoid(eta_zi)" in cm.code
    assert "Intercept_zi" in cm.priors_table().index


# ---------------------------------------------------------------- response addition terms
def test_weights_equal_duplicated_rows() -> None:
    df = pd.DataFrame({"y": [1.0, 2.5, 2.0, 4.0], "x": [0.0, 1.0, 2.0, 3.0], "w": [1, 2, 1, 3]})
    dup = df.loc[df.index.repeat(df["w"])].reset_index(drop=True)
    weighted = hf.compile("y | weights(w) ~ x", df, priors={"b": "normal(0, 5)", "Intercept": "normal(0, 5)", "sigma": "exponential(1)"})
    repeated = hf.compile("y ~ x", dup, priors={"b": "normal(0, 5)", "Intercept": "normal(0, 5)", "sigma": "exponential(1)"})
    point = {"Intercept_c": jnp.array(2.0), "b": jnp.array(0.8), "sigma": jnp.array(0.7)}
    # centering differs between the two data sets, so compare at the same raw intercept
    xm_w, xm_r = float(weighted.data["X_mean"]), float(repeated.data["X_mean"])
    from scipy.stats import norm

    ic_w, ic_r = 1.0 + 0.8 * xm_w, 1.0 + 0.8 * xm_r
    lp_w = weighted.log_density(point | {"Intercept_c": jnp.array(ic_w)}) - norm(0, 5).logpdf(ic_w)
    lp_r = repeated.log_density(point | {"Intercept_c": jnp.array(ic_r)}) - norm(0, 5).logpdf(ic_r)
    np.testing.assert_allclose(lp_w, lp_r, rtol=1e-5)


def test_censored_normal_recovers_mean_and_sd() -> None:
    rng = np.random.default_rng(11)
    y = rng.normal(2.0, 1.0, 600)
    c = np.where(y > 3, "right", np.where(y < 0.8, "left", "none"))
    df = pd.DataFrame({"y": np.clip(y, 0.8, 3.0), "c": c})
    fit = hf.fit("y | cens(c) ~ 1", df, **QUICK)
    post = fit.idata.posterior
    assert abs(float(post["Intercept"].mean()) - 2.0) < 0.12
    assert abs(float(post["sigma"].mean()) - 1.0) < 0.1


def test_interval_censoring_log_density() -> None:
    from scipy.stats import norm

    df = pd.DataFrame({"y": [0.5, 1.0, 2.0, 0.0], "c": [0, 2, 1, -1], "hi": [0.5, 1.5, 2.0, 0.0]})
    cm = hf.compile("y | cens(c, hi) ~ 1", df, priors={"Intercept": "normal(0, 1)", "sigma": "exponential(1)"})
    lp = cm.log_density({"Intercept": jnp.array(0.7), "sigma": jnp.array(1.3)})
    d = norm(0.7, 1.3)
    expected = (
        d.logpdf(0.5) + np.log(d.cdf(1.5) - d.cdf(1.0)) + np.log(d.sf(2.0)) + d.logcdf(0.0)
        + norm(0, 1).logpdf(0.7) + np.log(1.0) - 1.3
    )
    np.testing.assert_allclose(lp, expected, rtol=1e-5)


def test_truncation_log_density() -> None:
    from scipy.stats import norm

    df = pd.DataFrame({"y": [0.6, 1.2, 3.0]})
    cm = hf.compile("y | trunc(lb = 0.5, ub = 4) ~ 1", df, priors={"Intercept": "normal(0, 1)", "sigma": "exponential(1)"})
    lp = cm.log_density({"Intercept": jnp.array(0.9), "sigma": jnp.array(1.1)})
    d = norm(0.9, 1.1)
    lik = np.sum(d.logpdf(df["y"]) - np.log(d.cdf(4) - d.cdf(0.5)))
    np.testing.assert_allclose(lp, lik + norm(0, 1).logpdf(0.9) - 1.1, rtol=1e-5)


@pytest.mark.parametrize("family", ["lognormal", "gamma", "weibull", "poisson"])
def test_truncation_at_the_support_end_is_none(family: str) -> None:
    """trunc(lb = 0) on a positive or count response removes no mass: the same log density as no truncation, and a
    finite gradient (a review: lognormal's CDF at 0 took log(0), and NUTS found no starting point)."""
    import jax
    from numpyro.infer.util import log_density

    rng = np.random.default_rng(3)
    x = rng.normal(size=30)
    y = rng.poisson(2.0, 30) if family == "poisson" else rng.gamma(2.0, 1.0, 30)
    df = pd.DataFrame({"y": y, "x": x})
    plain, cut = hf.compile("y ~ x", df, family=family), hf.compile("y | trunc(lb = 0) ~ x", df, family=family)
    point = {k: v[0] for k, v in plain.sample_prior(1, seed=1).items() if k in plain.latent_sites()}
    point |= {k: np.float32(1.5) for k in ("shape", "sigma") if k in point}  # (gamma(0.01, 0.01) draws 0 in float32)
    np.testing.assert_allclose(cut.log_density(point), plain.log_density(point), rtol=1e-5)
    grad = jax.grad(lambda p: log_density(cut.model, (), dict(cut.data), p)[0])(point)
    assert all(np.isfinite(np.asarray(g)).all() for g in grad.values()), grad


def test_count_truncation_bounds_between_integers() -> None:
    """A count truncated at lb = 0.5 keeps 1, 2, ... as lb = 1 does (a review: F(lb - 1) = F(-0.5) was 0, the
    truncation silently none), and ub = 4.5 keeps ..., 4 as ub = 4."""
    rng = np.random.default_rng(5)
    df = pd.DataFrame({"y": rng.integers(1, 5, 40), "x": rng.normal(size=40)})
    point = {"Intercept_c": np.float32(0.4), "Intercept": np.float32(0.4), "b": np.array([0.3], np.float32)}
    dens = {f: hf.compile(f, df, family="poisson").log_density(point)
            for f in ("y | trunc(lb = 0.5) ~ x", "y | trunc(lb = 1) ~ x", "y ~ x",
                      "y | trunc(lb = 0.5, ub = 4.5) ~ x", "y | trunc(lb = 1, ub = 4) ~ x")}
    assert dens["y | trunc(lb = 0.5) ~ x"] == pytest.approx(dens["y | trunc(lb = 1) ~ x"], rel=1e-6)
    assert dens["y | trunc(lb = 1) ~ x"] != pytest.approx(dens["y ~ x"], rel=1e-3)
    assert dens["y | trunc(lb = 0.5, ub = 4.5) ~ x"] == pytest.approx(dens["y | trunc(lb = 1, ub = 4) ~ x"], rel=1e-6)


def test_count_truncation_draws_are_counts_within() -> None:
    """A truncated count's draws (predictions) are whole numbers within the integer bounds: when no proposal fell
    within, the draw was clipped to the raw bound (0.5 for lb = 0.5; a third review)."""
    df = pd.DataFrame({"y": np.ones(40, int), "x": np.random.default_rng(6).normal(size=40)})
    y = np.asarray(hf.compile("y | trunc(lb = 0.5, ub = 6.5) ~ x", df, family="poisson").sample_prior(100)["y"])
    assert np.all(y == np.round(y)) and y.min() >= 1 and y.max() <= 6, np.unique(y)


def test_a_bound_columns_large_stand_in_is_kept() -> None:
    """A number far beyond the data is refused as a bound, but a column may hold a large stand-in for rows with no
    bound beside bounded rows (per-row truncation)."""
    rng = np.random.default_rng(7)
    df = pd.DataFrame({"y": np.minimum(rng.normal(size=30), 2.9), "x": rng.normal(size=30),
                       "u": np.where(np.arange(30) < 10, 3.0, 1e9)})
    assert "trunc_ub" in hf.compile("y | trunc(ub = u) ~ x", df).data
    with pytest.raises(hf.DataError, match="over a million times beyond the data"):
        hf.compile("y | trunc(ub = 1e9) ~ x", df)


def test_censoring_with_truncation_is_refused() -> None:
    df = pd.DataFrame({"y": [1.0, 2.0, 3.0, 4.0], "c": [0, 1, 0, -1], "x": [0.1, 0.2, 0.3, 0.4]})
    with pytest.raises(hf.FormulaError, match="censoring and truncation together are not supported"):
        hf.compile("y | trunc(lb = -3) + cens(c) ~ x", df)


def test_truncation_bounds_are_checked() -> None:
    with pytest.raises(hf.DataError, match="outside the trunc"):
        hf.compile("y | trunc(lb = 1) ~ 1", pd.DataFrame({"y": [0.5, 2.0, 3.0]}))


def test_known_standard_errors_meta_analysis() -> None:
    rng = np.random.default_rng(2)
    se = rng.uniform(0.05, 0.3, 40)
    df = pd.DataFrame({"eff": 0.3 + rng.normal(0, 0.15, 40) + rng.normal(0, se), "se": se, "study": np.arange(40)})
    fit = hf.fit("eff | se(se) ~ 1 + (1 | study)", df, **QUICK)
    assert "sigma" not in fit.idata.posterior  # se() alone: the known SEs are the residual SD
    assert "dist.Normal(eta, se)" in fit.model.code
    icpt = fit.idata.posterior["Intercept"].values.ravel()
    assert np.quantile(icpt, 0.05) < 0.3 < np.quantile(icpt, 0.95)
    with_sigma = hf.compile("eff | se(se, sigma = TRUE) ~ 1", df)
    assert "sigma = jnp.sqrt(jnp.square(sigma) + jnp.square(se))" in with_sigma.code


def test_addition_term_not_taken_by_family() -> None:
    df = pd.DataFrame({"y": [1, 2, 3], "s": [0.1, 0.2, 0.1]})
    with pytest.raises(hf.FormulaError, match="the poisson family does not take se"):
        hf.compile("y | se(s) ~ 1", df, family="poisson")


def test_poisson_demand_with_exposure_offset() -> None:
    """The headline: sales ~ price + offset(log(days_open)) + (1 + price | store)."""
    rng = np.random.default_rng(8)
    S, n = 20, 25
    store = np.repeat(np.arange(S), n)
    price = rng.normal(0, 1, S * n)
    days = rng.integers(5, 31, S * n)
    a = rng.normal(0, 0.3, S)
    b = rng.normal(0, 0.15, S)
    rate = np.exp(1.0 + a[store] + (-0.5 + b[store]) * price)
    df = pd.DataFrame({"sales": rng.poisson(days * rate), "price": price, "days_open": days, "store": store})
    fit = hf.fit("sales ~ price + offset(log(days_open)) + (1 + price | store)", df, family="poisson", **QUICK)
    post = fit.idata.posterior
    for name, truth in [("Intercept", 1.0), ("b", -0.5)]:
        lo, hi = np.quantile(post[name].values.ravel(), [0.05, 0.95])
        assert lo < truth < hi


# ---------------------------------------------------------------- priors
def test_prior_only_draws_follow_the_priors(radon: pd.DataFrame) -> None:
    fit = hf.fit("log_radon ~ floor + (1 | county)", radon, priors={"b": "normal(0, 2)", "sigma": "exponential(2)"},
                 prior_only=True, chains=1, draws=4000)
    prior = fit.idata.prior
    assert "posterior" not in fit.idata.groups()
    assert fit.idata.prior_predictive["y"].shape == (1, 4000, 919)
    assert abs(float(prior["b"].std()) - 2.0) < 0.1
    assert abs(float(prior["sigma"].mean()) - 0.5) < 0.05
    assert "b[floor]" in fit.summary().index


def test_prior_predictive_added_to_a_fit(grouped: pd.DataFrame) -> None:
    fit = hf.fit("y ~ x + (1 | g)", grouped, chains=2, warmup=100, draws=100, progress=False)
    fit.prior_predictive(draws=50)
    assert {"posterior", "prior", "prior_predictive"} <= set(fit.idata.groups())


def test_prior_by_group_and_coefficient(radon: pd.DataFrame) -> None:
    table = hf.default_priors(
        "log_radon ~ floor + (1 + floor | county) + (1 | county_id)",
        radon,
        priors={"sd": "half_normal(1)", "sd_county": "half_normal(2)", "sd_county__floor": "half_normal(3)"},
    )
    assert table.loc["sd_county__Intercept", "prior"] == "half_normal(2)"
    assert table.loc["sd_county__floor", "prior"] == "half_normal(3)"
    assert table.loc["sd_county_id__Intercept", "prior"] == "half_normal(1)"


def test_aux_parameter_priors(grouped: pd.DataFrame) -> None:
    cm = hf.compile("yc ~ x + (1 | g)", grouped, family="negbinomial", priors={"shape": "gamma(2, 0.5)"})
    assert "numpyro.sample('shape', dist.Gamma(*prior_shape))" in cm.code
    np.testing.assert_array_equal(cm.data["prior_shape"], [2.0, 0.5])
    with pytest.raises(hf.PriorError, match="lies between 0 and 1"):
        hf.compile("yc ~ x", grouped, family="zero_inflated_poisson", priors={"zi": "normal(0, 1)"})


def test_gradient_report_survives_an_invalid_prior_draw() -> None:
    """The divergence report traced the model at a prior draw: gamma(0.01, 0.01) draws a Weibull shape of 0 in
    float32, NumPyro refused the scale, and the fit ended in an internal error (a review: a Weibull fit whose
    transitions diverged); it now takes the sites' shapes abstractly: here nothing is non-finite, so no report."""
    from hbm_formula.diagnose import gradient_report

    rng = np.random.default_rng(0)
    x = rng.normal(size=60)
    df = pd.DataFrame({"y": rng.weibull(1.5, 60) * np.exp(0.2 * x), "x": x})
    assert gradient_report(hf.compile("y ~ x", df, family="weibull")) is None
