"""A formula is data, not code: nothing outside the whitelist reaches formulaic's eval."""

import pandas as pd
import pytest
from conftest import corpus

import hbm_formula as hf


@pytest.fixture
def no_formulaic(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Fail loudly if formulaic is asked to evaluate anything."""
    import formulaic

    calls: list[str] = []

    def boom(spec, *a, **k):  # noqa: ANN001, ANN002, ANN003
        calls.append(str(spec))
        raise AssertionError(f"formulaic reached with {spec!r}")

    monkeypatch.setattr(formulaic, "model_matrix", boom)
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


def test_whitelisted_functions_still_work() -> None:
    df = pd.DataFrame({"y": [1.0, 2.0, 3.0, 2.0], "x": [1.0, 2.0, 3.0, 5.0], "g": ["a", "b", "a", "b"]})
    cm = hf.compile("y ~ log(x) + I(x**2) + scale(x) + sqrt(x) + log1p(x)", df)
    assert cm.coords["b_coef"] == ["log(x)", "I(x ** 2)", "scale(x)", "sqrt(x)", "log1p(x)"]
