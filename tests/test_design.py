"""Design: arrays, level names, and every kind of bad data as a clear DataError."""

import numpy as np
import pandas as pd
import pytest

import hbm_formula as hf
from hbm_formula.design import build_design


def design(formula: str, df: pd.DataFrame, **kw):  # noqa: ANN201
    return build_design(hf.parse(formula, **kw), df)


def test_group_levels_are_the_data_levels(radon: pd.DataFrame) -> None:
    d = design("log_radon ~ floor + (1 + floor | county)", radon)
    (blk,) = d.groups
    assert list(blk.levels[:2]) == ["AITKIN", "ANOKA"] and len(blk.levels) == 85
    assert list(blk.coef_names) == ["Intercept", "floor"]
    # every row's index points at its own county
    assert (np.array(blk.levels)[blk.g] == radon["county"].to_numpy()).all()


def test_population_design_is_centered_with_its_means_kept(radon: pd.DataFrame) -> None:
    d = design("log_radon ~ floor + uranium", radon)
    p = d.predictors["mu"]
    assert list(p.coef_names) == ["floor", "uranium"]
    np.testing.assert_allclose(p.X.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(p.X_mean, radon[["floor", "uranium"]].mean().to_numpy())


def test_categorical_terms_use_treatment_contrasts(cbpp: pd.DataFrame) -> None:
    d = design("cbind(incidence, size - incidence) ~ C(period) + (1 | herd)", cbpp, family="binomial")
    assert list(d.predictors["mu"].coef_names) == ["C(period)[T.2]", "C(period)[T.3]", "C(period)[T.4]"]
    np.testing.assert_array_equal(d.trials, cbpp["size"].to_numpy())
    np.testing.assert_array_equal(d.y, cbpp["incidence"].to_numpy())


def test_categorical_slopes_in_group_terms() -> None:
    df = pd.DataFrame({"y": np.arange(8.0), "t": list("abab" * 2), "g": list("ppqqrrss")})
    d = design("y ~ 1 + (0 + C(t) | g)", df)
    assert list(d.groups[0].coef_names) == ["C(t)[a]", "C(t)[b]"]


def test_interaction_grouping_factor_levels() -> None:
    df = pd.DataFrame({"y": np.arange(6.0), "a": [1, 1, 2, 2, 3, 3], "b": ["x", "y"] * 3})
    d = design("y ~ (1 | a/b)", df)
    assert [b.label for b in d.groups] == ["a", "a:b"]
    assert list(d.groups[1].levels) == ["1:x", "1:y", "2:x", "2:y", "3:x", "3:y"]


def test_repeated_grouping_factor_gets_distinct_labels(radon: pd.DataFrame) -> None:
    d = design("log_radon ~ floor + (1 | county) + (0 + floor | county)", radon)
    assert [b.label for b in d.groups] == ["county", "county_2"]


def test_formulaic_spec_is_kept_for_new_data(radon: pd.DataFrame) -> None:
    d = design("log_radon ~ scale(uranium)", radon)
    m = d.predictors["mu"].matrix
    new = m.on(radon.iloc[:3])
    # scale() reuses the training mean/sd on new data
    np.testing.assert_allclose(
        new[:, m.names.index("scale(uranium)")],
        (radon["uranium"].iloc[:3] - radon["uranium"].mean()) / radon["uranium"].std(),
        rtol=1e-6,
    )


def test_keyword_and_spaced_column_names() -> None:
    df = pd.DataFrame({"y": [1.0, 2.0, 3.0, 4.0], "class": [0.0, 1.0, 0.0, 2.0], "my x": [1.0, 3.0, 2.0, 5.0]})
    d = design("y ~ `class` + `my x`", df)
    assert list(d.predictors["mu"].coef_names) == ["class", "my x"]


# ---------------------------------------------------------------- bad data
def test_unknown_column_suggests_close_names(radon: pd.DataFrame) -> None:
    with pytest.raises(hf.DataError, match=r"unknown column 'flor' \(did you mean 'floor'\?\)"):
        hf.compile("log_radon ~ flor + (1 | county)", radon)


def test_unknown_grouping_column(radon: pd.DataFrame) -> None:
    with pytest.raises(hf.DataError, match="unknown column 'conty'.*'county'"):
        hf.compile("log_radon ~ floor + (1 | conty)", radon)


def test_missing_values_dropped_with_count(radon: pd.DataFrame) -> None:
    df = radon.copy()
    df.loc[[0, 5, 9], "log_radon"] = np.nan
    with pytest.warns(UserWarning, match="dropped 3 of 919 rows with missing values in log_radon"):
        cm = hf.compile("log_radon ~ floor + (1 | county)", df)
    assert cm.data["y"].shape == (916,)


def test_missing_values_error_when_asked(radon: pd.DataFrame) -> None:
    df = radon.copy()
    df.loc[3, "floor"] = np.nan
    with pytest.raises(hf.DataError, match="1 rows have missing values in floor"):
        hf.compile("log_radon ~ floor", df, na="error")


def test_unused_column_missing_values_are_ignored(radon: pd.DataFrame) -> None:
    df = radon.copy()
    df.loc[3, "uranium"] = np.nan
    cm = hf.compile("log_radon ~ floor", df)
    assert cm.data["y"].shape == (919,)


@pytest.mark.parametrize(
    "family,values,match",
    [
        ("bernoulli", [0, 1, 2, 1], "bernoulli response must be 0 or 1"),
        ("poisson", [0, 1, -2, 1], "non-negative"),
        ("poisson", [0, 1.5, 2, 1], "whole numbers"),
    ],
)
def test_family_response_checks(family: str, values: list[float], match: str) -> None:
    df = pd.DataFrame({"y": values, "x": [0.1, 0.2, 0.3, 0.4]})
    with pytest.raises(hf.DataError, match=match):
        hf.compile("y ~ x", df, family=family)


def test_binomial_successes_over_trials() -> None:
    df = pd.DataFrame({"s": [1, 5, 2], "n": [3, 4, 2], "x": [0.0, 1.0, 2.0]})
    with pytest.raises(hf.DataError, match=r"successes exceed trials in 1 rows \(first: 5 > 4\)"):
        hf.compile("s | trials(n) ~ x", df, family="binomial")


def test_binomial_needs_trials() -> None:
    df = pd.DataFrame({"s": [1, 2, 2], "x": [0.0, 1.0, 2.0]})
    with pytest.raises(hf.DataError, match="needs trials"):
        hf.compile("s ~ x", df, family="binomial")


def test_trials_with_non_binomial_family() -> None:
    df = pd.DataFrame({"s": [1, 2, 2], "n": [3, 3, 3], "x": [0.0, 1.0, 2.0]})
    with pytest.raises(hf.FormulaError, match="takes no trials"):
        hf.compile("s | trials(n) ~ x", df, family="poisson")


def test_grouping_factor_with_one_level() -> None:
    df = pd.DataFrame({"y": [1.0, 2.0, 3.0], "x": [0.0, 1.0, 2.0], "g": ["a", "a", "a"]})
    with pytest.raises(hf.DataError, match="grouping factor 'g' has only one level"):
        hf.compile("y ~ x + (1 | g)", df)


def test_empty_data() -> None:
    with pytest.raises(hf.DataError, match="no rows"):
        hf.compile("y ~ x", pd.DataFrame({"y": [], "x": []}))


def test_non_numeric_response() -> None:
    df = pd.DataFrame({"y": ["a", "b", "c"], "x": [0.0, 1.0, 2.0]})
    with pytest.raises(hf.DataError, match="response 'y' is not numeric"):
        hf.compile("y ~ x", df)


def test_offset_of_log_zero_is_reported() -> None:
    df = pd.DataFrame({"y": [1, 2, 3], "x": [0.0, 1.0, 2.0], "e": [1.0, 0.0, 2.0]})
    with pytest.raises(hf.DataError, match="offset"):
        hf.compile("y ~ x + offset(log(e))", df, family="poisson")


def test_all_errors_share_one_base() -> None:
    assert issubclass(hf.FormulaError, hf.HBMError) and issubclass(hf.DataError, hf.HBMError)
    assert issubclass(hf.PriorError, hf.FormulaError)


def test_a_second_term_on_a_factor_skips_a_label_another_factor_has() -> None:
    """A review: `(1|g) + (0 + x|g) + (1|g_2)` labelled the second term on g `g_2`, like the factor g_2: two sites
    named sd_g_2 (a crash). The second term is now g_3; every site is distinct and maps to its own factor."""
    rng = np.random.default_rng(5)
    df = pd.DataFrame({"g": rng.integers(0, 6, 120).astype(str), "g_2": rng.integers(0, 5, 120).astype(str),
                       "x": rng.normal(size=120), "y": rng.normal(size=120)})
    cm = hf.compile("y ~ x + (1|g) + (0 + x|g) + (1|g_2)", df)
    assert [(b.label, b.factor) for b in cm.design.groups] == [("g", ("g",)), ("g_3", ("g",)), ("g_2", ("g_2",))]
    sites = [ln for ln in cm.code.splitlines() if "numpyro.sample('sd_" in ln]
    assert len(sites) == 3 and len({ln.split("'")[1] for ln in sites}) == 3
