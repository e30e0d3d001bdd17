"""End to end: formula + data → NUTS → InferenceData, for every family of the
core compiler, with named coordinates, reproducible seeds and diagnostics."""

import warnings

import numpy as np
import pandas as pd
import pytest

import hbm_formula as hf

QUICK = dict(chains=2, warmup=300, draws=300, progress=False)


def test_radon_idata_has_groups_and_named_coords(radon: pd.DataFrame) -> None:
    fit = hf.fit("log_radon ~ floor + (1 + floor | county)", radon, **QUICK)
    idata = fit.idata
    assert set(idata.groups()) >= {"posterior", "sample_stats", "observed_data", "log_likelihood"}
    post = idata.posterior
    assert post.sizes["chain"] == 2 and post.sizes["draw"] == 300
    assert list(post["r_county"].coords["county"].values[:2]) == ["AITKIN", "ANOKA"]
    assert list(post["b"].coords["b_coef"].values) == ["floor"]
    assert list(post["sd_county"].coords["county__coef"].values) == ["Intercept", "floor"]
    assert idata.log_likelihood["y"].shape == (2, 300, 919)
    np.testing.assert_array_equal(idata.observed_data["y"].values, radon["log_radon"].to_numpy())
    assert idata.posterior.attrs["formula"] == "log_radon ~ 1 + floor + (1 + floor | county)"
    table = fit.summary()
    assert list(table.index) == [
        "Intercept", "b[floor]", "sd_county[Intercept]", "sd_county[floor]", "cor_county[Intercept,floor]", "sigma",
    ]
    assert list(table.columns) == ["mean", "sd", "hdi_3%", "hdi_97%", "r_hat", "ess_bulk", "ess_tail"]
    # basement homes have more radon: a clear, well-known effect
    assert table.loc["b[floor]", "hdi_97%"] < -0.4
    # Intercept is reported on the raw (uncentered) scale: the mean of basement homes
    assert abs(table.loc["Intercept", "mean"] - 1.46) < 0.1


@pytest.mark.filterwarnings("ignore:SVI did not converge")
@pytest.mark.parametrize("name", ["b", "obs"])  # a coefficient site; the observations dimension
def test_a_grouping_factor_named_like_a_variable_fits(rng: np.random.Generator, name: str) -> None:
    """A factor ``b`` beside the coefficients ``b`` (or ``sigma``, ``obs``): its dimension is renamed
    ``<name>_level`` instead of failing to build the InferenceData."""
    g = np.repeat(np.arange(6), 5)
    df = pd.DataFrame({"y": rng.normal(size=g.size) + g * 0.3, "x": rng.normal(size=g.size), name: g})
    fit = hf.fit(f"y ~ x + (1 | {name})", df, method="svi", steps=300, draws=50, progress=False)
    r = fit.idata.posterior[f"r_{name}"]
    assert r.dims[-1] == f"{name}_level" and list(r.coords[f"{name}_level"].values) == [str(k) for k in range(6)]
    assert fit.idata.posterior["b"].dims[-1] == "b_coef"


@pytest.mark.filterwarnings("ignore:SVI did not converge")
def test_a_grouping_factor_named_like_an_internal_dimension_fits(rng: np.random.Generator) -> None:
    """b's rotated levels (its mean sampled apart) live on a dimension b__rot; a factor named b__rot keeps
    its own levels on b__rot_level (a review: the InferenceData failed with conflicting sizes)."""
    n = 300
    df = pd.DataFrame({"y": rng.normal(size=n), "x": rng.normal(size=n), "a": rng.integers(0, 6, n),
                       "b": rng.integers(0, 5, n), "b__rot": rng.integers(0, 9, n)})
    fit = hf.fit("y ~ x + (1 | a) + (1 | b) + (1 | b__rot)", df, param="centered", method="svi", steps=300,
                 draws=50, progress=False)
    assert "rot_b" in fit.model.code
    assert fit.idata.posterior["r_b__rot"].sizes["b__rot_level"] == 9
    assert len(fit.model.coords["b__rot"]) == 4  # b's 5 levels less the mean's row


