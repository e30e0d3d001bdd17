"""Parameterization per group term: non-centered, centered, auto (and partially centered)."""

import warnings

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import hbm_formula as hf


def test_auto_centers_well_informed_groups(rng: np.random.Generator) -> None:
    g = np.repeat(np.arange(12), 80)  # 80 rows per group, noise small against the group SDs
    x = rng.normal(size=g.size)
    eff = rng.normal(0, [1.0, 0.5], size=(12, 2))
    df = pd.DataFrame({"g": g, "x": x, "y": eff[g, 0] + (0.3 + eff[g, 1]) * x + rng.normal(0, 0.5, g.size)})
    cm = hf.compile("y ~ x + (1 + x | g)", df, param="auto")
    row = cm.parameterization().loc["g"]
    assert row["chosen"] == "centered" and row["centered_levels"] == 12
    assert "# auto: 12 of 12 levels centered" in cm.code
    assert "coef_g = numpyro.sample('coef_g', CorrelatedNormal(pop_g," in cm.code


def test_auto_keeps_radon_noncentered(radon: pd.DataFrame) -> None:
    """Radon's large counties are informative at the typical floor-slope SD, but that SD is weakly
    identified (its posterior reaches toward zero), where a centered county would be a funnel."""
    cm = hf.compile("log_radon ~ floor + (1 + floor | county)", radon, param="auto")
    row = cm.parameterization().loc["county"]
    assert row["chosen"] == "noncentered" and "low plausible group SD" in row["reason"]


def test_auto_keeps_sparse_groups_noncentered(rng: np.random.Generator) -> None:
    g = np.repeat(np.arange(40), 2)  # two noisy observations per group, small group SD
    df = pd.DataFrame({"g": g, "y": rng.normal(0, 0.2, 40)[g] + rng.normal(0, 1.0, 80)})
    cm = hf.compile("y ~ 1 + (1 | g)", df, param="auto")
    assert cm.parameterization().loc["g", "chosen"] == "noncentered"
    assert "z_g = numpyro.sample('z_g'" in cm.code


def test_auto_splits_mixed_groups(rng: np.random.Generator) -> None:
    sizes = [200] * 4 + [1] * 30  # a few large groups and many tiny ones
    g = np.repeat(np.arange(len(sizes)), sizes)
    df = pd.DataFrame({"g": g, "y": rng.normal(0, 1.0, len(sizes))[g] + rng.normal(0, 2.0, g.size)})
    cm = hf.compile("y ~ 1 + (1 | g)", df, param="auto")
    row = cm.parameterization().loc["g"]
    assert row["chosen"] == "partially centered"
    centered = cm.centering.of(cm.design.groups[0])
    assert centered[:4].all() and not centered[4:].any()
    assert cm.coords["g__centered"] == ["0", "1", "2", "3"]


def test_auto_gives_a_factor_one_choice_when_levels_spread_over_the_middle_ground(rng: np.random.Generator) -> None:
    sizes = np.arange(1, 41)  # level sizes vary continuously: no clean split into two regimes
    g = np.repeat(np.arange(40), sizes)
    df = pd.DataFrame({"g": g, "y": rng.normal(0, 0.5, 40)[g] + rng.normal(0, 1.0, g.size)})
    cm = hf.compile("y ~ 1 + (1 | g)", df, param="auto")
    row = cm.parameterization().loc["g"]
    assert row["chosen"] in ("centered", "noncentered") and "one choice" in row["reason"]


def test_partially_centered_density_matches_noncentered_up_to_jacobian(rng: np.random.Generator) -> None:
    sizes = [50, 50, 1, 1, 1]
    g = np.repeat(np.arange(5), sizes)
    df = pd.DataFrame({"g": g, "y": rng.normal(size=g.size)})
    nc = hf.compile("y ~ 1 + (1 | g)", df)
    blk = nc.design.groups[0]
    from hbm_formula.api import _exec_code
    from hbm_formula.lower import lower
    from hbm_formula.parameterize import Centering

    low = lower(nc.spec, nc.design, nc.params, Centering({blk.number: np.array([True, True, False, False, False])}))
    model = _exec_code(low.code)
    z = jnp.asarray(rng.normal(size=5))
    sd = jnp.array(0.8)
    common = {"Intercept": jnp.array(0.1), "sd_g": sd, "sigma": jnp.array(1.2)}
    lp_nc = nc.log_density(common | {"z_g": z})
    from numpyro.infer.util import log_density

    # the centered levels are sampled as coefficients around the intercept (hierarchical centering)
    lp_part, _ = log_density(model, (), low.data, common | {"rc_g": z[:2] * sd + 0.1, "z_g": z[2:]})
    np.testing.assert_allclose(float(lp_part), lp_nc - 2 * float(jnp.log(sd)), rtol=1e-5)


