"""Dose-response on real data with untreated controls (dose 0): the drc model library, exact gradients,
effective doses, and agreement with drc's fits (reproduced by benchmarks/drc/drc_reference.py and checked
there against 348 numbers drc and medrc print; stored in tests/data/drc_reference.json)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from numpyro.infer.util import log_density

import hbm_formula as hf

ROOT = Path(__file__).resolve().parents[1]
REF = json.loads((ROOT / "tests" / "data" / "drc_reference.json").read_text())["fits"]


def data(name: str) -> pd.DataFrame:
    return pd.read_csv(ROOT / "examples" / "data" / name)


def test_the_reported_zero_dose_gradient_is_finite() -> None:
    """Issue 12's reproduction: pow(x / e, b) at dose 0 with b < 1 gave a NaN gradient for e."""
    df = pd.DataFrame({"x": [0.0, 1, 2, 4] * 2, "y": [1, 0.6, 0.45, 0.3] * 2})
    cm = hf.compile("y ~ d / (1 + pow(x / e, b))\nb ~ 1, lb = 0\nd ~ 1\ne ~ 1, lb = 0", df,
                    priors={"Intercept_b": "normal(0,1)", "Intercept_d": "normal(1,1)", "Intercept_e": "normal(0,1)"})
    point = {"Intercept_b": jnp.array(-0.5), "Intercept_d": jnp.array(1.0), "Intercept_e": jnp.array(0.0),
             "sigma": jnp.array(0.1)}
    grad = jax.grad(lambda p: log_density(cm.model, (), cm.data, p)[0])(point)
    assert all(bool(jnp.isfinite(v)) for v in grad.values())


def test_a_dose_model_needs_no_parameter_lines_or_priors() -> None:
    df = data("ryegrass.csv")
    cm = hf.compile("rootl ~ LL4(conc, b, c, d, e)", df)
    # decreasing data: b > 0 as drc, e > 0; data-driven priors for every parameter
    assert cm.spec.bounds("b") == (0.0, None) and cm.spec.bounds("e") == (0.0, None)
    table = cm.priors_table()
    assert set(table.index) == {"Intercept_b", "Intercept_c", "Intercept_d", "Intercept_e", "sigma"}
    assert (table["source"] == "default").all()
    rising = df.assign(rootl=df.rootl.max() - df.rootl)
    assert hf.compile("rootl ~ LL4(conc, b, c, d, e)", rising).spec.bounds("b") == (None, 0.0)
    # W2.4 and LN.4 decrease for b < 0 (drc's convention)
    assert hf.compile("rootl ~ W2_4(conc, b, c, d, e)", df).spec.bounds("b") == (None, 0.0)
    # a number fixes a parameter (drc's fixed =): LL.4 with c = 0 is LL.3
    fixed = hf.compile("rootl ~ LL4(conc, b, 0, d, e)", df)
    assert "Intercept_c" not in fixed.priors_table().index


@pytest.mark.parametrize(
    "formula,message",
    [
        ("y ~ LL4(dose, b, c, d)", "LL4() is written LL4(dose, b, c, d, e)"),
        ("y ~ LL4(dose, b * 2, c, d, e)", "each argument is a parameter name or a number"),
    ],
)
def test_dose_model_errors(formula: str, message: str) -> None:
    with pytest.raises(hf.FormulaError, match=message.replace("(", r"\(").replace(")", r"\)")):
        hf.parse(formula)


def test_negative_doses_are_refused() -> None:
    df = pd.DataFrame({"y": [1.0, 0.8, 0.5, 0.2], "dose": [-1.0, 1.0, 2.0, 4.0]})
    with pytest.raises(hf.DataError, match="negative values"):
        hf.compile("y ~ LL4(dose, b, c, d, e)", df)