def test_same_seed_same_draws(grouped: pd.DataFrame) -> None:
    a = hf.fit("y ~ x + (1 | g)", grouped, seed=7, chains=2, warmup=100, draws=50, progress=False)
    b = hf.fit("y ~ x + (1 | g)", grouped, seed=7, chains=2, warmup=100, draws=50, progress=False)
    c = hf.fit("y ~ x + (1 | g)", grouped, seed=8, chains=2, warmup=100, draws=50, progress=False)
    np.testing.assert_array_equal(a.idata.posterior["b"].values, b.idata.posterior["b"].values)
    assert not np.array_equal(a.idata.posterior["b"].values, c.idata.posterior["b"].values)


def test_warmup_leapfrog_steps_are_counted_per_chain(grouped: pd.DataFrame) -> None:
    """fit.raw.warmup_steps: each chain's leapfrog steps in warmup (at least one per iteration), the same whatever
    follows the warmup (warmup ends inside the second 200-iteration chunk here), none without warmup."""
    opts = dict(seed=3, chains=2, warmup=250, progress=False)
    short = hf.fit("y ~ x + (1 | g)", grouped, draws=10, **opts).raw
    long = hf.fit("y ~ x + (1 | g)", grouped, draws=300, **opts).raw
    assert short.warmup_steps.shape == (2,)
    assert (short.warmup_steps >= 250).all() and (short.warmup_steps <= 250 * 2**10).all()
    np.testing.assert_array_equal(short.warmup_steps, long.warmup_steps)
    assert long.extra["num_steps"].shape == (2, 300)
    none = hf.fit("y ~ x + (1 | g)", grouped, seed=3, chains=2, warmup=0, draws=20, progress=False).raw
    np.testing.assert_array_equal(none.warmup_steps, [0, 0])


