"""Parser: corpora, expected IR for the tricky cases, round trips, caret positions."""

import pytest
from conftest import corpus

import hbm_formula as hf
from hbm_formula.ir import BinOp, Call, Formula, GroupTerm, Linear, Num, Term, Var
from hbm_formula.parse import parse_formula, parse_prior


def T(*names: str) -> Term:
    return Term(tuple(Var(n) for n in names))


@pytest.mark.parametrize("formula", corpus("valid.txt"))
def test_valid_corpus_parses_and_round_trips(formula: str) -> None:
    spec = hf.parse(formula)
    again = hf.parse(str(spec))
    assert again == spec
    assert str(again) == str(spec)


INVALID = [line.split("\t") for line in corpus("invalid.txt")]


@pytest.mark.parametrize("formula,why", INVALID, ids=[w for _, w in INVALID])
def test_invalid_corpus_gives_formula_error(formula: str, why: str) -> None:
    with pytest.raises(hf.FormulaError) as info:
        hf.parse(formula)
    err = info.value
    assert err.start is not None and 0 <= err.start <= len(formula)
    lines = str(err).splitlines()
    assert lines[1].strip() == formula.strip()
    assert lines[2].index("^") - 2 == err.start  # the caret sits under the reported position


# each formula with a caret line marking where the error must point
CARETS = [
    ("~ x", "^"),
    ("y ~", "   ^"),
    ("y x", "  ^"),
    ("y ~ ~ x", "    ^"),
    ("y ~ x +", "       ^"),
    ("y ~ (1 | g", "          ^"),
    ("y ~ x + (1 | )", "             ^"),
    ("y ~ x + ( | g)", "          ^"),
    ("y ~ x + (1 ||| g)", "             ^"),
    ("y ~ x + (1 | g | h | k)", "                   ^"),
    ("y ~ x + ((1 | g) | h)", "         ^"),
    ("y ~ x + (1 | g + h)", "               ^"),
    ("y ~ x + (1 | log(g))", "                ^"),
    ("y ~ x + (1 | 1)", "             ^"),
    ("y ~ x + 3x", "         ^"),
    ("y ~ x ++ z", "       ^"),
    ("y ~ x + * z", "        ^"),
    ("y ~ x + z)", "         ^"),
    ('y ~ x + "z"', "        ^"),
    ("y ~ x + eval('1')", "        ^"),
    ("y ~ x + x.__class__", "         ^"),
    ("y ~ x + lambda: 1", "                ^"),
    ("y ~ x ; z ~ w", "      ^"),
    ("y ~ x + (1 + x | g) + (1 | g", "                            ^"),
    ("cbind(a) ~ x", "^"),
    ("y ~ x + z:1", "          ^"),
    ("y ~ (x + z)^0", "            ^"),
    ("y ~ x + 2", "        ^"),
    ("y ~ x + 1 | g", "          ^"),
]


@pytest.mark.parametrize("formula,caret", CARETS)
def test_caret_position(formula: str, caret: str) -> None:
    with pytest.raises(hf.FormulaError) as info:
        hf.parse(formula)
    assert info.value.start == caret.index("^"), str(info.value)


def lin(formula: str) -> Linear:
    f = parse_formula(formula)
    assert isinstance(f, Formula) and isinstance(f.rhs, Linear)
    return f.rhs


def test_star_expands_to_main_effects_and_interaction() -> None:
    assert lin("y ~ a*b").terms == (T("a"), T("b"), T("a", "b"))


def test_power_expands_to_all_pairs() -> None:
    assert lin("y ~ (a + b + c)^2").terms == (
        T("a"), T("b"), T("c"), T("a", "b"), T("a", "c"), T("b", "c"),
    )


def test_power_three_includes_three_way() -> None:
    assert T("a", "b", "c") in lin("y ~ (a + b + c)^3").terms


def test_nesting_in_population_terms() -> None:
    assert lin("y ~ a/b").terms == (T("a"), T("a", "b"))


def test_nested_group_expands_to_two_terms() -> None:
    gts = lin("y ~ x + (1 + x | a/b)").group_terms
    assert [g.group for g in gts] == [("a",), ("a", "b")]
    assert all(g.terms == (T("x"),) and g.intercept and g.correlated for g in gts)


def test_three_level_nesting() -> None:
    assert [g.group for g in lin("y ~ (1 | a/b/c)").group_terms] == [("a",), ("a", "b"), ("a", "b", "c")]


def test_interaction_grouping_factor() -> None:
    (g,) = lin("y ~ (1 | a:b)").group_terms
    assert g.group == ("a", "b") and g.group_label == "a:b"


def test_double_bar_is_uncorrelated() -> None:
    (g,) = lin("y ~ x + (x || g)").group_terms
    assert g == GroupTerm(intercept=True, terms=(T("x"),), group=("g",), correlated=False)


def test_id_syntax_links_terms() -> None:
    (g,) = lin("y ~ (1 | p | g)").group_terms
    assert g.id == "p" and g.group == ("g",)


@pytest.mark.parametrize(
    "formula,intercept,terms",
    [
        ("y ~ -1 + x", False, (T("x"),)),
        ("y ~ x - 1", False, (T("x"),)),
        ("y ~ 0 + x", False, (T("x"),)),
        ("y ~ x + z - z", True, (T("x"),)),
        ("y ~ x*z - x:z", True, (T("x"), T("z"))),
        ("y ~ 1", True, ()),
        ("y ~ x + 0 + 1", True, (T("x"),)),
        ("y ~ x + z:x + x:z", True, (T("x"), T("z", "x"))),
    ],
)
def test_intercept_and_removal(formula: str, intercept: bool, terms: tuple[Term, ...]) -> None:
    got = lin(formula)
    assert got.intercept is intercept
    assert got.terms == terms


