"""NUTS's start from the auto measurement's quick mode (``start.py``): the point written in each
parameterization's own coordinates reproduces the measured effects, its first mass matrix is on the posterior's
scale, and a default fit starting there reaches a far-off intercept on a warmup where NumPyro's uniform start
does not."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import DATA
from numpyro import handlers
from numpyro.infer.util import constrain_fn

import hbm_formula as hf
from hbm_formula import api, pilot, start
from hbm_formula.cli import main


def _measured(cm: api.CompiledModel) -> pilot.Information:
    info = api._pilot(cm.design, cm.spec, cm.params, measure_only=True)[1]
    assert info is not None and info.population_curvature
    return info


def _deterministic(cm: api.CompiledModel, point: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The model's sites (r_<g>, Intercept, ...) at an unconstrained point."""
    values = constrain_fn(cm.model, (), cm.data, {k: np.asarray(v, np.float32) for k, v in point.items()})
    tr = handlers.trace(handlers.substitute(handlers.seed(cm.model, 0), data=values)).get_trace(**cm.data)
    return {k: np.asarray(s["value"]) for k, s in tr.items() if s["type"] in ("sample", "deterministic")}


@pytest.mark.parametrize("param", ["noncentered", "centered", {"county": "centered", "floor": "noncentered"}])
def test_the_point_reproduces_the_measured_effects_in_every_parameterization(radon: pd.DataFrame,
                                                                             param: object) -> None:
    """Whatever the lowering (offsets z, level coefficients around the population values, a term's mean sampled
    apart beside a centered one), the model's group effects at the point are the measurement's, their intercept
    column's mean moved into the Intercept, and the SDs and sigma are the measured ones."""
    data = radon.assign(floor=radon["floor"].astype(str))
    f = "log_radon ~ 1 + (1 | county) + (1 | floor)"
    cm = hf.compile(f, data, param=param)
    info = _measured(cm)
    point, mass, _ = start.pilot_point(cm, info)
    at = _deterministic(cm, point)
    prior_icept = pilot.prior_point({"Intercept_c": np.zeros(())}, cm.params, cm.design)["Intercept_c"]
    shift = 0.0
    for b in cm.design.groups:
        table = info.tables[b.number].reshape(-1)
        np.testing.assert_allclose(at[f"r_{b.label}"], table - table.mean(), atol=2e-4)
        shift += table.mean()
        est = float(info.sd[b.number][0])
        floor = start.SD_FLOOR * float(pilot.prior_point({f"sd_{b.label}": np.zeros(())}, cm.params,
                                                         cm.design)[f"sd_{b.label}"])
        # the measured SD, or (where the measurement could not pin it) no less than a tenth of its prior median
        assert float(at[f"sd_{b.label}"]) == pytest.approx(est, rel=1e-4) or (
            float(info.se_log_sd[b.number][0]) > start.SD_RELIABLE
            and float(at[f"sd_{b.label}"]) == pytest.approx(max(est, floor), rel=1e-4))
    assert float(at["Intercept"]) == pytest.approx(float(prior_icept) + shift, abs=2e-4)
    assert float(at["sigma"]) == pytest.approx(float(np.exp(info.log_aux["sigma"])), rel=1e-4)
    assert all(np.all(np.isfinite(v)) and np.all(v > 0) for v in mass.values())


def test_the_first_mass_matrix_is_on_the_posteriors_scale(radon: pd.DataFrame) -> None:
    """Against a long default fit: each population-level and SD coordinate's first variance is within a factor of 10
    of its posterior variance (NumPyro's identity is off by up to 2,000 here: log sigma's is 5e-4)."""
    f = "log_radon ~ floor + (1 + floor | county)"
    cm = hf.compile(f, radon)
    point, mass, _ = start.pilot_point(cm, _measured(cm))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = hf.fit(f, radon, chains=2, warmup=500, draws=500, seed=3, progress=False)
    post = fit.idata.posterior
    ratios = {
        "sigma": mass["sigma"] / np.var(np.log(post["sigma"].values)),
        "Intercept_c": mass["Intercept_c"] / np.var(post["Intercept"].values
                                                    + float(cm.data["X_mean"].reshape(-1)[0]) * post["b"].values[..., 0]),
        "b": mass["b"].reshape(-1)[0] / np.var(post["b"].values[..., 0]),
        "sd_county": mass["sd_county"][0] / np.var(np.log(post["sd_county"].values[..., 0])),
    }
    assert all(0.1 < r < 10 for r in ratios.values()), ratios
    assert 1.0 / mass["sigma"] > 100  # the identity would have been 2,000 times too wide


