"""After the fit: prediction (new levels, re_formula, every family), posterior predictive, LOO and
compare, coefficients, hypotheses, conditional effects, pictures, and fit files that work in a fresh
process."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hbm_formula as hf
from hbm_formula.cli import main

QUICK = dict(chains=2, warmup=300, draws=300, progress=False, seed=1)


@pytest.fixture(scope="module")
def radon_fit() -> hf.Fit:
    df = pd.read_csv(Path(__file__).resolve().parents[1] / "examples" / "data" / "radon.csv")
    with warnings.catch_warnings():  # short chains: R-hat/ESS warnings are possible and beside the point here
        warnings.simplefilter("ignore")
        return hf.fit("log_radon ~ floor + (1 + floor | county)", df, **QUICK)


def _flat(fit: hf.Fit, name: str) -> np.ndarray:
    v = fit.idata.posterior[name].values
    return v.reshape((-1,) + v.shape[2:])


def test_predictions_for_fitted_counties_equal_the_posterior_by_hand(radon_fit: hf.Fit) -> None:
    new = pd.DataFrame({"floor": [0, 1, 1], "county": ["AITKIN", "HENNEPIN", "AITKIN"]})
    got = radon_fit.predict(new, kind="linpred").predictions["linpred"].values.reshape(-1, 3)
    levels = list(radon_fit.model.coords["county"])
    r = _flat(radon_fit, "r_county")
    j = [levels.index(c) for c in new.county]
    hand = (_flat(radon_fit, "Intercept")[:, None] + _flat(radon_fit, "b")[:, 0][:, None] * new.floor.values
            + r[:, j, 0] + r[:, j, 1] * new.floor.values)
    np.testing.assert_allclose(got, hand, rtol=1e-5, atol=1e-5)
    # gaussian family: E[y] is the linear predictor
    ep = radon_fit.predict(new, kind="epred").predictions["epred"].values.reshape(-1, 3)
    np.testing.assert_allclose(ep, hand, rtol=1e-5, atol=1e-5)


def test_new_county_gaussian_draws_follow_the_fitted_group_distribution(radon_fit: hf.Fit) -> None:
    new = pd.DataFrame({"floor": [0], "county": ["NOWHERE"]})
    with pytest.raises(hf.DataError, match="1 level.*NOWHERE"):
        radon_fit.predict(new)
    pred = radon_fit.predict(new, kind="linpred", new_levels="gaussian", seed=3)
    d = pred.predictions["linpred"].values.ravel()
    # by hand: Intercept + r_new with r_new ~ N(0, sd_Intercept^2) per draw
    sd = _flat(radon_fit, "sd_county")[:, 0]
    ic = _flat(radon_fit, "Intercept")
    expected_var = np.var(ic) + np.mean(sd**2)
    assert abs(np.var(d) / expected_var - 1) < 0.2
    table = radon_fit.predict(pd.concat([new, pd.DataFrame({"floor": [0] * 3, "county": ["AITKIN", "ANOKA", "BENTON"]})]),
                              kind="linpred", new_levels="gaussian", summary=True)
    widths = (table["q97.5"] - table["q2.5"]).to_numpy()
    fitted = radon_fit.predict(pd.DataFrame({"floor": 0, "county": radon_fit.model.coords["county"]}), kind="linpred",
                               summary=True)
    assert widths[0] > (fitted["q97.5"] - fitted["q2.5"]).max()  # wider than any fitted county's interval
    again = radon_fit.predict(new, kind="linpred", new_levels="gaussian", seed=3).predictions["linpred"].values.ravel()
    np.testing.assert_array_equal(d, again)  # seeded: reproducible


@pytest.mark.filterwarnings("ignore:SVI did not converge")
def test_new_levels_error_names_every_factor(rng: np.random.Generator) -> None:
    """The default new_levels='error' lists the new levels of every factor, not only the first found."""
    n = 200
    df = pd.DataFrame({"y": rng.normal(size=n), "a": rng.integers(0, 4, n), "b": rng.integers(0, 5, n)})
    fit = hf.fit("y ~ 1 + (1 | a) + (1 | b)", df, method="svi", steps=300, draws=20, progress=False)
    with pytest.raises(hf.DataError, match=r"1 level\(s\) of 'a' \(9\); 2 level\(s\) of 'b' \(7, 8\) the model"):
        fit.predict(pd.DataFrame({"a": [9, 1, 1], "b": [1, 7, 8]}))
    ok = fit.predict(pd.DataFrame({"a": [9], "b": [1]}), re_formula="~ (1 | b)")  # a left out: its levels free
    assert ok.predictions["y"].shape[-1] == 1


def test_population_new_levels_equal_no_group_effects(radon_fit: hf.Fit) -> None:
    new = pd.DataFrame({"floor": [0, 1], "county": ["NOWHERE", "AITKIN"]})
    pop = radon_fit.predict(new.iloc[:1], kind="epred", new_levels="population").predictions["epred"].values
    none = radon_fit.predict(new.iloc[:1], kind="epred", re_formula="~0").predictions["epred"].values
    np.testing.assert_allclose(pop, none, rtol=1e-6)
    # uncertainty and old_levels borrow fitted counties' effects
    for how in ("uncertainty", "old_levels"):
        t = radon_fit.predict(new, kind="epred", new_levels=how, summary=True)
        assert np.isfinite(t["mean"]).all()


def test_re_formula_keeps_only_named_terms(radon_fit: hf.Fit) -> None:
    new = pd.DataFrame({"floor": [1], "county": ["AITKIN"]})
    only_icept = radon_fit.predict(new, kind="linpred", re_formula="~ (1 | county)").predictions["linpred"].values.ravel()
    r = _flat(radon_fit, "r_county")[:, list(radon_fit.model.coords["county"]).index("AITKIN")]
    hand = _flat(radon_fit, "Intercept") + _flat(radon_fit, "b")[:, 0] + r[:, 0]
    np.testing.assert_allclose(only_icept, hand, rtol=1e-5, atol=1e-5)
    with pytest.raises(hf.HBMError, match="no grouping factor|does not have"):
        radon_fit.predict(new, re_formula="~ (1 | state)")


def test_response_draws_and_summary_table(radon_fit: hf.Fit) -> None:
    new = pd.DataFrame({"floor": [0, 1], "county": ["AITKIN", "AITKIN"], "extra": ["a", "b"]})
    t = radon_fit.predict(new, summary=True)
    assert list(t.columns) == ["floor", "county", "extra", "mean", "sd", "q2.5", "q97.5"]
    sigma = float(radon_fit.idata.posterior["sigma"].mean())
    assert t["sd"].min() > 0.9 * sigma  # response draws include the residual noise


def test_posterior_predictive_and_arviz_tools(radon_fit: hf.Fit, tmp_path: Path) -> None:
    import arviz as az

    radon_fit.posterior_predictive()
    pp = radon_fit.idata.posterior_predictive["y"]
    assert pp.shape == radon_fit.idata.posterior["sigma"].shape + (919,)
    assert pp.dims[-1] == radon_fit.idata.observed_data["y"].dims[-1]
    loo = az.loo(radon_fit.idata)
    assert np.isfinite(loo.elpd_loo)
    ax = az.plot_ppc(radon_fit.idata, num_pp_samples=20)
    assert ax is not None


def test_loo_compare_and_lazy_log_likelihood(radon_fit: hf.Fit) -> None:
    df = radon_fit.model.design.frame
    small = hf.fit("log_radon ~ floor + (1 | county)", df, log_lik=False, **QUICK)
    assert "log_likelihood" not in small.idata.groups()
    loo = small.loo()  # computed on demand, in chunks
    assert "log_likelihood" in small.idata.groups() and np.isfinite(loo.elpd_loo)
    table = hf.compare({"slopes": radon_fit, "intercepts": small})
    assert set(table.index) == {"slopes", "intercepts"} and abs(table["weight"].sum() - 1) < 1e-6


def test_log_likelihood_is_skipped_above_the_size_limit(monkeypatch: pytest.MonkeyPatch, radon_fit: hf.Fit) -> None:
    from hbm_formula import results

    monkeypatch.setattr(results, "LOG_LIK_MAX", 1000)
    fit = hf.fit("log_radon ~ floor", radon_fit.model.design.frame, chains=1, warmup=50, draws=50, progress=False)
    assert "log_likelihood" not in fit.idata.groups()
    assert any("log-likelihood" in n and "fit.loo()" in n for n in fit.notes)


def test_coefficients_r2_and_hypotheses(radon_fit: hf.Fit) -> None:
    fe = radon_fit.fixef()
    assert list(fe.index) == ["Intercept", "floor"] and list(fe.columns) == ["mean", "sd", "q2.5", "q97.5"]
    re = radon_fit.ranef("county")
    co = radon_fit.coef("county")
    row = ("county", "AITKIN", "floor")
    assert abs(co.loc[row, "mean"] - (re.loc[row, "mean"] + fe.loc["floor", "mean"])) < 1e-6
    r2 = radon_fit.bayes_r2()
    assert 0.1 < r2.loc["R2", "mean"] < 0.5
    h = radon_fit.hypothesis("floor < 0")
    assert h["post_prob"].iloc[0] > 0.99 and h["estimate"].iloc[0] == pytest.approx(fe.loc["floor", "mean"])
    h2 = radon_fit.hypothesis("exp(b_floor) * 2 > sigma")
    assert 0 <= h2["post_prob"].iloc[0] <= 1
    with pytest.raises(hf.HBMError, match="not a parameter.*did you mean 'floor'"):
        radon_fit.hypothesis("flor < 0")
    with pytest.raises(hf.FormulaError):
        radon_fit.hypothesis("__import__('os').system('true') < 0")


def test_conditional_effects_and_pictures(radon_fit: hf.Fit, tmp_path: Path) -> None:
    ce = radon_fit.conditional_effects("floor")
    assert list(ce.columns[:2]) == ["floor", "mean"] and len(ce) == 2  # floor is 0/1
    assert ce["mean"].iloc[0] > ce["mean"].iloc[1]
    for kind, label in (("trace", None), ("forest", "group effect (r_county)"), ("ppc", "log_radon"),
                        ("effects", "floor")):
        path = tmp_path / f"{kind}.png"
        fig = radon_fit.plot(kind, var="floor" if kind == "effects" else None, path=str(path))
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
        if label:
            assert label in [a.get_xlabel() for a in fig.axes]


def test_fit_file_predicts_identically_in_a_fresh_process(radon_fit: hf.Fit, tmp_path: Path) -> None:
    path = tmp_path / "radon.fit.nc"
    radon_fit.save(str(path))
    new = pd.DataFrame({"floor": [0, 1, 0], "county": ["AITKIN", "NOWHERE", "ANOKA"]})
    new.to_csv(tmp_path / "new.csv", index=False)
    here = radon_fit.predict(new, kind="response", new_levels="gaussian", seed=5, summary=True)
    script = (
        "import hbm_formula as hf, pandas as pd\n"
        f"f = hf.load({str(path)!r})\n"
        f"t = f.predict(pd.read_csv({str(tmp_path / 'new.csv')!r}), kind='response', new_levels='gaussian', seed=5,"
        " summary=True)\n"
        f"t.to_csv({str(tmp_path / 'out.csv')!r}, index=False)\n"
        "print(f.model.code == open(" + repr(str(tmp_path / "code.py")) + ").read())\n"
    )
    (tmp_path / "code.py").write_text(radon_fit.model.code)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"
    there = pd.read_csv(tmp_path / "out.csv")
    np.testing.assert_allclose(there[["mean", "sd", "q2.5", "q97.5"]].to_numpy(),
                               here[["mean", "sd", "q2.5", "q97.5"]].to_numpy(), rtol=1e-5)
    loaded = hf.load(str(path))
    pd.testing.assert_frame_equal(loaded.summary(), radon_fit.summary())


def test_fit_file_errors(tmp_path: Path, radon_fit: hf.Fit) -> None:
    import arviz as az

    plain = tmp_path / "plain.nc"
    radon_fit.idata.to_netcdf(plain)
    with pytest.raises(hf.HBMError, match="not an hbm_formula fit file"):
        hf.load(str(plain))
    with pytest.raises(hf.HBMError, match="no such fit file"):
        hf.load(str(tmp_path / "missing.nc"))
    path = tmp_path / "future.nc"
    radon_fit.save(str(path))
    idata = az.from_netcdf(path)
    idata.constant_data.attrs["hbm_formula_fit_format"] = 99
    idata.to_netcdf(tmp_path / "future2.nc")
    with pytest.raises(hf.HBMError, match="upgrade hbm_formula"):
        hf.load(str(tmp_path / "future2.nc"))


def test_cli_post_fit_commands(radon_fit: hf.Fit, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "radon.fit.nc"
    radon_fit.save(str(path))
    new = tmp_path / "new.csv"
    new.write_text("floor,county\n0,AITKIN\n1,NOWHERE\n")
    out = tmp_path / "pred.csv"
    assert main(["predict", str(path), str(new), "--kind", "epred", "--new-levels", "gaussian", "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert list(table.columns) == ["floor", "county", "mean", "sd", "q2.5", "q97.5"] and len(table) == 2
    assert main(["predict", str(path), str(new)]) == 2
    assert "NOWHERE" in capsys.readouterr().err
    assert main(["loo", str(path)]) == 0
    assert "elpd_loo" in capsys.readouterr().out
    assert main(["compare", str(path), str(path)]) == 0
    assert main(["plot", str(path), "--kind", "forest,effects", "--var", "floor", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "radon.fit_forest.png").exists() and (tmp_path / "radon.fit_effects.png").exists()
    # a --var that reaches no requested plot is refused, not silently replaced by the default
    assert main(["plot", str(path), "--kind", "forest", "--var", "nosuch", "--out", str(tmp_path / "p")]) == 2
    assert "not a grouping factor" in capsys.readouterr().err
    assert main(["plot", str(path), "--kind", "effects", "--var", "county", "--out", str(tmp_path / "p")]) == 2
    assert "applies to --kind forest" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()  # nothing created for a refused command


# ---------------------------------------------------------------- every family predicts
FAMILY_CASES = [
    ("y ~ x + (1 | g)", "gaussian", {}),
    ("yb ~ x + (1 | g)", "bernoulli", {}),
    ("ys | trials(n) ~ x + (1 | g)", "binomial", {}),
    ("yc ~ x + (1 | g)", "poisson", {}),
    ("yc ~ x + (1 | g)", "negbinomial", {}),
    ("yc ~ x", "zero_inflated_poisson", {}),
    ("yc ~ x", "hurdle_poisson", {}),
    ("pos ~ x", "gamma", {}),
    ("pos ~ x", "lognormal", {}),
    ("pos ~ x", "weibull", {}),
    ("yo ~ x", "cumulative", {}),
    ("y ~ x + (1 | g)", "student", {"dpars": {"sigma": "x"}}),
    ("pos | trunc(ub = 12) ~ x", "gaussian", {}),
    ("yc ~ x + offset(log(n))", "poisson", {}),
]


@pytest.mark.parametrize("formula,family,kw", FAMILY_CASES, ids=[f"{c[1]}:{c[0]}" for c in FAMILY_CASES])
def test_every_family_predicts(formula: str, family: str, kw: dict, grouped: pd.DataFrame) -> None:
    df = grouped.assign(pos=np.exp(grouped.y / 3), yo=pd.cut(grouped.y, [-9, -0.5, 0.5, 1.5, 9], labels=False))
    fit = hf.fit(formula, df, family=family, chains=1, warmup=150, draws=150, progress=False, seed=2, **kw)
    new = df.iloc[:5].copy()
    resp = fit.predict(new, kind="response", ndraws=100).predictions
    ep = fit.predict(new, kind="epred").predictions["epred"].values
    draws = next(iter(resp.data_vars.values())).values
    assert draws.shape[:2] == (1, 100) and np.isfinite(ep).all()
    if family == "cumulative":
        np.testing.assert_allclose(ep.sum(axis=-1), 1.0, rtol=1e-5)  # category probabilities
    elif "trunc" in formula:
        assert draws.max() <= 12.0 + 1e-6  # draws respect the truncation
    else:  # E[y] is the mean of the response draws (Monte Carlo, loose)
        many = fit.predict(new.iloc[:1], kind="response", seed=3).predictions
        mc = float(next(iter(many.data_vars.values())).values.mean())
        assert abs(mc - float(ep[..., 0].mean())) < 0.25 * (abs(float(ep[..., 0].mean())) + 1)


def test_new_data_use_the_training_transforms_and_levels() -> None:
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x": rng.normal(5, 2, 80), "f": rng.choice(list("abc"), 80)})
    df["y"] = 1 + 0.5 * (df.x - 5) / 2 + (df.f == "b") + rng.normal(0, 0.3, 80)
    fit = hf.fit("y ~ scale(x) + f", df, chains=1, warmup=200, draws=200, progress=False)
    at_mean = pd.DataFrame({"x": [df.x.mean()], "f": ["a"]})
    lin = fit.predict(at_mean, kind="linpred").predictions["linpred"].values.ravel()
    np.testing.assert_allclose(lin, fit.idata.posterior["Intercept"].values.ravel(), rtol=1e-4, atol=1e-4)
    with pytest.raises(hf.DataError, match="'f' has 1 level.*fitted with: z"):
        fit.predict(pd.DataFrame({"x": [1.0], "f": ["z"]}))
    with pytest.raises(hf.DataError, match="unknown column 'x'"):
        fit.predict(pd.DataFrame({"f": ["a"]}))


def test_dose_response_nl_parameters_predict() -> None:
    df = pd.read_csv(Path(__file__).resolve().parents[1] / "examples" / "data" / "ryegrass.csv")
    fit = hf.fit("rootl ~ LL4(conc, b, c, d, e)", df, chains=1, warmup=300, draws=300, progress=False)
    e = fit.predict(df.iloc[:2], kind="e").predictions["e"].values[..., 0].ravel()
    np.testing.assert_allclose(e, np.exp(fit.idata.posterior["Intercept_e"].values.ravel()), rtol=1e-5)


def test_categories_match_by_value_whatever_the_dtype_of_newdata() -> None:
    """Levels fitted as numbers and asked as text (or the reverse) are the same levels: never the reference
    level in silence, never a numeric slope; conditional effects of C(number) run over its levels."""
    rng = np.random.default_rng(1)
    h = np.repeat([1, 2, 3], 20)
    y = np.array([0.0, 5.0, 10.0])[h - 1] + rng.normal(0, 0.5, 60)
    fit = hf.fit("y ~ C(h)", pd.DataFrame({"y": y, "h": h}), chains=1, warmup=200, draws=200, progress=False)
    want = fit.predict(pd.DataFrame({"h": [1, 2, 3]}), kind="epred", summary=True)["mean"].to_numpy()
    np.testing.assert_allclose(want, [0, 5, 10], atol=0.5)
    for new in (["1", "2", "3"], pd.Categorical([1, 2, 3]), np.array([1, "2", 3], dtype=object)):
        got = fit.predict(pd.DataFrame({"h": new}), kind="epred", summary=True)["mean"].to_numpy()
        np.testing.assert_allclose(got, want, rtol=1e-6)
    with pytest.raises(hf.DataError, match="1 level.*not fitted with: 1.5"):
        fit.predict(pd.DataFrame({"h": [1.5]}))
    ce = fit.conditional_effects("h")
    assert ce["h"].tolist() == [1, 2, 3]
    np.testing.assert_allclose(ce["mean"].to_numpy(), want, atol=0.05)

    text = hf.fit("y ~ h", pd.DataFrame({"y": y, "h": h.astype(str)}), chains=1, warmup=200, draws=200, progress=False)
    got = text.predict(pd.DataFrame({"h": [1, 2, 3]}), kind="epred", summary=True)["mean"].to_numpy()
    np.testing.assert_allclose(got, [0, 5, 10], atol=0.5)  # categories, not a slope through 1, 2, 3
    with pytest.raises(hf.HBMError, match="is part of the response, not a predictor"):
        text.conditional_effects("y")


def test_integer_group_labels_read_back_as_floats_are_the_same_levels() -> None:
    """A group column fitted as integers and given as floats (1.0) is the fitted level, not a new one."""
    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(6), 15)
    df = pd.DataFrame({"y": rng.normal(0, 0.3, 6)[g] * 4 + rng.normal(size=g.size), "g": g})
    fit = hf.fit("y ~ 1 + (1 | g)", df, chains=1, warmup=150, draws=150, progress=False)
    as_int = fit.predict(pd.DataFrame({"g": [1, 4]}), kind="epred", summary=True)["mean"].to_numpy()
    as_float = fit.predict(pd.DataFrame({"g": [1.0, 4.0]}), kind="epred", new_levels="population",
                           summary=True)["mean"].to_numpy()
    np.testing.assert_allclose(as_float, as_int, rtol=1e-6)


def test_a_factor_named_with_a_slash_is_saved_and_prior_fits_refuse_predictions(tmp_path: Path) -> None:
    """netCDF refuses '/' in names: a backticked factor `a/b` is labelled a_b (the fit was lost at save).
    A prior-only fit has no posterior to predict from: a clear error, not an AttributeError."""
    rng = np.random.default_rng(4)
    df = pd.DataFrame({"a/b": np.repeat(np.arange(6), 4), "x": rng.normal(size=24)})
    df["y"] = df["x"] + rng.normal(size=24)
    fit = hf.fit("y ~ x + (1 | `a/b`)", df, chains=1, warmup=100, draws=50, progress=False)
    assert "sd_a_b" in fit.idata.posterior
    fit.save(tmp_path / "slash.fit.nc")
    back = hf.load(tmp_path / "slash.fit.nc")
    np.testing.assert_allclose(back.predict(df.iloc[:3], kind="epred", summary=True)["mean"],
                               fit.predict(df.iloc[:3], kind="epred", summary=True)["mean"], rtol=1e-5)
    prior = hf.fit("y ~ x + (1 | `a/b`)", df, prior_only=True, chains=1, draws=50, progress=False)
    with pytest.raises(hf.HBMError, match="prior draws only"):
        prior.predict(df.iloc[:2])
