"""A formula is data, not code: nothing outside the whitelist reaches formulaic's eval."""

import numpy as np
import pandas as pd
import pytest
from conftest import corpus

import hbm_formula as hf


@pytest.fixture
def no_formulaic(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Fail loudly if formulaic is asked to build anything (these formulas must be refused first)."""
    import formulaic

    calls: list[str] = []

    def boom(spec, *a, **k):  # noqa: ANN001, ANN002, ANN003
        calls.append(str(spec))
        raise AssertionError(f"formulaic reached with {spec!r}")

    monkeypatch.setattr(formulaic, "model_matrix", boom)
    return calls


@pytest.fixture
def no_eval(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Fail loudly if formulaic's evaluator (its only use of eval) is reached at all."""
    import formulaic.materializers.base as base
    import formulaic.utils.stateful_transforms as stf

    calls: list[str] = []

    def boom(expr, *a, **k):  # noqa: ANN001, ANN002, ANN003
        calls.append(str(expr))
        raise AssertionError(f"formulaic evaluated {expr!r}")

    monkeypatch.setattr(stf, "stateful_eval", boom)
    monkeypatch.setattr(base, "stateful_eval", boom)
    return calls


@pytest.mark.parametrize("formula", corpus("injection.txt"))
def test_injection_is_rejected_before_evaluation(formula: str, no_formulaic: list[str], tmp_path) -> None:
    df = pd.DataFrame({"y": [1.0, 2.0, 3.0], "x": [0.0, 1.0, 2.0], "g": ["a", "b", "a"]})
    with pytest.raises(hf.FormulaError):
        hf.compile(formula, df)
    assert no_formulaic == []


def test_multiline_code_is_rejected() -> None:
    with pytest.raises(hf.FormulaError):
        hf.parse("y ~ x\nimport os")


def test_prior_strings_are_not_evaluated() -> None:
    for text in ["__import__('os').system('true')", "normal(0, eval('1'))", "exec('x')", "normal(0, 1).__class__"]:
        with pytest.raises(hf.PriorError):
            hf.parse_prior(text)


def test_backtick_name_cannot_smuggle_code_into_the_model_source(tmp_path) -> None:
    evil = "x'); import os; os.system('touch PWNED'); ('"
    df = pd.DataFrame({"y": [1.0, 2.0, 3.0, 2.5], evil: [0.0, 1.0, 2.0, 1.5], "g": ["a", "b", "a", "b"]})
    cm = hf.compile(f"y ~ `{evil}` + (1 | g)", df)
    # the name appears only inside a comment and as a coordinate label, never as code
    code_lines = [ln for ln in cm.code.splitlines() if not ln.lstrip().startswith("#")]
    assert not any("os.system" in ln for ln in code_lines)
    assert cm.coords["b_coef"] == [evil]


def test_newline_in_name_cannot_break_out_of_a_comment() -> None:
    with pytest.raises(hf.FormulaError):
        hf.parse("y ~ `a\nimport os`")


def test_whitelisted_functions_still_work(no_eval: list[str]) -> None:
    df = pd.DataFrame({"y": [1.0, 2.0, 3.0, 2.0], "x": [1.0, 2.0, 3.0, 5.0], "g": ["a", "b", "a", "b"]})
    cm = hf.compile("y ~ log(x) + I(x**2) + scale(x) + sqrt(x) + log1p(x)", df)
    assert cm.coords["b_coef"] == ["log(x)", "I(x ** 2)", "scale(x)", "sqrt(x)", "log1p(x)"]
    np.testing.assert_allclose(cm.design.predictors["mu"].X[:, 1] + cm.design.predictors["mu"].X_mean[1], df.x**2)
    assert no_eval == []


def test_every_term_kind_is_built_without_evaluating_text(no_eval: list[str]) -> None:
    """Contrasts, splines, polynomials, scaling, interactions: all by structure and bound values."""
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"y": rng.normal(size=30), "x": rng.normal(size=30), "f": list("abc") * 10,
                       "g": list("pqrst") * 6, "n": rng.integers(1, 5, 30)})
    cm = hf.compile("y ~ x * f + C(f, Treatment('c')) + C(g, Sum) + poly(x, 2) + bs(x, df=4) + standardize(x) "
                    "+ center(x) + scale(x, center = FALSE) + offset(log(n)) + (1 + x | g)", df)
    names = cm.coords["b_coef"]
    assert "C(f, Treatment('c'))[T.a]" in names and "x:f[T.b]" in names and "poly(x, 2)[2]" in names
    assert any(n.startswith("C(g, Sum())[S.") for n in names) and "bs(x, df=4)[4]" in names
    assert no_eval == []


def test_a_reference_level_is_a_value_not_code(no_eval: list[str]) -> None:
    evil = "b') + __import__('os').system('true') + ('"
    df = pd.DataFrame({"y": [1.0, 2.0, 3.0, 2.0, 1.5, 2.5], "f": ["a", evil, "a", evil, "c", "c"]})
    cm = hf.compile(f'y ~ C(f, Treatment("{evil}"))', df)
    assert cm.coords["b_coef"] == [f'C(f, Treatment("{evil}"))[T.a]', f'C(f, Treatment("{evil}"))[T.c]']
    with pytest.raises(hf.DataError, match="is not a level of f"):
        hf.compile('y ~ C(f, Treatment("zz"))', df)
    assert no_eval == []