def _householder(J: int) -> np.ndarray:
    """The reflection taking the first axis to (1, ..., 1) / sqrt(J), built as a matrix (what mean_split applies)."""
    v = np.eye(J)[0] - 1 / np.sqrt(J)
    return np.eye(J) - 2 * np.outer(v, v) / (v @ v)


@pytest.mark.parametrize("slope", [False, True])
def test_a_term_beside_an_absorbing_one_has_its_mean_sampled_apart(rng: np.random.Generator, slope: bool) -> None:
    """(1|a) + (1|b): b's levels are H w with w's first row (sqrt(J) x b's mean) non-centered and the other rows
    centered (or non-centered, as b is); a's levels centre on the Intercept plus b's mean. The same model: at the
    mapped point its density is that of b with one level non-centered and the rest centered (no split), up to
    the Jacobian of the map, and b's and a's effects come back unchanged."""
    a, b = np.meshgrid(np.arange(4), np.arange(5), indexing="ij")
    a, b = np.repeat(a.ravel(), 3), np.repeat(b.ravel(), 3)
    x = rng.normal(size=a.size)
    df = pd.DataFrame({"a": a, "b": b, "x": x, "y": rng.normal(size=a.size)})
    formula = "y ~ x + (1 + x | a) + (1 + x | b)" if slope else "y ~ x + (1 | a) + (1 | b)"
    cm = hf.compile(formula, df, param="centered")
    from numpyro import handlers
    from numpyro.infer.util import log_density

    from hbm_formula.api import _exec_code
    from hbm_formula.lower import lower
    from hbm_formula.parameterize import Centering

    ga, gb = cm.design.groups
    a_c = np.ones(4, bool)
    split_nc = lower(cm.spec, cm.design, cm.params, Centering({ga.number: a_c, gb.number: np.zeros(5, bool)}))
    ref = lower(cm.spec, cm.design, cm.params, Centering({ga.number: a_c, gb.number: np.arange(5) < 4}))
    assert "mean_split(" in cm.code and "rot_b" in cm.code and "loc_a = " in cm.code and "mean_split(" in split_nc.code
    assert "mean_split(" not in ref.code  # partially centered: not split
    # the term with most population columns absorbs them, the other is split whatever the order (a review:
    # (1|a) + (1 + x|b) left a's intercept unsplit beside b absorbing x, Intercept bulk ESS 41 against 913)
    for f in ("y ~ x + (1 | a) + (1 + x | b)", "y ~ x + (1 + x | b) + (1 | a)"):
        code = hf.compile(f, df, param="centered").code
        assert "z_mean_a" in code and "rot_a" in code and "loc_b = " in code and "rot_b" not in code, f
    # beside a non-centered owner nothing is split (measured worse there)
    assert "mean_split(" not in hf.compile(formula, df, param="noncentered").code
    K = 2 if slope else 1
    sd_a, sd_b = rng.uniform(0.5, 1.5, K), rng.uniform(0.5, 1.5, K)
    if slope:
        Lb = np.linalg.cholesky(np.array([[1.0, 0.3], [0.3, 1.0]]))
        T = np.diag(sd_b) @ Lb
        extra = {"L_a": jnp.asarray(np.eye(2)), "L_b": jnp.asarray(Lb)}
    else:
        sd_a, sd_b, T, extra = sd_a[0], sd_b[0], np.array([[sd_b[0]]]), {}
    r_b = rng.normal(size=(5, K)) @ T.T  # b's effects
    coef_a = rng.normal(size=(4, K)) + 0.3
    common = {"Intercept_c": jnp.array(0.1), "b": jnp.array(0.2), "sd_a": jnp.asarray(sd_a), "sd_b": jnp.asarray(sd_b),
              "sigma": jnp.array(1.1)} | extra
    sq = (lambda m: m[:, 0]) if not slope else (lambda m: m)
    Tinv = np.linalg.inv(T)
    ref_pt = common | {"coef_a": jnp.asarray(sq(coef_a)), "rc_b": jnp.asarray(sq(r_b[:4])),
                       "z_b": jnp.asarray(sq(r_b[4:] @ Tinv.T))}
    w = _householder(5) @ r_b
    split_pt = common | {"coef_a": jnp.asarray(sq(coef_a + r_b.mean(0))), "rot_b": jnp.asarray(sq(w[1:])),
                         "z_mean_b": jnp.asarray(Tinv @ w[0] if slope else w[0, 0] / sd_b)}
    nc_pt = {k: v for k, v in split_pt.items() if k != "rot_b"} | {"z_b": jnp.asarray(sq(w[1:] @ Tinv.T))}
    lp_ref, _ = log_density(_exec_code(ref.code), (), ref.data, ref_pt)
    lp_split, _ = log_density(_exec_code(cm.code), (), cm.lowered.data, split_pt)
    lp_nc, _ = log_density(_exec_code(split_nc.code), (), split_nc.data, nc_pt)
    log_det_T = float(np.log(np.abs(np.linalg.det(T))))
    # one row non-centered in both (a level there, the mean here): the densities agree exactly
    np.testing.assert_allclose(float(lp_split), float(lp_ref), rtol=1e-5)
    np.testing.assert_allclose(float(lp_nc), float(lp_ref) + 4 * log_det_T, rtol=1e-5)
    pop = np.array([0.1 - 0.2 * float(np.asarray(cm.data["X_mean"]).ravel()[0]), 0.2]) if slope else np.array([0.1])
    for code, data, pt in ((cm.code, cm.lowered.data, split_pt), (split_nc.code, split_nc.data, nc_pt)):
        tr = handlers.trace(handlers.substitute(_exec_code(code), data=pt)).get_trace(**data)
        np.testing.assert_allclose(np.asarray(tr["r_b"]["value"]).reshape(5, K), r_b, rtol=1e-4, atol=1e-5)
        # a's population values: with x absorbed, the intercept at x = 0 and the slope; else the centered intercept
        np.testing.assert_allclose(np.asarray(tr["r_a"]["value"]).reshape(4, K), coef_a - pop, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_centered_and_noncentered_posteriors_agree(sleepstudy: pd.DataFrame) -> None:
    fits = {p: hf.fit("Reaction ~ Days + (Days | Subject)", sleepstudy, param=p, seed=4, warmup=500, draws=500,
                      progress=False)
            for p in ("centered", "noncentered")}
    a, b = (fits[p].summary() for p in ("centered", "noncentered"))
    for name in ["Intercept", "b[Days]", "sd_Subject[Intercept]", "sd_Subject[Days]", "sigma"]:
        # within Monte Carlo error plus a little: both chains target the same posterior
        tol = 4 * np.hypot(a.loc[name, "sd"] / np.sqrt(a.loc[name, "ess_bulk"]), b.loc[name, "sd"] / np.sqrt(b.loc[name, "ess_bulk"]))
        assert abs(a.loc[name, "mean"] - b.loc[name, "mean"]) < tol, name


def test_param_per_grouping_factor(radon: pd.DataFrame) -> None:
    cm = hf.compile("log_radon ~ floor + (1 | county) + (1 | county_id)", radon,
                    param={"county": "centered", "county_id": "noncentered"})
    par = cm.parameterization()
    assert par.loc["county", "chosen"] == "centered" and par.loc["county_id", "chosen"] == "noncentered"


def test_auto_leaves_few_curves_with_several_parameters_non_centered() -> None:
    """drc's spinach: 5 curves, four parameters each. The per-term information ignores a curve's other
    parameters; centered, NUTS diverged on 450 of 4,000 transitions (sd of c reaches zero). auto must not
    center it, and must say why."""
    from conftest import DATA

    df = pd.read_csv(DATA / "drc_spinach.csv")
    cm = hf.compile("SLOPE ~ LL4(DOSE, b, c, d, e)\n" + "\n".join(f"{p} ~ 1 + (1 | CURVE)" for p in "bcde"), df)
    par = cm.parameterization()
    assert set(par["chosen"]) == {"noncentered"}, par
    assert all("fewer than 10" in r for r in par["reason"])


def _nested_frame(rng: np.random.Generator, nested: bool) -> pd.DataFrame:
    """120 data-rich lecturers (50 rows each, SD 1) and 12 departments with no effect of their own;
    nested: each lecturer in one department (InstEval's d in dept); else departments crossed with lecturers."""
    d = np.repeat(np.arange(120), 50)
    dept = d // 10 if nested else rng.integers(0, 12, d.size)
    y = 2.0 + rng.normal(0, 1.0, 120)[d] + rng.normal(0, 1.0, d.size)
    return pd.DataFrame({"d": d, "dept": dept, "y": y})


def test_auto_centers_no_term_nested_in_or_crossed_with_a_non_centered_one(rng: np.random.Generator) -> None:
    """InstEval's (1|s) + (1|d) + (1|dept): d nested in dept, s crossed with both. A centered term beside a
    non-centered one leaves the split of their sums to the priors: d and s centered, 576 leapfrog steps
    per draw and R-hat 3.3; s alone, 287 and 2.6; all non-centered, 55. Alone, the same lecturers are
    centered; a factor nested in a centered one stays as it is measured; one nested in a non-centered one
    is centered around its effects (no ridge: the data see its coefficients alone)."""
    alone = hf.compile("y ~ 1 + (1 | d)", _nested_frame(rng, True))
    assert alone.parameterization().loc["d", "chosen"] == "centered"  # 50 rows each, SD 1: informative
    for nested in (True, False):
        # crossed on a column the population lacks (no intercept): the rule holds
        formula = "y ~ 1 + (1 | d) + (1 | dept)" if nested else "y ~ 0 + (1 | d) + (1 | dept)"
        cm = hf.compile(formula, _nested_frame(rng, nested))
        par = cm.parameterization()
        assert par.loc["dept", "chosen"] == "noncentered"  # no department SD: a funnel if centered
        if nested:
            assert par.loc["d", "chosen"] == "centered", par
            assert "d is nested in dept: its levels are sampled around their dept's" in par.loc["d", "reason"], par
            assert "loc_d = Intercept + r_dept[up_d]" in cm.code, cm.code
        else:
            assert par.loc["d", "chosen"] == "noncentered" and "crossed with dept" in par.loc["d", "reason"], par
    # ... and where the non-centered term would absorb a column of its own (x), it is not split: the rule holds
    df = _nested_frame(rng, False).assign(x=lambda d: rng.normal(size=len(d)))
    par = hf.compile("y ~ x + (1 | d) + (1 + x | dept)", df).parameterization()
    assert par.loc["d", "chosen"] == "noncentered" and "crossed with dept" in par.loc["d", "reason"], par
    # ... and not for ID-linked terms, which neither absorb nor are split (a review: R-hat 1.17, min ESS 16)
    df = _nested_frame(rng, False)
    df["y"] += np.expm1(rng.normal(0, 0.5, 120))[df["d"]] * rng.normal(size=len(df))  # sigma varies by d too
    par = hf.compile("y ~ 1 + (1 | ID | d) + (1 | dept)\nsigma ~ 1 + (1 | ID | d)", df).parameterization()
    assert par.loc["dept", "chosen"] == "noncentered", par
    assert par.loc["d", "chosen"] == "noncentered" and "crossed with dept" in par.loc["d", "reason"], par
    # crossed on the Intercept: d centered absorbs it and dept's mean is sampled apart, in either order
    for formula in ("y ~ 1 + (1 | d) + (1 | dept)", "y ~ 1 + (1 | dept) + (1 | d)"):
        cm = hf.compile(formula, _nested_frame(rng, False))
        par = cm.parameterization()
        assert par.loc["d", "chosen"] == "centered" and par.loc["dept", "chosen"] == "noncentered", par
        assert "coef_d = numpyro.sample('coef_d', dist.Normal(loc_d" in cm.code and "z_mean_dept" in cm.code


def test_auto_ridge_rule_needs_a_shared_column_and_names_the_relation(rng: np.random.Generator) -> None:
    """Only terms that share a column add up in the likelihood; the same factor twice or an exact copy of
    it groups the rows the same way and is said so (not 'crossed')."""
    df = _nested_frame(rng, False).assign(x=lambda d: rng.normal(size=len(d)), dcopy=lambda d: d["d"] + 1000)
    slope = hf.compile("y ~ x + (1 | d) + (0 + x | dept)", df).parameterization()
    assert slope.loc["d", "chosen"] == "centered"  # an intercept and a slope: no common sum
    twice = hf.compile("y ~ 1 + (1 | d) + (1 | dcopy)", df).parameterization()
    assert set(twice["chosen"]) == {"noncentered"}, twice
    assert any("groups the rows as" in r for r in twice["reason"]), twice


def test_auto_does_not_center_one_row_levels_of_a_gaussian(rng: np.random.Generator) -> None:
    """One row per level: the effect and the residual are one number to the data; the quick mode reads a
    sharp curvature there (it was '200 of 200 levels centered', R-hat 1.27)."""
    u = np.arange(200)
    df = pd.DataFrame({"u": u, "x": rng.normal(size=200)}).assign(y=lambda d: d.x + rng.normal(0, 1, 200))
    par = hf.compile("y ~ x + (1 | u)", df).parameterization()
    assert par.loc["u", "chosen"] == "noncentered", par


def test_auto_measures_each_levels_curvature_exactly(rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    """The information per level and coefficient is the exact curvature of the log-likelihood: for a Gaussian
    with a varying intercept and slope it is n_j / sigma² and sum(x²) / sigma² over level j's rows, whatever
    the point it is taken at, so their ratio is the level's mean of x² (unequal levels and an unequal spread
    of x catch a wrong sum by level or a swapped column)."""
    from hbm_formula import parameterize

    sizes = np.array([5, 40, 12, 90, 3, 60])
    g = np.repeat(np.arange(sizes.size), sizes)
    x = rng.normal(size=g.size) * (1.0 + g)
    df = pd.DataFrame({"g": g, "x": x, "y": 1.0 + 0.5 * x + rng.normal(0, 1.0, 6)[g] + rng.normal(size=g.size)})
    seen = []
    original = parameterize.choose
    monkeypatch.setattr(parameterize, "choose", lambda design, info: seen.append(info) or original(design, info))
    hf.compile("y ~ x + (1 + x | g)", df, param="auto")
    (info,) = seen[-1].info.values()
    assert info.shape == (sizes.size, 2)
    mean_x2 = np.bincount(g, weights=x**2) / sizes
    np.testing.assert_allclose(info[:, 1] / info[:, 0], mean_x2, rtol=1e-4)
    # and the same sigma for every level: n_j / sigma² is proportional to n_j
    np.testing.assert_allclose(info[:, 0] / sizes, info[0, 0] / sizes[0], rtol=1e-4)


def test_auto_measures_a_beta_binomial_from_a_far_dispersion() -> None:
    """The quick mode starts a beta-binomial at its dispersion prior's median (phi 1, far off), where a level's
    curvature is nearly flat: unbounded Newton steps ran its effects off to 2,400 and then to NaN, and auto fell
    back to non-centered (3-16 times fewer effective draws here than centered). Each step is now bounded by
    2 prior scales of the group SD."""
    rng = np.random.default_rng(102)  # data on which the unbounded steps failed
    g = np.repeat(np.arange(12), 30)
    x = rng.normal(size=g.size)
    mu = 1 / (1 + np.exp(-(0.4 + 0.6 * x + rng.normal(0, 0.3, 12)[g])))
    df = pd.DataFrame({"g": g, "x": x, "n": 12, "y": rng.binomial(12, rng.beta(mu * 8, (1 - mu) * 8))})
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        cm = hf.compile("y | trials(n) ~ x + (1 | g)", df, family="beta_binomial", param="auto")
    assert cm.parameterization().loc["g", "chosen"] == "centered"
