"""A finer term centered around its coarse factor's effects (hierarchical centering on the nesting:
instructors within departments, classes within schools): the lowering, the model it means, the fit and the
predictions."""
import arviz as az
import jax
import numpy as np
import pandas as pd
import pytest
from numpyro import handlers

import hbm_formula as hf


def _nested(seed: int, schools: int = 10, classes: int = 30, rows: int = 12, sd_school: float = 0.05) -> pd.DataFrame:
    """Classes within schools, informative classes (12 rows, class SD 0.6, residual SD 1) and a small school SD
    (InstEval's shape, smaller): ``auto`` centers the classes and keeps the schools non-centered."""
    rng = np.random.default_rng(seed)
    school = np.repeat(np.arange(schools), classes * rows)
    cls = np.repeat(np.arange(schools * classes), rows)
    df = pd.DataFrame({"school": [f"s{i}" for i in school], "cls": [f"c{i}" for i in cls],
                       "x": rng.normal(size=school.size)})
    df["y"] = (2.0 + 0.5 * df.x + rng.normal(0, sd_school, schools)[school]
               + rng.normal(0, 0.6, schools * classes)[cls] + rng.normal(0, 1.0, school.size))
    return df


FORMULA = "y ~ x + (1 | school) + (1 | cls)"


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    return _nested(1)


def _point(cm: hf.CompiledModel, seed: int) -> dict[str, jax.Array]:
    return {k: jax.numpy.asarray(v[0]) for k, v in cm.sample_prior(draws=1, seed=seed).items() if k in cm.latent_sites()}


def test_auto_centers_the_finer_term_around_the_coarse_effects(df: pd.DataFrame) -> None:
    cm = hf.compile(FORMULA, df)
    table = cm.parameterization()
    assert table.loc["cls", "chosen"] == "centered"
    assert table.loc["school", "chosen"] == "noncentered"
    assert "cls is nested in school: its levels are sampled around their school's" in table.loc["cls", "reason"]
    assert "up_cls" in cm.data and "in_school" in cm.data
    assert "r_school[up_cls]" in cm.code
    # the fitted nesting: each class's school
    coarse = next(b for b in cm.design.groups if b.factor == ("school",))
    fine = next(b for b in cm.design.groups if b.factor == ("cls",))
    np.testing.assert_array_equal(np.asarray(cm.data["up_cls"])[fine.g], coarse.g)