def test_a_default_fit_reaches_a_far_intercept_on_a_short_warmup() -> None:
    """A response near 100 (intercept far from NumPyro's uniform(-2, 2) start), 30 warmup iterations: from the
    measurement's quick mode every chain is at the intercept; from the uniform start (init="uniform") some chain
    is still on its way (here chains at 23 and 7 on 20,000 rows)."""
    rng = np.random.default_rng(7)
    n, g = 4000, 100
    gi = rng.integers(0, g, n)
    x = rng.normal(size=n)
    y = 10 * (5 + 0.3 * x + rng.normal(0, 0.5, g)[gi] + rng.normal(0, 1, n)) + 50
    df = pd.DataFrame({"y": y, "x": x, "g": gi.astype(str)})
    truth = float(np.mean(y - 3 * x))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        default = hf.fit("y ~ x + (1 | g)", df, warmup=30, draws=100, seed=1, progress=False)
        uniform = hf.fit("y ~ x + (1 | g)", df, warmup=30, draws=100, seed=1, progress=False, init="uniform")
    chains = default.idata.posterior["Intercept"].values.mean(axis=1)
    assert np.all(np.abs(chains - truth) < 2.0), (chains, truth)
    assert default.raw.warmup_steps.mean() < uniform.raw.warmup_steps.mean()
    # a divergence after so short a warmup is named as its cause, not target_accept (the default start had some
    # before NUTS ran on the start's scaled coordinates; the uniform start has them)
    diverged = [f for f in (default, uniform) if f.raw.extra["diverging"].any()]
    assert diverged
    for f in diverged:
        assert "warmup=30 is too short" in f.warnings[0]
        assert not any("target_accept" in w for w in f.warnings)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_every_start_option_runs_and_a_wrong_one_is_named(sleepstudy: pd.DataFrame) -> None:
    f = "Reaction ~ Days + (Days | Subject)"
    opts = dict(chains=1, warmup=100, draws=50, progress=False)
    for init in ("pilot", "uniform"):
        fit = hf.fit(f, sleepstudy, param="noncentered", init=init, **opts)
        assert np.isfinite(fit.idata.posterior["b"].values).all()
    with pytest.raises(hf.HBMError, match="unknown init 'middle'"):
        hf.fit(f, sleepstudy, init="middle", **opts)
    with pytest.raises(hf.HBMError, match=r"^unknown init 'xxxxxxxxxx[x]*\.\.\.: use init='pilot'") as err:
        hf.fit(f, sleepstudy, init="x" * 1000, **opts)
    assert len(str(err.value)) < 120 and "\n" not in str(err.value)
    with pytest.raises(hf.HBMError, match="goes with method='nuts'"):
        hf.fit(f, sleepstudy, init="pilot", method="svi")
    for init in ("pilot", "uniform", "svi"):  # (a prior-only fit took any init and ignored it)
        with pytest.raises(hf.HBMError, match=f"init='{init}' is where NUTS starts; a prior-only fit"):
            hf.fit(f, sleepstudy, init=init, prior_only=True)
    assert main(["--prior-only", "--init", "pilot", "--no-out", str(DATA / "sleepstudy.csv"), f]) != 0