def test_most_transitions_divergent_after_a_too_short_warmup_says_so(grouped: pd.DataFrame) -> None:
    """warmup=0 from NumPyro's uniform start: NUTS samples with its untuned step size, every transition diverges
    and the chains never move; the warning names the warmup (not target_accept), and constant chains leak no numpy
    warning from R-hat."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = hf.fit("y ~ x + (1 | g)", grouped, seed=1, chains=2, warmup=0, draws=50, progress=False,
                     init="uniform")
    assert fit.raw.extra["diverging"].mean() > 0.25
    assert "warmup=0 is too short to tune NUTS's step size" in fit.warnings[0]
    assert not any("target_accept" in w for w in fit.warnings)
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]


@pytest.mark.parametrize(
    "formula,family,truth",
    [
        ("yb ~ x + (1 | g)", "bernoulli", 0.8),
        ("ys | trials(n) ~ x + (1 | g)", "binomial", 0.8),
        ("cbind(ys, n - ys) ~ x + (1 | g)", "binomial", 0.8),
        ("yc ~ x + (1 | g)", "poisson", 0.3),
    ],
)
def test_glm_families_recover_the_slope(grouped: pd.DataFrame, formula: str, family: str, truth: float) -> None:
    fit = hf.fit(formula, grouped, family=family, **QUICK)
    b = fit.idata.posterior["b"].sel(b_coef="x").values.ravel()
    lo, hi = np.quantile(b, [0.005, 0.995])
    assert lo < truth < hi
    assert fit.idata.log_likelihood["y"].shape[-1] == len(grouped)


def test_poisson_offset_shifts_the_intercept(rng: np.random.Generator) -> None:
    n = 400
    days = rng.integers(1, 30, n)
    y = rng.poisson(days * np.exp(0.5))
    df = pd.DataFrame({"y": y, "days": days})
    fit = hf.fit("y ~ 1 + offset(log(days))", df, family="poisson", **QUICK)
    icpt = fit.idata.posterior["Intercept"].values.ravel()
    assert abs(icpt.mean() - 0.5) < 0.05


def test_divergences_are_reported(rng: np.random.Generator) -> None:
    # a centered funnel with tiny groups and a tight step: divergences are expected
    df = pd.DataFrame({"y": rng.normal(size=16), "g": np.repeat(np.arange(8), 2)})
    with pytest.warns(UserWarning, match="diverged"):
        fit = hf.fit("y ~ 1 + (1 | g)", df, param="centered", priors={"sd": "half_cauchy(5)"},
                     chains=2, warmup=50, draws=200, target_accept=0.6, seed=3, progress=False)
    assert any("diverged" in w for w in fit.warnings)


def test_bad_sampler_settings(radon: pd.DataFrame) -> None:
    with pytest.raises(hf.HBMError, match="chains must be at least 1"):
        hf.fit("log_radon ~ floor", radon, chains=0)
    with pytest.raises(hf.HBMError, match="target_accept"):
        hf.fit("log_radon ~ floor", radon, target_accept=1.5)
    with pytest.raises(hf.HBMError, match="unknown method"):
        hf.fit("log_radon ~ floor", radon, method="gibbs")


def test_fit_save_and_load(radon: pd.DataFrame, tmp_path) -> None:
    fit = hf.fit("log_radon ~ floor + (1 | county)", radon, chains=2, warmup=100, draws=100, progress=False)
    path = tmp_path / "fit.nc"
    fit.save(str(path))
    back = hf.load(path)
    assert isinstance(back, hf.Fit) and back.model.code == fit.model.code
    np.testing.assert_allclose(back.idata.posterior["sigma"].values, fit.idata.posterior["sigma"].values)
    assert list(back.idata.posterior["r_county"].coords["county"].values) == list(fit.model.coords["county"])


def test_compiled_model_works_with_plain_numpyro(radon: pd.DataFrame) -> None:
    import jax
    from numpyro.infer import MCMC, NUTS

    cm = hf.compile("log_radon ~ floor + (1 | county)", radon)
    mcmc = MCMC(NUTS(cm.model), num_warmup=100, num_samples=100, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(0), **cm.data)
    assert mcmc.get_samples()["r_county"].shape == (100, 85)


def test_prior_only_model_samples_y(radon: pd.DataFrame) -> None:
    import jax
    from numpyro.infer import Predictive

    cm = hf.compile("log_radon ~ floor + (1 | county)", radon)
    data = {k: v for k, v in cm.data.items() if k != "y"}
    draws = Predictive(cm.model, num_samples=20)(jax.random.PRNGKey(0), **data)
    assert draws["y"].shape == (20, 919)


# ---------------------------------------------------------------- correctness against references
def test_sleepstudy_matches_lme4(sleepstudy: pd.DataFrame) -> None:
    """lme4 REML (Bates et al. 2015): fixed 251.405, 10.467; residual SD 25.592;
    subject SDs 24.741 (intercept), 5.922 (Days)."""
    fit = hf.fit("Reaction ~ Days + (Days | Subject)", sleepstudy, seed=1, progress=False)
    post = fit.idata.posterior
    assert abs(float(post["Intercept"].mean()) / 251.405 - 1) < 0.02
    assert abs(float(post["b"].sel(b_coef="Days").mean()) / 10.467 - 1) < 0.02
    assert abs(float(post["sigma"].mean()) / 25.592 - 1) < 0.05
    sd = post["sd_Subject"]
    assert abs(float(sd.sel(Subject__coef="Intercept").median()) / 24.741 - 1) < 0.15
    assert abs(float(sd.sel(Subject__coef="Days").median()) / 5.922 - 1) < 0.15
    assert fit.summary()["r_hat"].max() < 1.01


def test_radon_noncentered_has_no_divergences(radon: pd.DataFrame) -> None:
    fit = hf.fit("log_radon ~ floor + (1 + floor | county)", radon, seed=0, progress=False)
    assert int(fit.idata.sample_stats["diverging"].sum()) == 0
    assert fit.summary()["r_hat"].max() < 1.01