@pytest.mark.parametrize("school", ["noncentered", "centered"])
def test_the_model_it_means(df: pd.DataFrame, school: str) -> None:
    """At random points: each class coefficient's prior centres on its school's coefficient (the school
    centered: around the intercept) or on the intercept plus its school's effect (the school non-centered);
    the reported class effect is the coefficient less that centre, and the rows' predictor adds the intercept,
    the slope and both factors' effects."""
    cm = hf.compile(FORMULA, df, param={"cls": "centered", "school": school})
    fine = next(b for b in cm.design.groups if b.factor == ("cls",))
    coarse = next(b for b in cm.design.groups if b.factor == ("school",))
    up = np.asarray(cm.data["up_cls"])
    for seed in (1, 2, 3):
        point = _point(cm, seed)
        tr = handlers.trace(handlers.substitute(handlers.seed(cm.model, 0), point)).get_trace(**cm.data, predict=True)
        icept = float(tr["Intercept"]["value"])
        r_school, r_cls = np.asarray(tr["r_school"]["value"]), np.asarray(tr["r_cls"]["value"])
        coef = np.asarray(tr["coef_cls"]["value"])
        if school == "centered":
            assert "coef_school" in tr and "z_mean_cls" not in tr and "z_mean_school" not in tr
            np.testing.assert_allclose(np.asarray(tr["coef_school"]["fn"].mean), np.asarray(tr["Intercept_c"]["value"]),
                                       rtol=1e-5, atol=1e-5)
            centre = np.asarray(tr["coef_school"]["value"])[up]
        else:
            centre = np.asarray(tr["Intercept_c"]["value"]) + r_school[up]
        np.testing.assert_allclose(np.asarray(tr["coef_cls"]["fn"].mean), centre, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(r_cls, coef - centre, rtol=1e-5, atol=1e-5)
        eta = icept + float(tr["b"]["value"]) * df.x.to_numpy() + r_school[coarse.g] + r_cls[fine.g]
        np.testing.assert_allclose(np.asarray(tr["linpred:mu"]["value"]), eta, rtol=1e-4, atol=1e-4)
        assert np.isfinite(cm.log_density(point))


def test_explicit_choices(df: pd.DataFrame) -> None:
    """Asked for: a centered class term centres on its school's effect (schools non-centered) or coefficient
    (schools centered, around the intercept); non-centered classes do not."""
    cm = hf.compile(FORMULA, df, param={"cls": "centered", "school": "noncentered"})
    assert "up_cls" in cm.data and "r_school[up_cls]" in cm.code
    cm = hf.compile(FORMULA, df, param="centered")
    assert "up_cls" in cm.data and "coef_school[up_cls]" in cm.code
    assert "up_cls" not in hf.compile(FORMULA, df, param="noncentered").data
    assert "up_cls" not in hf.compile(FORMULA, df, param={"cls": "noncentered", "school": "centered"}).data
    # slopes on the coarse factor: no fold, no centring on it
    assert "up_cls" not in hf.compile("y ~ x + (1 + x | school) + (1 | cls)", df).data


def test_one_finer_term_per_predictor() -> None:
    """Two nestings in one predictor (classes in schools; shops in towns, crossed with them): the first finer
    term centres on its coarse factor, the second not; and ``auto`` never leaves a centered finer term beside
    its non-centered coarse factor unless it centres on it (the ridge rule)."""
    df = _nested(2)
    rng = np.random.default_rng(4)
    shop = rng.integers(0, 200, len(df))
    df = df.assign(shop=[f"p{i}" for i in shop], town=[f"t{i // 25}" for i in shop])
    df["y"] = df.y + rng.normal(0, 0.6, 200)[shop]
    formula = "y ~ x + (1 | school) + (1 | cls) + (1 | town) + (1 | shop)"
    cm = hf.compile(formula, df, param={"cls": "centered", "shop": "centered", "school": "noncentered",
                                        "town": "noncentered"})
    assert "up_cls" in cm.data and "up_shop" not in cm.data
    auto = hf.compile(formula, df)
    table = auto.parameterization()
    assert sum(k.startswith("up_") for k in auto.data) <= 1
    for fine, coarse in (("cls", "school"), ("shop", "town")):
        if table.loc[fine, "chosen"] == "centered" and table.loc[coarse, "chosen"] != "centered":
            assert f"up_{fine}" in auto.data, (fine, table)


@pytest.fixture(scope="module")
def fits(df: pd.DataFrame) -> dict[str, hf.Fit]:
    kw = dict(chains=2, warmup=300, draws=300, progress=False, seed=5)
    return {"auto": hf.fit(FORMULA, df, **kw), "noncentered": hf.fit(FORMULA, df, param="noncentered", **kw)}


def test_the_fit_agrees_with_the_non_centered_one(fits: dict[str, hf.Fit], df: pd.DataFrame) -> None:
    """The same posterior as the non-centered model's: population values, SDs and every class's and school's
    effect, within Monte Carlo error; the truth recovered."""
    nested, plain = fits["auto"], fits["noncentered"]
    assert "up_cls" in nested.model.data and "up_cls" not in plain.model.data
    names = ["Intercept", "b", "sd_school", "sd_cls", "sigma"]
    s_n, s_p = (az.summary(f.idata, var_names=names) for f in (nested, plain))
    assert float(s_n["r_hat"].max()) < 1.05
    for name in s_n.index:  # (b is "b[x]")
        se = np.hypot(s_n.loc[name, "mcse_mean"], s_p.loc[name, "mcse_mean"])
        assert abs(s_n.loc[name, "mean"] - s_p.loc[name, "mean"]) < 5 * se + 0.01, name
    assert abs(s_n.loc["Intercept", "mean"] - 2.0) < 0.2
    assert abs(s_n.loc["sd_cls", "mean"] - 0.6) < 0.1
    for site in ("r_cls", "r_school"):
        a = nested.idata.posterior[site].mean(("chain", "draw")).to_numpy()
        b = plain.idata.posterior[site].mean(("chain", "draw")).to_numpy()
        assert np.corrcoef(a, b)[0, 1] > 0.98, site
        assert np.abs(a - b).max() < 0.1, site
    # the centred model mixes the classes better: their min bulk ESS at least the non-centered one's
    ess = {k: float(az.ess(f.idata, var_names=["r_cls"])["r_cls"].min()) for k, f in fits.items()}
    assert ess["auto"] >= 0.8 * ess["noncentered"], ess


def test_predictions_add_both_factors_effects(fits: dict[str, hf.Fit], df: pd.DataFrame) -> None:
    """Fitted rows, a new class in a fitted school, a fitted class in another school (the nesting broken) and a
    new school: the sums the model's predictor makes, from the stored effects."""
    fit = fits["auto"]
    post = fit.idata.posterior
    groups = {b.factor[0]: b for b in fit.model.design.groups}
    by_hand = (post["Intercept"].values[..., None] + post["b"].values[..., 0, None] * df.x.to_numpy()
               + post["r_school"].values[..., groups["school"].g] + post["r_cls"].values[..., groups["cls"].g])
    pred = fit.predict(kind="epred", summary=True)
    np.testing.assert_allclose(pred["mean"].to_numpy(), by_hand.mean(axis=(0, 1)), rtol=1e-4, atol=1e-4)
    lv = {k: list(b.levels) for k, b in groups.items()}
    new = pd.DataFrame({"school": ["s3", "s3", "s5", "snew"], "cls": ["new1", "c0", "c0", "c0"], "x": [0.0] * 4})
    out = fit.predict(new, kind="epred", new_levels="population", summary=True)
    r_s, r_c, icept = post["r_school"].values, post["r_cls"].values, post["Intercept"].values
    expect = [icept + r_s[..., lv["school"].index("s3")],
              icept + r_s[..., lv["school"].index("s3")] + r_c[..., lv["cls"].index("c0")],
              icept + r_s[..., lv["school"].index("s5")] + r_c[..., lv["cls"].index("c0")],
              icept + r_c[..., lv["cls"].index("c0")]]
    np.testing.assert_allclose(out["mean"].to_numpy(), [float(e.mean()) for e in expect], rtol=1e-4, atol=1e-4)
    # new levels drawn from the fitted distribution: finite, and spread by the SDs
    drawn = fit.predict(new, kind="epred", new_levels="gaussian").predictions
    values = np.asarray(drawn[next(iter(drawn.data_vars))])
    assert values.shape[-1] == 4 and np.isfinite(values).all()
    # a new class's draws spread by the class SD beside a fitted class's
    assert values[..., 0].std() > 2 * values[..., 1].std()


def test_not_for_an_ordinal_response() -> None:
    """An ordinal's thresholds stand in for the intercept and stay in the likelihood: centred on the schools, the
    thresholds, classes and school offsets could all shift together for free (a review: min bulk ESS 8-55)."""
    df = _nested(6)
    df["y"] = np.digitize(df.y, np.quantile(df.y, [0.25, 0.5, 0.75])) + 1
    cm = hf.compile(FORMULA, df, family="cumulative", param={"cls": "centered", "school": "noncentered"})
    assert "up_cls" not in cm.data and "r_school[up_cls]" not in cm.code


@pytest.mark.parametrize("param", ["centered", {"cls": "centered", "school": "noncentered"}])
def test_a_fit_with_asked_parameterizations_saves_and_loads(df: pd.DataFrame, tmp_path, param) -> None:
    """The file keeps what was asked for each term (it rebuilt every term as auto: a stray '# auto:' comment made
    the stored and rebuilt code differ, and loading failed)."""
    fit = hf.fit(FORMULA, df, param=param, chains=1, warmup=30, draws=20, progress=False)
    fit.save(tmp_path / "f.nc")
    back = hf.load(tmp_path / "f.nc")
    assert back.model.code == fit.model.code
    np.testing.assert_allclose(back.predict(kind="epred", summary=True)["mean"].to_numpy(),
                               fit.predict(kind="epred", summary=True)["mean"].to_numpy(), rtol=1e-6)


def test_not_beside_a_centered_term_with_more_population_columns(df: pd.DataFrame) -> None:
    """``(1 + x | a)`` centered beside the pair takes the intercept and the slope; the pair would have left it
    unsplit beside them, a ridge through the intercept (a review: Intercept bulk ESS 5-20, R-hat up to 3.2):
    then no pair, and the terms are as before (split around a's levels, or the classes non-centered)."""
    rng = np.random.default_rng(8)
    df = df.assign(a=[f"a{i}" for i in rng.integers(0, 8, len(df))])
    formula = "y ~ x + (1 + x | a) + (1 | school) + (1 | cls)"
    cm = hf.compile(formula, df, param="centered")
    assert "up_cls" not in cm.data and "z_mean_school" in cm.code and "z_mean_cls" in cm.code
    par = hf.compile(formula, df, param={"a": "centered", "cls": "auto", "school": "noncentered"}).parameterization()
    assert par.loc["cls", "chosen"] == "noncentered", par  # the ridge rule's veto holds
    # the same formula with a's slope alone: the pair takes the intercept again
    cm = hf.compile("y ~ x + (0 + x | a) + (1 | school) + (1 | cls)", df, param="centered")
    assert "up_cls" in cm.data


def _broods(seed: int, per: tuple[int, ...] = (1, 1, 1, 2, 2, 3), sd_loc: float = 0.4, sd_brood: float = 1.2,
            locations: int = 60) -> pd.DataFrame:
    """lme4's grouseticks' shape: tick counts of broods within locations, mostly one brood per location, a
    location SD small beside the broods' (Poisson, 4 counts per brood)."""
    rng = np.random.default_rng(seed)
    rows = []
    for loc in range(locations):
        a = rng.normal(0, sd_loc)
        for b in range(int(rng.choice(per))):
            c = a + rng.normal(0, sd_brood)
            rows += [(f"L{loc}", f"L{loc}B{b}", rng.poisson(np.exp(1.5 + c))) for _ in range(4)]
    return pd.DataFrame(rows, columns=["loc", "brood", "y"])


BROODS = "y ~ 1 + (1 | brood) + (1 | loc)"


@pytest.mark.parametrize(("seed", "formula"), [(0, BROODS), (1, "y ~ 1 + (1 | loc) + (1 | brood)"),
                                               (2, "y ~ 1 + (1 | loc/brood)")])
def test_a_coarse_term_is_judged_by_its_finer_levels(seed: int, formula: str) -> None:
    """A coarse term whose finer term is sampled around it sees the finer levels' estimates, not the rows: with
    one to three broods a location the locations' precision is about that of a brood's spread around them
    (1/sd_brood^2), far below their rows', so ``auto`` keeps them non-centered (centered, a funnel: min bulk ESS
    27-228, up to 296 divergent transitions, R-hat up to 1.11 over three seeds; non-centered 554-698, at most 7,
    1.006); with eight broods a location of small spread the locations stay centered. In either order of the
    terms (the measurement goes term by term: a review found the coarse-first order left both centered)."""
    par = hf.compile(formula, _broods(seed), family="poisson").parameterization()
    fine = "brood" if "/" not in formula else "loc:brood"
    assert par.loc[fine, "chosen"] == "centered" and par.loc["loc", "chosen"] == "noncentered", par
    assert f"the data it sees are {fine}'s levels" in par.loc["loc", "reason"]
    many = hf.compile(formula, _broods(seed, per=(8,), sd_loc=1.0, sd_brood=0.3, locations=40),
                      family="poisson").parameterization()
    assert (many["chosen"] == "centered").all(), many


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_fit_with_few_finer_levels_per_coarse_level_mixes() -> None:
    fit = hf.fit(BROODS, _broods(2), family="poisson", progress=False, seed=2)
    ess = az.ess(fit.idata, var_names=["Intercept", "sd_loc", "sd_brood"], method="bulk")
    assert min(float(ess[v].min()) for v in ess.data_vars) > 300  # 27 with the locations centered
    assert int(fit.idata.sample_stats["diverging"].sum()) <= 40  # 296 with the locations centered
    assert float(az.rhat(fit.idata, var_names=["sd_loc"])["sd_loc"]) < 1.02


@pytest.mark.parametrize("formula", ["y ~ x + (1 | school) + (1 | cls)", "y ~ x + (1 | cls) + (1 | school)"])
def test_an_informative_coarse_term_is_centered_in_either_order(formula: str) -> None:
    """Many classes a school and a large school SD: the schools are informative through their classes and stay
    centered whichever term is listed first (a review: classes first, the measurement put the school SD near 0,
    the schools were left non-centered and the fit took 63 leapfrog steps per draw against 15)."""
    rng = np.random.default_rng(51822)
    school = np.repeat(np.arange(22), rng.integers(8, 21, 22))
    cls = np.arange(school.size)
    rows = np.repeat(cls, 4)
    df = pd.DataFrame({"school": [f"s{i}" for i in school[rows]], "cls": [f"c{i}" for i in rows],
                       "x": rng.normal(size=rows.size)})
    df["y"] = (1.0 + 0.5 * df.x + rng.normal(0, 2.5, 22)[school[rows]] + rng.normal(0, 0.5, cls.size)[rows]
               + rng.normal(0, 1.0, rows.size))
    par = hf.compile(formula, df).parameterization()
    assert par.loc["school", "chosen"] == "centered", par
