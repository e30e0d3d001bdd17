"""Parser: corpora, expected IR for the tricky cases, round trips, caret positions."""

import pandas as pd
import pytest
from conftest import corpus

import hbm_formula as hf
from hbm_formula.ir import BinOp, Call, Formula, GroupTerm, Linear, Num, Term, Var
from hbm_formula.parse import parse_formula, parse_nl_formula, parse_prior


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
        T("a"),
        T("b"),
        T("c"),
        T("a", "b"),
        T("a", "c"),
        T("b", "c"),
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
    assert [g.param for g in spec.formula.rhs.group_terms] == ["centered", "auto"]  # auto: the default
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


@pytest.mark.parametrize("brk", ["\n", "\r\n", "\r", "\u2028", "\x85", "\t"])
def test_an_error_shows_its_text_on_one_line_with_the_caret_under_the_place(brk: str) -> None:
    """(a review) only '\\n' was shown as a space: a '\\r' or another line break split the text's line for
    ``str.splitlines`` (the CLI's), and the caret stood under nothing."""
    text = f"normal(0,{brk}1 2)"
    with pytest.raises(hf.PriorError) as info:
        parse_prior(text)
    lines = str(info.value).splitlines()
    assert len(lines) == 3, lines
    assert len(lines[1]) == 2 + len(text) and lines[2].index("^") == 2 + info.value.start
    assert info.value.start == (text.index("2") if brk in " \t\n\r\r\n" else text.index(brk)), str(info.value)


def test_a_priors_name_with_a_line_break_stays_on_the_messages_line() -> None:
    """(a second review) the name was put in the message as it was: 'b\\nx' split the CLI's error line."""
    df = pd.DataFrame({"y": [1.0, 2.0, 3.0, 4.0], "x": [0.0, 1.0, 0.0, 1.0]})
    for priors, said in (({"b\nx": "lkj(nan)"}, "prior for 'b\\nx': 'nan' is not a number"),
                         ({"b\rx": "normal(0, 1)"}, "prior for unknown parameter 'b\\rx'")):
        with pytest.raises(hf.PriorError) as info:
            hf.compile("y ~ x", df, priors=priors)
        assert str(info.value).splitlines()[0].startswith(said), str(info.value)


def test_grammar_is_found_from_the_installed_package() -> None:
    from importlib import resources

    assert resources.files("hbm_formula.grammar").joinpath("formula.lark").is_file()
    assert resources.files("hbm_formula.example_data").joinpath("radon.csv").is_file()


# ---------------------------------------------------------------- limits
# One row per limit (and a few shapes of each): the text, the entry point, the
# exact message and where the caret must point. The texts are built at the
# limit plus one, so each row also checks the limit's value.
def _sum(n: int, name: str = "x") -> str:
    return " + ".join(f"{name}{i}" for i in range(n))


def _at(text: str, marker: str) -> int:
    """Where the caret must point: the last occurrence of ``marker``."""
    return text.rindex(marker)


_X_CHAIN = "y ~ " + "+".join(["x"] * 2500)  # 2 + 4,999 symbols
_I_PLUS = "y ~ I(" + "+".join(["x"] * 202) + ")"  # 201 operators
_NL_PLUS = "y ~ " + "+".join(["b"] * 202)
_STAR10 = "y ~ " + "*".join("abcdefghij")  # 2^10 - 1 = 1,023 terms
_COLON11 = "y ~ " + ":".join("abcdefghijk")
_GROUPS = "y ~ (" + _sum(500) + " | g) + (" + _sum(500) + " | h)"
_STAR11 = "y ~ a:b:c:d:e:f * g:h:i:j:k"
_POWER11 = "y ~ (a:b:c:d:e + f:g:h:i:j + k)^3"
_PARAMS = "y ~ b*x\n" + "\n".join(["b ~ 1"] * 201)