def _within_se(fit: hf.Fit, ref: dict, tol: float) -> None:
    post = fit.idata.posterior
    for k, v in ref["estimate"].items():
        draws = post[f"Intercept_{k}"].values.ravel()
        est = float(np.median(np.exp(draws) if fit.model.spec.bounds(k) == (0.0, None) else
                              (-np.exp(draws) if fit.model.spec.bounds(k) == (None, 0.0) else draws)))
        assert abs(est - v) < tol * ref["se"][k], f"{k}: {est:.4g} vs drc {v:.4g} (se {ref['se'][k]:.3g})"


def test_spinach_curve_with_a_slope_below_one_matches_drc() -> None:
    """Spinach curve 2 (drc's LL.4: b = 0.80 < 1, three untreated controls): NUTS with the defaults runs
    clean, and the posterior agrees with drc's least-squares fit within its standard errors."""
    df = data("drc_spinach.csv")
    curve = df[df.CURVE == 2]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no divergence, R-hat or ESS warning
        fit = hf.fit("SLOPE ~ LL4(DOSE, b, c, d, e)", curve, progress=False, seed=3)
    assert int(fit.idata.sample_stats["diverging"].sum()) < 0.01 * 4000
    assert float(fit.summary()["r_hat"].max()) < 1.01
    ref = REF["spinach"]["LL.4"]["per_curve"]["2"]
    _within_se(fit, ref, 1.5)
    ed = fit.ed([10, 50, 90]).loc["population"]
    drc = {p: ref["curves"]["2"]["ed"][p] for p in ("10", "50", "90")}
    assert abs(ed.loc[50.0, "median"] / drc["50"]["estimate"] - 1) < 0.1  # ED50 within 10%
    for p in ("10", "90"):  # the tails: within drc's standard error
        assert abs(ed.loc[float(p), "median"] - drc[p]["estimate"]) < drc[p]["se"], (p, ed.loc[float(p)], drc[p])


@pytest.mark.slow
@pytest.mark.parametrize("name,file,curve_col,resp,dose", [
    ("spinach", "drc_spinach.csv", "CURVE", "SLOPE", "DOSE"),
    ("S.alba", "s_alba.csv", "Herbicide", "DryMatter", "Dose"),
    ("G.aparine", "drc_g_aparine.csv", "treatment", "drymatter", "dose"),
])
def test_per_curve_fits_match_drc(name: str, file: str, curve_col: str, resp: str, dose: str) -> None:
    df = data(file)
    for curve, ref in REF[name]["LL.4"]["per_curve"].items():
        sub = df[df[curve_col].astype(str) == curve]
        fit = hf.fit(f"{resp} ~ LL4({dose}, b, c, d, e)", sub, progress=False, seed=1)
        assert int(fit.idata.sample_stats["diverging"].sum()) < 40 and float(fit.summary()["r_hat"].max()) < 1.01
        _within_se(fit, ref, 2.0)
        drc = ref["curves"][curve]["ed"]["50"]["estimate"]
        got = fit.ed(50).loc[("population", 50.0), "median"]
        assert abs(got / drc - 1) < max(0.1, 2 * ref["curves"][curve]["ed"]["50"]["se"] / drc), (name, curve)


@pytest.mark.slow
def test_hierarchical_spinach_matches_the_per_curve_fits() -> None:
    df = data("drc_spinach.csv")
    formula = "\n".join(["SLOPE ~ LL4(DOSE, b, c, d, e)"] + [f"{k} ~ 1 + (1 | CURVE)" for k in "bcde"])
    fit = hf.fit(formula, df, progress=False, seed=1)
    assert int(fit.idata.sample_stats["diverging"].sum()) < 40
    ed = fit.ed(50)
    for curve, ref in REF["spinach"]["LL.4"]["per_curve"].items():
        drc, se = ref["curves"][curve]["ed"]["50"]["estimate"], ref["curves"][curve]["ed"]["50"]["se"]
        got = ed.loc[(curve, 50.0), "median"]
        assert abs(got - drc) < max(0.1 * drc, 1.5 * se), (curve, got, drc, se)