def test_group_term_without_intercept() -> None:
    (g,) = lin("y ~ x + (0 + x | g)").group_terms
    assert not g.intercept and g.terms == (T("x"),)
    (g,) = lin("y ~ x + (-1 + x | g)").group_terms
    assert not g.intercept


def test_function_terms_keep_their_arguments() -> None:
    terms = lin("y ~ I(x**2) + log(uranium + 1) + poly(x, 2)").terms
    assert terms[0].factors == (Call("I", (BinOp("**", Var("x"), Num(2)),)),)
    assert terms[1].factors == (Call("log", (BinOp("+", Var("uranium"), Num(1)),)),)
    assert terms[2].factors == (Call("poly", (Var("x"), Num(2))),)


def test_caret_inside_I_is_power() -> None:
    assert lin("y ~ I(x^2)") == lin("y ~ I(x**2)")


def test_offset_is_not_a_term() -> None:
    got = lin("sales ~ price + offset(log(days_open)) + (1 | store)")
    assert got.terms == (T("price"),)
    assert got.offsets == (Call("log", (Var("days_open"),)),)


def test_cbind_response() -> None:
    f = parse_formula("cbind(incidence, size - incidence) ~ period")
    assert f.response.expr == Call("cbind", (Var("incidence"), BinOp("-", Var("size"), Var("incidence"))))


def test_trials_addition_term() -> None:
    f = parse_formula("s | trials(n) ~ x")
    assert f.response.expr == Var("s")
    assert f.response.addterm("trials") == Call("trials", (Var("n"),))


def test_backtick_names() -> None:
    f = parse_formula("`log radon` ~ `floor level` + (1 | `county name`)")
    assert f.response.expr == Var("log radon")
    assert f.rhs.terms == (T("floor level"),)
    assert f.rhs.group_terms[0].group == ("county name",)
    assert str(f) == "`log radon` ~ 1 + `floor level` + (1 | `county name`)"


def test_spans_do_not_affect_equality() -> None:
    assert hf.parse("y~x+(1|g)") == hf.parse("  y   ~   x   +   ( 1 | g )")


def test_canonical_text_is_stable() -> None:
    assert str(hf.parse("Reaction ~ Days + (Days | Subject)")) == "Reaction ~ 1 + Days + (1 + Days | Subject)"
    assert str(hf.parse("y ~ x + (1 | g1/g2)")) == "y ~ 1 + x + (1 | g1) + (1 | g1:g2)"


def test_multiline_formula_declares_distributional_parameter() -> None:
    spec = hf.parse("y ~ x + (1 | g)\nsigma ~ x")
    assert dict(spec.dpars)["sigma"].terms == (T("x"),)
    assert hf.parse(str(spec)) == spec


def test_param_setting_by_group() -> None:
    spec = hf.parse("y ~ (1 | a) + (1 | b)", param={"a": "centered"})
    assert [g.param for g in spec.formula.rhs.group_terms] == ["centered", "noncentered"]
    with pytest.raises(hf.FormulaError, match="grouping factor 'c'"):
        hf.parse("y ~ (1 | a)", param={"c": "centered"})
    with pytest.raises(hf.FormulaError, match="unknown parameterization"):
        hf.parse("y ~ (1 | a)", param="sideways")


def test_unknown_family_and_bad_link() -> None:
    with pytest.raises(hf.FormulaError, match="unknown family 'gausian'"):
        hf.parse("y ~ x", family="gausian")
    with pytest.raises(hf.FormulaError, match="does not take link 'log'"):
        hf.parse("y ~ x", family="bernoulli", link="log")


def test_non_string_formula_is_a_formula_error() -> None:
    with pytest.raises(hf.FormulaError, match="expected a formula string"):
        hf.parse(42)  # type: ignore[arg-type]


def test_empty_formula() -> None:
    with pytest.raises(hf.FormulaError, match="empty"):
        hf.parse("   ")


@pytest.mark.parametrize(
    "text,name,args",
    [
        ("normal(0, 2.5)", "normal", (0.0, 2.5)),
        ("student_t(3, 0, 2.5)", "student_t", (3.0, 0.0, 2.5)),
        ("exponential(1)", "exponential", (1.0,)),
        ("normal(-1.5e0, .5)", "normal", (-1.5, 0.5)),
        ("lkj(2)", "lkj", (2.0,)),
    ],
)
def test_prior_parses(text: str, name: str, args: tuple[float, ...]) -> None:
    d = parse_prior(text)
    assert (d.name, d.args) == (name, args)


@pytest.mark.parametrize(
    "text,at",
    [
        ("normal(0, 2.5", ""),
        ("normal(0 2.5)", "2.5"),
        ("normal(0, x)", ")"),
        ("__import__('os')", "'os'"),
        ("normal(0, 1); import os", ";"),
    ],
)
def test_prior_syntax_errors_have_carets(text: str, at: str) -> None:
    with pytest.raises(hf.PriorError) as info:
        parse_prior(text)
    assert info.value.start == (len(text) if at == "" else text.index(at))
    assert "^" in str(info.value)


def test_grammar_is_found_from_the_installed_package() -> None:
    from importlib import resources

    assert resources.files("hbm_formula.grammar").joinpath("formula.lark").is_file()
    assert resources.files("hbm_formula.example_data").joinpath("radon.csv").is_file()