# fmt: off
LIMITS = [
    ("length", hf.parse, "y ~ x" + " + x" * 5000,
     "the formula is too long: 20,005 characters; the limit is 20,000", 20_000),
    ("length-prior", parse_prior, "normal(0, 1" + " " * 20_000 + ")",
     "the prior is too long: 20,012 characters; the limit is 20,000", 20_000),
    ("symbols", hf.parse, _X_CHAIN,
     "the formula is too long: the limit is 5,000 symbols (names, numbers, operators, parentheses)", len(_X_CHAIN) - 1),
    ("depth-parens", hf.parse, "y ~ " + "(" * 65 + "x" + ")" * 65,
     "parentheses nested too deeply: the limit is 64 levels of parentheses and calls", 4 + 64),
    ("depth-calls", hf.parse, "y ~ " + "log(" * 65 + "x" + ")" * 65,
     "parentheses nested too deeply: the limit is 64 levels of parentheses and calls", 4 + 64 * 4 + 3),
    ("depth-nl", parse_nl_formula, "y ~ " + "exp(" * 70 + "b" + ")" * 70,
     "parentheses nested too deeply: the limit is 64 levels of parentheses and calls", 4 + 64 * 4 + 3),
    ("depth-quoted-parens-do-not-count", hf.parse, "y ~ `" + "(" * 100 + "` + " + "(" * 65 + "x" + ")" * 65,
     "parentheses nested too deeply: the limit is 64 levels of parentheses and calls", 4 + 102 + 3 + 64),
    ("terms-written", hf.parse, "y ~ " + " + ".join(["x"] * 2001),
     "too many terms written: the limit is 2,000 terms joined by '+' or '-' in one formula", 4 + 2000 * 4),
    ("terms", hf.parse, "y ~ " + _sum(1001),
     "too many terms: the limit is 1,000 terms in the expanded formula", _at(_sum(1001), "x1000") + 4),
    ("terms-star", hf.parse, _STAR10,
     "too many terms: the limit is 1,000 terms in the expanded formula", _at(_STAR10, "*j")),
    ("terms-groups", hf.parse, _GROUPS,  # each group term and its 500 terms: 2 x 501
     "too many terms: the limit is 1,000 terms in the expanded formula", _at(_GROUPS, "(")),
    ("terms-nested-group", hf.parse, "y ~ (" + _sum(600) + " | a/b)",
     "too many terms: the limit is 1,000 terms in the expanded formula", 4),  # (x0 + ... | a) and (... | a:b)
    ("interaction", hf.parse, _COLON11,
     "interaction of too many factors: the limit is 10 in one term", _at(_COLON11, ":k")),
    ("interaction-star", hf.parse, _STAR11,
     "interaction of too many factors: the limit is 10 in one term", _at(_STAR11, "*")),
    ("interaction-power", hf.parse, _POWER11,
     "interaction of too many factors: the limit is 10 in one term", _at(_POWER11, "^") + 1),
    ("interaction-grouping", hf.parse, "y ~ (1 | a:b:c:d:e:f:g:h:i:j:k)",
     "grouping factor of too many columns: the limit is 10", 28),
    ("interaction-nesting", hf.parse, "y ~ (1 | a/b/c/d/e/f/g/h/i/j/k)",
     "grouping factor of too many columns: the limit is 10", 28),
    ("power", hf.parse, "y ~ (a + b)^101", "the power of a term is too large: the limit is 100", 12),
    ("power-1e300", hf.parse, "y ~ x^1e300", "the power of a term is too large: the limit is 100", 6),
    ("power-1e9", hf.parse, "y ~ (a+b)^1e9", "the power of a term is too large: the limit is 100", 10),
    ("power-inf", hf.parse, "y ~ x^1e999", "the power of a term must be a positive whole number, e.g. (a + b)^2", 6),
    ("power-half", hf.parse, "y ~ x^0.5", "the power of a term must be a positive whole number, e.g. (a + b)^2", 6),
    ("power-negative", hf.parse, "y ~ x^-1",
     "the power of a term must be a positive whole number, e.g. (a + b)^2: found '-'", 6),
    ("operators", hf.parse, _I_PLUS,
     "expression too long: the limit is 200 operators in one expression", 6 + 2 * 200 + 1),
    ("operators-nl", parse_nl_formula, _NL_PLUS,
     "expression too long: the limit is 200 operators in one expression", 4 + 2 * 200 + 1),
    ("operators-unary-minus", hf.parse, "y ~ I(" + "-" * 201 + "x)",
     "expression too long: the limit is 200 operators in one expression", 6 + 200),
    ("operators-power-chain", hf.parse, "y ~ log(" + "^".join(["x"] * 202) + ")",
     "expression too long: the limit is 200 operators in one expression", 8 + 2 * 200 + 1),
    ("combinations", hf.parse, "y ~ (a*b*c*d*e*f*g*h*i):(j*k*l*m*n*o*p*q*r)",
     "interactions expand too much: the limit is 100,000 pairs of terms combined in one formula", 23),
    ("parameters", hf.parse, _PARAMS,
     "too many parameter formulas: the limit is 200 in one model", len("y ~ b*x\n") + 200 * len("b ~ 1\n")),
    ("finite-prior", parse_prior, "normal(0, 1e999)", "the number 1e999 is too large: it must be a finite number", 10),
    ("finite-bound", hf.parse, "y ~ b*x\nb ~ 1, lb = -1e400",
     "the number 1e400 is too large: it must be a finite number", 13),
    ("finite-expression", hf.parse, "y ~ I(x * 1e999)", "the number 1e999 is too large: it must be a finite number", 10),
]
# fmt: on


