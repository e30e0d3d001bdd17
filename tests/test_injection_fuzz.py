"""A formula (or prior, or parameter formula, or column name) is data, never code: proved by fuzzing.

Random sequences of quotes, backticks, backslashes, '#', parentheses and a
payload are put into every text position a user controls: contrast
arguments, backtick-quoted column names (present in the data, so the text
travels through design and lowering), prior names and texts, distributional
and non-linear parameter formulas, grouping labels, and the CLI's arguments.
Three independent alarms must stay silent for every example:

- a canary file the payload would create;
- formulaic's ``stateful_eval`` (the only place formulaic calls ``eval``),
  patched to record any call: the design stage hands formulaic structure and
  values, never text, so it must never be reached;
- a static check of the generated model source: every call in it is a known
  jax/numpyro function, a helper the module defines, or ``numpyro.sample``.

The default run checks a few thousand examples; ``-m slow`` runs many more.
"""

from __future__ import annotations

import ast
import contextlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hbm_formula as hf
from hbm_formula import cli

CANARY_DIR = Path(os.environ.get("TMPDIR", "/tmp")) / f"hbm_canary_{os.getpid()}"
CANARY = CANARY_DIR / "owned"
PAYLOADS = [
    f"__import__('os').system('touch {CANARY}')",
    f"open('{CANARY}', 'w').write('x')",
    f"__import__('pathlib').Path('{CANARY}').touch()",
    f"exec(\"open('{CANARY}','w')\")",
]
ALPHABET = ["'", '"', "`", "\\", "#", "(", ")", "\\'", "'`", "`'", "((", "))", " ", ",", "x", "A", "\n", ":", "|", "~"]

piece = st.one_of(st.sampled_from(ALPHABET), st.sampled_from(PAYLOADS), st.text(max_size=3))
hostile = st.lists(piece, min_size=0, max_size=8).map("".join)


def one_line(s: str) -> str:
    return s.replace("\n", " ").replace("\r", " ")


@pytest.fixture(autouse=True, scope="module")
def alarms():
    """Patch formulaic's evaluator to record calls; make the canary's folder."""
    import formulaic.materializers.base as base
    import formulaic.utils.stateful_transforms as stf

    CANARY_DIR.mkdir(parents=True, exist_ok=True)
    calls: list[str] = []

    def tripwire(expr, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        calls.append(str(expr))
        raise AssertionError(f"formulaic was asked to evaluate text: {expr!r}")

    saved = (stf.stateful_eval, base.stateful_eval)
    stf.stateful_eval = base.stateful_eval = tripwire
    yield calls
    stf.stateful_eval, base.stateful_eval = saved
    assert calls == []


def check_silent(alarms: list[str]) -> None:
    assert not CANARY.exists(), "the payload ran: the canary file exists"
    assert alarms == [], f"formulaic evaluated text: {alarms}"


#: names the generated module may call: its imports' functions, its helpers, its classes
_ALLOWED_ROOTS = {"jnp", "jax", "numpyro", "dist"}


def check_code(code: str) -> None:
    """Every call in the generated module is a jax/numpyro function or a helper it defines itself."""
    tree = ast.parse(code)
    defined = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            while isinstance(f, ast.Attribute):
                f = f.value
            if isinstance(f, ast.Name):
                assert f.id in _ALLOWED_ROOTS | defined | {"super", "isinstance"} or f.id.startswith("self"), (
                    f"generated code calls {ast.unparse(node.func)}"
                )
            elif not isinstance(f, (ast.Call, ast.Subscript, ast.BinOp)):
                raise AssertionError(f"unexpected call target in generated code: {ast.unparse(node)}")
        assert not isinstance(node, (ast.Import, ast.ImportFrom)) or all(
            a.name.split(".")[0] in {"jax", "numpyro"} for a in node.names
        ), ast.unparse(node)


def frame(extra: dict[str, object] | None = None) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"y": rng.normal(size=12), "x": rng.normal(size=12), "f": list("abc") * 4,
                       "g": list("pq") * 6, "dose": np.tile([0.0, 1.0, 2.0, 4.0], 3)})
    for k, v in (extra or {}).items():
        df[k] = v
    return df


def attempt(formula: str, df: pd.DataFrame, **kw: object) -> None:
    """Compile; an HBMError is a fine answer. Any model that compiles is checked statically and traced.
    Group terms non-centered unless asked: ``auto`` would compile its pilot for every new name (slow; the
    pilot runs the same generated code)."""
    kw.setdefault("param", "noncentered")
    try:
        cm = hf.compile(formula, df, **kw)
    except hf.HBMError:
        return
    check_code(cm.code)
    from numpyro import handlers

    handlers.trace(handlers.seed(cm.model, 0)).get_trace(**cm.data)


FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@FUZZ
@given(s=hostile, quote=st.sampled_from(["'", '"']))
def test_contrast_arguments(alarms, s: str, quote: str) -> None:
    text = one_line(s).replace(quote, "")
    df = frame({"f": [text, "b", "c"] * 4})
    attempt(f"y ~ x + C(f, Treatment({quote}{text}{quote}))", df)
    attempt(f"y ~ x + C(f, Treatment({quote}{one_line(s)}{quote}))", df)
    check_silent(alarms)


@FUZZ
@given(name=hostile)
def test_backticked_column_names(alarms, name: str) -> None:
    name = one_line(name).replace("`", "") or "n"
    df = frame({name: np.arange(12.0)})
    attempt(f"y ~ `{name}` + (1 | g)", df)
    attempt(f"y ~ C(`{name}`) + log1p(`{name}`)", df)
    attempt(f"`{name}` ~ x", df)
    attempt(f"y ~ (1 | `{name}`)", frame({name: list("uv") * 6}))
    attempt(f"y ~ a + b * `{name}`\na ~ 1\nb ~ 1", df, priors={"Intercept_a": "normal(0, 1)", "Intercept_b": "normal(0, 1)"})
    check_silent(alarms)