def _large_units(seed: int) -> pd.DataFrame:
    """30 groups of 60 rows; the predictor in units of 10,000 around 50,000 (an income): its coefficient's
    posterior SD is about 4e-6."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(30), 60)
    x = rng.normal(size=g.size)
    y = 10 + 1.5 * x + rng.normal(0, 2, 30)[g] + rng.normal(0, 3, g.size)
    return pd.DataFrame({"y": y, "x": 5e4 + 1e4 * x, "g": g.astype(str)})


def test_nuts_runs_on_the_starts_scale_so_a_predictor_in_large_units_costs_no_deep_trees() -> None:
    """NumPyro regularizes each adapted variance towards 1e-3 (as Stan); a coefficient whose posterior SD is 4e-6
    used to take every draw to the maximum tree depth (1,023 leapfrog steps). NUTS now runs on coordinates scaled
    by the start's variances, where that regularization is negligible; the draws are mapped back."""
    df = _large_units(3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = hf.fit("y ~ x + (1 | g)", df, chains=2, warmup=300, draws=200, seed=2, progress=False)
    steps = fit.idata.sample_stats["n_steps"].values
    assert steps.mean() < 60 and (steps >= 1023).mean() == 0, steps.mean()
    assert not any("maximum tree depth" in str(w.message) for w in caught)
    b = fit.idata.posterior["b"].values.ravel()
    ols = np.polyfit(df["x"], df["y"], 1)[0]  # the groups are balanced: b's posterior sits at the OLS slope
    assert abs(b.mean() - ols) < 3 * b.std() and 2e-6 < b.std() < 1e-5, (b.mean(), b.std(), ols)


def test_draws_at_the_maximum_tree_depth_are_named_with_the_cause() -> None:
    """The same model from NumPyro's uniform start (no measured scale) with max_tree_depth=3: most draws are cut
    at 7 leapfrog steps, and the fit says so, naming scales and the fixes."""
    with pytest.warns(UserWarning, match=r"of draws reached NUTS's maximum tree depth \(3: 7 leapfrog steps"
                                         r".*rescale \(scale\(x\), or other units\), compute in double precision "
                                         r"\(x64=True.*or raise max_tree_depth"):
        fit = hf.fit("y ~ x + (1 | g)", _large_units(4), chains=2, warmup=100, draws=100, seed=1, progress=False,
                     init="uniform", max_tree_depth=3)
    assert (fit.idata.sample_stats["n_steps"].values >= 7).mean() > 0.1


def test_a_model_without_group_terms_is_measured_for_its_start_and_scale() -> None:
    """A regression without group terms has no auto decision to measure for; NUTS's start measures it anyway
    (sigma and the population coefficients' curvature), so a predictor in units of 10,000 costs a few leapfrog
    steps per draw instead of 1,023, and the posterior is the least-squares fit's."""
    df = _large_units(5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = hf.fit("y ~ x", df, chains=2, warmup=300, draws=300, seed=3, progress=False)
    steps = fit.idata.sample_stats["n_steps"].values
    assert steps.mean() < 20 and not any("maximum tree depth" in str(w.message) for w in caught), steps.mean()
    b = fit.idata.posterior["b"].values.ravel()
    X = np.column_stack([np.ones(len(df)), df["x"] - df["x"].mean()])
    coef, res, *_ = np.linalg.lstsq(X, df["y"].to_numpy(), rcond=None)
    se = float(np.sqrt(res[0] / (len(df) - 2) * np.linalg.inv(X.T @ X)[1, 1]))
    assert abs(b.mean() - coef[1]) < 0.3 * se and 0.8 < b.std() / se < 1.25, (b.mean(), coef[1], b.std(), se)
    # init="uniform" keeps NumPyro's start and scale: the old cost (10 times the leapfrog steps and more)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        old = hf.fit("y ~ x", df, chains=2, warmup=300, draws=300, seed=3, progress=False, init="uniform")
    old_steps = old.idata.sample_stats["n_steps"].values
    assert old_steps.mean() > 10 * steps.mean() and old.raw.warmup_steps.mean() > 10 * fit.raw.warmup_steps.mean(), (
        old_steps.mean(), steps.mean(), old.raw.warmup_steps, fit.raw.warmup_steps)


def test_population_variances_are_on_the_sampled_coordinate_and_unmeasured_where_the_data_say_nothing() -> None:
    """An interval prior's coefficient is sampled as a logit: its first variance is the measured one times
    (du/db)^2 (1/50 at b = 0 for uniform(-100, 100)), not the measured one (2,500 times too wide: 5 times the
    warmup of NumPyro's start). And where the curvature, taken at the prior medians, says nothing (k in
    a * exp(-k t) at a = 0), the coordinate is unmeasured (the identity, chains 0.5 apart), not 2 prior SDs
    apart (which started log k at 42)."""
    rng = np.random.default_rng(15)
    df = pd.DataFrame({"x": rng.normal(0, 1, 200)})
    df["y"] = 1 + df["x"] + rng.normal(0, 1, 200)
    cm = hf.compile("y ~ x", df, priors={"b": "uniform(-100, 100)"})
    _, mass, _ = start.pilot_point(cm, _measured(cm))
    X = np.column_stack([np.ones(len(df)), df["x"] - df["x"].mean()])
    coef, res, *_ = np.linalg.lstsq(X, df["y"].to_numpy(), rcond=None)
    se2 = float(res[0] / (len(df) - 2) * np.linalg.inv(X.T @ X)[1, 1])
    assert 0.3 < float(np.ravel(mass["b"])[0]) / (se2 / 2500) < 3, (mass["b"], se2 / 2500)

    tm = np.linspace(0, 1, 80)
    decay = pd.DataFrame({"tm": tm, "y": 5 * np.exp(-3 * tm) + rng.normal(0, 0.1, 80)})
    cm = hf.compile("y ~ a * exp(-k * tm)\na ~ 1\nk ~ 1, lb = 0", decay,
                    priors={"Intercept_a": "normal(0, 10)", "Intercept_k": "normal(0, 10)"})
    _, mass, spread = start.pilot_point(cm, _measured(cm))
    assert float(mass["Intercept_k"]) == 1.0 and float(spread["Intercept_k"]) == start.UNMEASURED


def test_a_settled_residual_sd_keeps_its_measured_curvature() -> None:
    """The measurement's secant on log sigma: a step that no longer moves it (settled in float32) leaves the last
    curvature that was measured, so the start's variance for sigma is the posterior's scale, not the identity's 1
    (Chem97: 60,000 times its posterior variance, and warmup's first 100 iterations at ~800 leapfrog steps each,
    107,000 steps per chain against 31,000 after)."""
    curv: dict[str, float] = {}
    pilot._keep_curvature(curv, {}, {"sigma": (0.0, 10.0)})  # a first step: no secant yet
    assert curv == {}
    pilot._keep_curvature(curv, {"sigma": (0.0, 10.0)}, {"sigma": (0.5, 0.0)})
    assert curv == {"sigma": pytest.approx(-20.0)}
    pilot._keep_curvature(curv, {"sigma": (0.5, 0.0)}, {"sigma": (0.5, 0.0)})  # settled: kept
    assert curv == {"sigma": pytest.approx(-20.0)}
    pilot._keep_curvature(curv, {"sigma": (0.5, 0.0)}, {"sigma": (0.6, -3.0)})
    assert curv == {"sigma": pytest.approx(-30.0)}
    # end to end: every scalar distributional parameter measured has a curvature, and sigma's first variance
    # is within a factor of 3 of 1 / (2 n), a Gaussian's posterior variance of log sigma
    rng = np.random.default_rng(3)
    n = 20000
    g, x = rng.integers(0, 200, n), rng.normal(size=n)
    df = pd.DataFrame({"y": 5 + 0.3 * x + rng.normal(0, 0.5, 200)[g] + rng.normal(0, 1.3, n), "x": x, "g": g})
    cm = hf.compile("y ~ x + (1 | g)", df)
    assert set(cm.measurement.log_aux) <= set(cm.measurement.aux_curvature)
    assert 1 / 3 < float(start.pilot_point(cm, cm.measurement)[1]["sigma"]) * 2 * n < 3