@pytest.mark.parametrize("entry,text,message,start", [row[1:] for row in LIMITS], ids=[row[0] for row in LIMITS])
def test_limit_message_and_caret(entry, text: str, message: str, start: int) -> None:
    with pytest.raises(hf.FormulaError) as info:
        entry(text)
    err = info.value
    assert err.message == message
    assert err.start == start, str(err)[:200]
    caret_line = str(err).splitlines()[2]
    assert caret_line.index("^") - 2 == start  # the caret sits under the reported position
    if entry is parse_prior:
        assert isinstance(err, hf.PriorError)


@pytest.mark.parametrize(
    "formula,n_terms",
    [
        ("y ~ " + _sum(1000), 1000),  # MAX_TERMS terms: accepted
        ("y ~ " + " + ".join(["x"] * 2000), 1),  # MAX_TERMS_WRITTEN, all one term
        ("y ~ " + "(" * 64 + "x" + ")" * 64, 1),  # MAX_DEPTH levels
        ("y ~ " + "log(" * 63 + "(1 + x)" + ")" * 63, 1),
        ("y ~ (a + b)^20", 3),  # a, b, a:b: deduplicated at each step
        ("y ~ (a + b)^100", 3),  # MAX_POWER
        ("y ~ (a+b+c+d+e+f+g+h)^8", 255),
        ("y ~ (a+b+c+d+e+f+g+h+i)^9", 511),
        ("y ~ " + "*".join("abcdefghi"), 511),
        ("y ~ " + ":".join("abcdefghij"), 1),  # MAX_INTERACTION factors
        ("y ~ I(" + "+".join(["x"] * 201) + ")", 1),  # MAX_OPERATORS operators
    ],
)
def test_at_the_limits_formulas_still_parse(formula: str, n_terms: int) -> None:
    spec = hf.parse(formula)
    assert len(spec.formula.rhs.terms) == n_terms
    assert hf.parse(str(spec)) == spec


def _old_power(base: tuple[Term, ...], n: int) -> tuple[Term, ...]:
    """The expansion as written before the limits: cross without dropping duplicates, n - 1 times."""

    def cross(x: Term, y: Term) -> Term:
        seen = {str(f) for f in x.factors}
        return Term(x.factors + tuple(f for f in y.factors if str(f) not in seen))

    out: dict[frozenset[str], Term] = {}
    cur = list(base)
    for step in range(n):
        if step:
            cur = [cross(x, y) for x in cur for y in base]
        for t in cur:
            out.setdefault(t.key, t)
    return tuple(out.values())


@pytest.mark.parametrize(
    "base", ["a + b", "a + b + c", "a:b + c", "b:a + a:c + c", "a + a:b + b", "a*b + c:d", "d + c + b + a"]
)
@pytest.mark.parametrize("n", [1, 2, 3, 4, 6])
def test_power_with_early_stop_keeps_the_terms_and_their_order(base: str, n: int) -> None:
    # Term equality compares factors in order: the same terms, each written the same way, in the same order
    assert lin(f"y ~ ({base})^{n}").terms == _old_power(lin(f"y ~ {base}").terms, n)