@FUZZ
@given(name=hostile, prior=hostile)
def test_prior_names_and_texts(alarms, name: str, prior: str) -> None:
    df = frame()
    attempt("y ~ x + (1 | g)", df, priors={one_line(name) or "b": prior})
    attempt("y ~ x + (1 | g)", df, priors={"sigma": f"normal(0, {prior})"})
    attempt("y ~ x + (1 | g)", df, priors={"b": prior})
    check_silent(alarms)


@FUZZ
@given(s=hostile, t=hostile)
def test_parameter_formulas(alarms, s: str, t: str) -> None:
    df = frame()
    attempt("y ~ x", df, family="student", dpars={"sigma": one_line(s)})
    attempt(f"y ~ x\nsigma ~ {one_line(s)}", df, family="student")
    attempt("y ~ a * exp(-k * dose)", df, nl={"a": "1", "k": one_line(s) + one_line(t)},
            priors={"Intercept_a": "normal(0, 1)", "Intercept_k": "normal(0, 1)"})
    attempt(f"y ~ d / (1 + pow(dose / e, {one_line(s)}))\nd ~ 1\ne ~ 1, lb = 0", df,
            priors={"Intercept_d": "normal(0, 1)", "Intercept_e": "normal(0, 1)"})
    check_silent(alarms)


@FUZZ
@given(labels=st.lists(hostile, min_size=2, max_size=4, unique=True))
def test_grouping_labels_and_levels(alarms, labels: list[str]) -> None:
    df = frame({"g": [labels[i % len(labels)] for i in range(12)], "f": [labels[(i + 1) % len(labels)] for i in range(12)]})
    attempt("y ~ f + (1 | g)", df)
    attempt("y ~ x + (1 | g:f)", df)
    check_silent(alarms)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(s=hostile)
def test_cli_arguments(alarms, s: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("cli") / "d.csv"
    frame().to_csv(path, index=False)
    text = one_line(s)
    for argv in (
        [str(path), f"y ~ x + C(f, Treatment('{text}'))", "--show-priors"],
        [str(path), "y ~ x", "--prior", f"sigma={text}", "--show-priors"],
        [str(path), "y ~ x", "--family", "student", "--dpar", f"sigma ~ {text}", "--show-priors"],
        [str(path), "y ~ a * exp(-k * dose)", "--nl", "a ~ 1", "--nl", f"k ~ {text}", "--show-code"],
        [str(path), f"y ~ `{text}`", "--show-priors"],
    ):
        code = cli.main(argv)
        assert code in (0, 2), (argv, code)
    check_silent(alarms)


@pytest.fixture(scope="module")
def small_fit(alarms):  # noqa: ARG001 - the alarms are on while the fit is made
    return hf.fit("y ~ x + f + (1 | g)", frame(), chains=1, warmup=100, draws=50, progress=False)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(s=hostile, labels=st.lists(hostile, min_size=1, max_size=3))
def test_post_fit_text_inputs(alarms, small_fit, s: str, labels: list[str]) -> None:
    """After the fit, every text a user gives -- a hypothesis, re_formula, kind, new_levels, new group
    labels and factor levels in newdata -- is data too. (Each prediction compiles: few examples.)"""
    text = one_line(s)
    for call in (
        lambda: small_fit.hypothesis(text),
        lambda: small_fit.hypothesis(f"x - {text} > 0"),
        lambda: small_fit.predict(re_formula=f"~{text}", ndraws=5),
        lambda: small_fit.predict(kind=text, ndraws=5),
        lambda: small_fit.predict(new_levels=text, ndraws=5),
        lambda: small_fit.conditional_effects(text),
        lambda: small_fit.ranef(text),
    ):
        with contextlib.suppress(hf.HBMError):
            call()
    new = pd.DataFrame({"x": [0.1] * len(labels), "f": ["a"] * len(labels), "g": labels})
    for policy in ("gaussian", "population"):
        small_fit.predict(new, new_levels=policy, ndraws=5)
    with contextlib.suppress(hf.HBMError):
        small_fit.predict(new.assign(f=labels), ndraws=5)
    check_silent(alarms)


@pytest.mark.slow
@settings(max_examples=20000, deadline=None, suppress_health_check=list(HealthCheck))
@given(s=hostile, quote=st.sampled_from(["'", '"']), name=hostile)
def test_long_fuzz(alarms, s: str, quote: str, name: str) -> None:
    name = one_line(name).replace("`", "") or "n"
    df = frame({name: np.arange(12.0), "f": [one_line(s).replace(quote, ""), "b", "c"] * 4})
    attempt(f"y ~ `{name}` + C(f, Treatment({quote}{one_line(s)}{quote})) + (1 | g)", df, priors={"b": s})
    check_silent(alarms)


def test_the_reported_payloads_execute_nothing(alarms) -> None:
    df = frame({"it's": list("XYZ") * 4})
    reported = [
        "y ~ C(f, Treatment('x\\'), Treatment('A`B'), Treatment(\"Q'`R', __import__('os').system('id > owned') #((')))#\"))",
        f"y ~ C(`it's`, Treatment(\"'X` if __import__('os').system('touch {CANARY}') else '((')#\"))",
        f"y ~ C(f, Treatment(\"a'), __import__('os').system('touch {CANARY}'), ('\"))",
    ]
    for formula in reported:
        attempt(formula, df)
        attempt(formula.replace("y ~", "y ~ x +"), df)
    check_silent(alarms)
