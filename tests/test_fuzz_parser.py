"""The parser under stress: whatever the text, every entry point returns an IR
or raises FormulaError (PriorError for priors) -- never RecursionError,
TypeError, OverflowError or another ValueError -- in well under a second, and
an accepted model prints back to itself.

Three sources of text: (a) strings generated from the grammar itself
(``hypothesis.extra.lark``), (b) mutations of the formula corpora in
``tests/formulas``, (c) adversarial shapes (deep nesting, long sums, big powers,
long names, control characters). The default run takes a few hundred examples
per source; ``-m slow`` runs 20,000 each.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

import pytest
from conftest import corpus
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.lark import LarkStrategy, from_lark
from lark.grammar import Terminal

import hbm_formula as hf
from hbm_formula.ir import ModelSpec
from hbm_formula.parse import (
    MAX_DEPTH,
    MAX_LENGTH,
    _build_parser,
    _parser,
    parse_nl_formula,
    parse_param_formula,
    parse_prior,
    with_param,
)

#: the coarse time guard of each call (generous for a loaded CI machine; typical calls take milliseconds)
SECONDS = 1.0
LONG_EXAMPLES = 20_000

_GROUPED = hf.parse("y ~ x + (1 | g) + (x || h)")

#: every entry point that reads text, by name
ENTRIES: dict[str, Callable[[str], object]] = {
    "parse": hf.parse,
    "nl": parse_nl_formula,
    "param": parse_param_formula,
    "prior": parse_prior,
    "dpars": lambda t: hf.parse("y ~ x", dpars={"sigma": t}),
    "nl=": lambda t: hf.parse("y ~ b * x", nl={"b": t}),
    "priors": lambda t: hf.parse("y ~ x", priors={"b": t}),
    "with_param": lambda t: with_param(_GROUPED, t),
    "with_param-map": lambda t: with_param(_GROUPED, {t: "centered"}),
}


def check(entry: str, text: str) -> tuple[hf.FormulaError | None, float]:
    """The property. Returns the FormulaError raised (if any; anything else raised
    fails the test) and the wall time taken.

    The guard is on CPU time: it catches any blow-up in the parser, but not a
    loaded machine's scheduling (a 0.2 s parse took 2 s of wall time here at
    load 4 on 2 cores). Garbage collection is off during the call, so a
    collection of the test process's heap is not charged to the parser.
    """
    error = None
    gc.disable()
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        out = ENTRIES[entry](text)
    except hf.FormulaError as err:  # PriorError is one
        out, error = None, err
    finally:
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        gc.enable()
    assert cpu < SECONDS, f"{entry} took {cpu:.2f} s of CPU on {text[:300]!r}"
    if error is not None:
        assert str(error).startswith(error.message)  # renders, caret line and all
    if isinstance(out, ModelSpec) and entry in ("parse", "dpars", "nl="):
        assert hf.parse(str(out)) == out  # the canonical text is accepted too
    return error, wall


_parser()  # build the parser once, outside any timed call
_GRAMMAR = _build_parser()  # with its grammar, which the strategies read (a parser from the cache lacks it)

# ---------------------------------------------------------------- (a) from the grammar
_START_ENTRIES = {"model": "parse", "nl_model": "nl", "param": "param", "prior": "prior"}
#: whitespace between tokens; drawn from the WS regex it costs a third of the generation time
_EXPLICIT = {"WS": st.sampled_from([" ", "  ", "\t", "\n", "\r\n", "\x0c"])}


class _BoundedLark(LarkStrategy):
    """``hypothesis.extra.lark.from_lark`` with a depth budget.

    The grammar is supercritical for a random derivation (a sum holds products,
    which hold atoms, which hold parenthesized sums: each sum begets more than
    one on average), so plain ``from_lark`` discards ~95% of its attempts as too
    large and spends ~0.4 s per example. Past ``depth`` nested symbols each rule
    takes its shortest alternative, which ends every derivation here. Terminals
    keep the grammar's own regexes (that is how NUMBER's ``\\d`` was found to
    take other scripts' digits).
    """

    def __init__(self, start: str, depth: int) -> None:
        super().__init__(_GRAMMAR, start, dict(_EXPLICIT), st.characters(codec="utf-8"))
        self.depth_left = depth
        self.shortest = {name: s.elements[0] for name, s in self.nonterminal_strategies.items()}

    def draw_symbol(self, data, symbol, draw_state) -> None:  # noqa: ANN001 - hypothesis internals
        if isinstance(symbol, Terminal) or self.depth_left > 0:
            self.depth_left -= 1
            try:
                super().draw_symbol(data, symbol, draw_state)
            finally:
                self.depth_left += 1
        else:
            for e in self.shortest[symbol.name]:
                self.draw_symbol(data, e, draw_state)
                self.gen_ignore(data, draw_state)


def _from_grammar(start: str) -> st.SearchStrategy[tuple[str, str]]:
    texts = st.one_of([_BoundedLark(start, depth) for depth in (4, 8, 11)])
    return texts.map(lambda text: (_START_ENTRIES[start], text))


# ---------------------------------------------------------------- (b) mutated corpora
CORPUS = corpus("valid.txt") + [line.split("\t")[0] for line in corpus("invalid.txt")] + corpus("injection.txt")
#: characters that mean something to the grammar, drawn more often than the rest of Unicode
SYNTAX = "()+-*/:^|~,`'\" .=\n\t01eE_"
_piece = st.text(alphabet=st.sampled_from(SYNTAX) | st.characters(), max_size=8)


@st.composite
def _mutation(draw: st.DrawFn, text: str) -> str:
    n = len(text)
    i = draw(st.integers(0, n))
    j = draw(st.integers(i, min(n, i + 24)))
    kind = draw(st.sampled_from(["insert", "delete", "duplicate", "swap", "repeat", "nest", "splice"]))
    if kind == "insert":
        return text[:i] + draw(_piece) + text[i:]
    if kind == "delete":
        return text[:i] + text[j:]
    if kind == "duplicate":
        k = draw(st.integers(0, n))
        return text[:k] + text[i:j] + text[k:]
    if kind == "swap":
        k = draw(st.integers(j, n))
        m = draw(st.integers(k, min(n, k + 24)))
        return text[:i] + text[k:m] + text[j:k] + text[i:j] + text[m:]
    if kind == "repeat":  # long sums, long chains, deep nesting -- whatever the chunk holds
        return text[:i] + text[i:j] * draw(st.integers(2, 5_000)) + text[j:]
    if kind == "nest":
        depth = draw(st.integers(1, 2 * MAX_DEPTH))
        return text[:i] + "(" * depth + text[i:j] + ")" * draw(st.integers(depth - 1, depth + 1)) + text[j:]
    other = draw(st.sampled_from(CORPUS))
    return text[:i] + other[draw(st.integers(0, len(other))) :] + text[j:]


@st.composite
def _mutated(draw: st.DrawFn) -> tuple[str, str]:
    text = draw(st.sampled_from(CORPUS))
    for _ in range(draw(st.integers(1, 4))):
        text = draw(_mutation(text))
    entry = draw(st.sampled_from(["parse", "parse", "parse", "nl", "param", "prior", "dpars", "nl="]))
    return entry, text


# ---------------------------------------------------------------- (c) adversarial shapes
_TERMS = st.sampled_from(
    ["x", "x1", "`a b`", "log(x)", "1", "0", "(1 | g)", "(x || g/h)", "I(x^2)", "offset(z)", "a:b", "(a + b)", "a*b"]
)
_OPS = st.sampled_from([" + ", "+", " - ", "*", ":", "/", "^2+"])
_CALLS = st.sampled_from(["log", "exp", "I", "scale", "C", "poly", "foo", "__import__"])
_POWERS = st.one_of(
    st.sampled_from(["1e300", "1e9", "0.5", "-1", "1e999", "2.0", "1e2", "0", ".5e1", "100", "101", "x", "(2)"]),
    st.integers(-5, 10**12).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
)
_NUMBERS = st.one_of(
    st.sampled_from(["1e999", "-1e400", "nan", "inf", "0", "-0", "1" * 400, "." + "0" * 300 + "1", "1e-400"]),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(-(10**30), 10**30).map(str),
)
_NASTY = st.text(
    alphabet=st.characters(max_codepoint=0x1F) | st.sampled_from("\x00\x7f\x85\u2028\u2029\ufeff\u200b`'\"()~|"),
    max_size=12,
)
_COUNT = st.integers(0, 6_000)  # repetitions: about 2 symbols each, around MAX_TOKENS


def _repeat(unit: str, n: int, sep: str = "") -> str:
    return sep.join([unit] * n) if n else unit


_SHAPES: list[st.SearchStrategy[tuple[str, str]]] = [
    # deep parentheses, balanced or not
    st.builds(lambda n, m: ("parse", "y ~ " + "(" * n + "x" + ")" * m), _COUNT, _COUNT),
    # nested calls, in a term, a response, a non-linear formula
    st.builds(lambda f, n: ("parse", "y ~ " + f"{f}(" * n + "x" + ")" * n), _CALLS, _COUNT),
    st.builds(lambda f, n: ("parse", f"{f}(" * n + "y" + ")" * n + " ~ x"), _CALLS, _COUNT),
    st.builds(lambda n: ("nl", "y ~ " + "exp(" * n + "b * x" + ")" * n), _COUNT),
    # long sums and chains of any operator
    st.builds(lambda t, op, n: ("parse", "y ~ " + _repeat(t, n, op)), _TERMS, _OPS, _COUNT),
    st.builds(
        lambda ts, op, n: ("parse", "y ~ " + _repeat(op.join(ts), n, op)), st.lists(_TERMS, max_size=6), _OPS, _COUNT
    ),
    st.builds(lambda n: ("parse", "y ~ " + " + ".join(f"x{i}" for i in range(n))), st.integers(0, 3_000)),
    # big powers
    st.builds(
        lambda k, p: ("parse", "y ~ (" + "+".join("abcdefghijklmnop"[:k]) + ")^" + p), st.integers(1, 16), _POWERS
    ),
    st.builds(lambda p: ("parse", "y ~ x^" + p), _POWERS),
    # long * / : chains over few or many distinct names
    st.builds(
        lambda k, op, names: ("parse", "y ~ " + op.join(names[i % len(names)] for i in range(k))),
        st.integers(1, 60),
        st.sampled_from(["*", ":", "/", " * ", ":"]),
        st.sampled_from(["abcdefghijklmnopqrstuvwxyz", "ab", "a", ["x1", "x2", "log(x)", "`z z`"]]),
    ),
    # arithmetic chains: long, unary minus, right-nested powers
    st.builds(
        lambda op, n: ("parse", "y ~ I(" + _repeat("x", n, op) + ")"),
        st.sampled_from(["+", "*", "^", "**", "/", "-"]),
        _COUNT,
    ),
    st.builds(lambda n: ("parse", "y ~ I(" + "-" * n + "x)"), _COUNT),
    st.builds(lambda n: ("parse", "y ~ I(" + _repeat("x", n, "^-") + ")"), st.integers(0, 400)),
    st.builds(lambda op, n: ("nl", "y ~ " + _repeat("b", n, op)), st.sampled_from(["+", "*", "^", "-"]), _COUNT),
    # long backtick names, Unicode, NUL bytes and control characters
    st.builds(lambda s, n: ("parse", "y ~ `" + s * n + "`"), st.text(min_size=1, max_size=20), st.integers(0, 30_000)),
    st.builds(
        lambda s, i: ("parse", ("y ~ x + (1 | g)")[:i] + s + ("y ~ x + (1 | g)")[i:]), st.text(), st.integers(0, 15)
    ),
    st.builds(
        lambda s, i: ("parse", ("y ~ x + (1 | g)")[:i] + s + ("y ~ x + (1 | g)")[i:]), _NASTY, st.integers(0, 15)
    ),
    st.builds(lambda s: ("prior", "normal(0, 1)" + s), _NASTY),
    # multi-line formulas and parameter formulas
    st.builds(lambda n: ("parse", "y ~ b * x\n" + _repeat("b ~ 1", n, "\n")), st.integers(0, 400)),
    st.builds(
        lambda n: (
            "parse",
            "y ~ " + "+".join(f"b{i}" for i in range(n)) + "\n" + "\n".join(f"b{i} ~ x" for i in range(n)),
        ),
        st.integers(1, 300),
    ),
    st.builds(lambda n: ("parse", "y ~ x\n" + "\n" * n + "sigma ~ x"), _COUNT),
    # numbers: priors, bounds, expressions
    st.builds(lambda xs: ("prior", "normal(" + ", ".join(xs) + ")"), st.lists(_NUMBERS, max_size=4)),
    st.builds(lambda a, b: ("parse", f"y ~ b * x\nb ~ 1, lb = {a}, ub = {b}"), _NUMBERS, _NUMBERS),
    st.builds(lambda a: ("parse", f"y ~ I(x * {a})"), _NUMBERS),
    # a whole formula much longer than the limit
    st.builds(lambda n: ("parse", "y ~ x" + " + x" * n), st.integers(MAX_LENGTH // 4 - 10, 30_000)),
]

#: each source, and its examples in the default run (generating from the grammar is the slow part)
SOURCES: dict[str, tuple[st.SearchStrategy[tuple[str, str]], int]] = {
    "grammar-model": (_from_grammar("model"), 150),
    "grammar-nl_model": (_from_grammar("nl_model"), 150),
    "grammar-param": (_from_grammar("param"), 150),
    "grammar-prior": (_from_grammar("prior"), 150),
    "mutated-corpus": (_mutated(), 400),
    "adversarial": (st.one_of(_SHAPES), 400),
}
_SUPPRESS = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]


def _fuzz(source: str, examples: int) -> None:
    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=_SUPPRESS)
    @given(SOURCES[source][0])
    def run(case: tuple[str, str]) -> None:
        check(*case)

    run()


@pytest.mark.parametrize("source", list(SOURCES))
def test_fuzz(source: str) -> None:
    _fuzz(source, SOURCES[source][1])


@pytest.mark.slow
@pytest.mark.parametrize("source", list(SOURCES))
def test_fuzz_long(source: str) -> None:
    _fuzz(source, LONG_EXAMPLES)


@pytest.mark.slow
@pytest.mark.parametrize("start", list(_START_ENTRIES))
def test_fuzz_plain_from_lark(start: str) -> None:
    """``from_lark`` without the depth budget: ~0.4 s an example, so only in the long run."""

    @settings(max_examples=500, deadline=None, database=None, suppress_health_check=_SUPPRESS)
    @given(from_lark(_GRAMMAR, start=start, explicit=dict(_EXPLICIT)))
    def run(text: str) -> None:
        check(_START_ENTRIES[start], text)

    run()


# ---------------------------------------------------------------- named adversarial inputs
def _sum(n: int) -> str:
    return " + ".join(f"x{i}" for i in range(1, n + 1))


#: (id, entry, text, the outcome: None if it parses, else the start of the error message)
ADVERSARIAL = [
    ("1000-terms", "parse", "y ~ " + _sum(1000), None),
    ("2000-terms", "parse", "y ~ " + _sum(2000), "too many terms: the limit is 1,000"),
    ("depth-1000", "parse", "y ~ " + "(" * 1000 + "x" + ")" * 1000, "parentheses nested too deeply"),
    ("500-nested-log", "parse", "y ~ " + "log(" * 500 + "x" + ")" * 500, "parentheses nested too deeply"),
    ("(a+b)^20", "parse", "y ~ (a+b)^20", None),
    ("(a+...+h)^8", "parse", "y ~ (a+b+c+d+e+f+g+h)^8", None),
    ("16-factor-star", "parse", "y ~ a*b*c*d*e*f*g*h*i*j*k*l*m*n*o*p", "too many terms: the limit is 1,000"),
    ("x^1e300", "parse", "y ~ x^1e300", "the power of a term is too large"),
    ("(a+b)^1e9", "parse", "y ~ (a+b)^1e9", "the power of a term is too large"),
    ("x^0.5", "parse", "y ~ x^0.5", "the power of a term must be a positive whole number"),
    ("x^-1", "parse", "y ~ x^-1", "the power of a term must be a positive whole number"),
    ("100KB", "parse", "y ~ x" + " + x" * 25_000, "the formula is too long: 100,005 characters"),
    ("x+x+...", "parse", "y ~ " + "+".join(["x"] * 2_490), "too many terms written"),
    (
        "10,000-symbols",
        "parse",
        "y ~ " + "+".join(["x"] * 4_990),
        "the formula is too long: the limit is 5,000 symbols",
    ),
    ("long-arithmetic", "parse", "y ~ I(" + "+".join(["x"] * 2_490) + ")", "expression too long"),
    ("unary-minus-chain", "parse", "y ~ I(" + "-" * 4_900 + "x)", "expression too long"),
    ("power-chain", "nl", "y ~ " + "^".join(["b"] * 2_490), "expression too long"),
    ("deep-group-nesting", "parse", "y ~ (1 | " + "/".join(["g"] * 2_490) + ")", "grouping factor of too many columns"),
    ("many-groups", "parse", "y ~ " + " + ".join(["(x + z | g)"] * 600), "too many terms: the limit is 1,000"),
    (
        "interaction-of-expansions",
        "parse",
        "y ~ (a*b*c*d*e*f*g*h*i):(j*k*l*m*n*o*p*q*r)",
        "interactions expand too much",
    ),
    (
        "repeated-expansions",
        "parse",
        "y ~ " + " + ".join(["(a*b*c*d*e*f*g*h):(a*b*c*d*e*f*g*h)"] * 100),
        "interactions expand too much",
    ),
    ("nesting-a-long-sum", "parse", "y ~ (" + _sum(900) + ")/z", "interaction of too many factors"),
    ("2300-call-arguments", "parse", "y ~ " + "log(" * 60 + ", ".join(["x"] * 2_300) + ")" * 60, "log() is written log(x)"),
    (
        "many-parameter-lines",
        "parse",
        "y ~ b * x\n" + "\n".join(f"b{i} ~ 1" for i in range(2_000)),
        "too many parameter formulas",
    ),
    ("long-backtick-name", "parse", "y ~ `" + "n" * 19_990 + "`", None),
    (
        "expansion-prints-too-long",
        "parse",
        "y ~ (" + " + ".join(f"`{c * 400}`" for c in "abcdefghij") + ")^2",
        "the expanded formula is too big",
    ),
    ("pow-of-neg-prints-deeper", "parse", "y ~ I(" + "^-".join(["x"] * 70) + ")", "the expanded formula is too big"),
    ("prior-1e999", "prior", "normal(0, 1e999)", "the number 1e999 is too large: it must be a finite number"),
    ("prior-nan", "prior", "lkj(nan)", "'nan' is not a number a prior can take"),
    ("prior-minus-inf", "prior", "normal(0, -Inf)", "'-Inf' is not a number a prior can take"),
    ("prior-keyword-inf", "prior", "student_t(df=infinity, 0, 1)", "'infinity' is not a number a prior can take"),
    ("prior-named-nan", "prior", "nan(0, 1", "syntax error at end of text"),
    # (a review) the word only where a number goes: elsewhere the real fault is named
    ("prior-keyword-named-inf", "prior", "normal(inf=0, 1 2)", "syntax error at '2'"),
    ("prior-inf-after-semicolon", "prior", "normal(0, 1); inf", "';' is not allowed"),
    # (a sign apart from its number is the number's, '- 1' is -1: so is '- inf' the word's)
    ("prior-sign-newline-inf", "prior", "normal(0, -\ninf)", "'-inf' is not a number a prior can take"),
    ("prior-sign-space-inf", "prior", "normal(mu = - inf)", "'-inf' is not a number a prior can take"),
    # (a second review) any whitespace the grammar takes may stand around the word
    ("prior-newline-inf", "prior", "normal(0,\ninf)", "'inf' is not a number a prior can take"),
    ("prior-crlf-minus-inf", "prior", "normal(0,\r\n  -inf\f)", "'-inf' is not a number a prior can take"),
    ("prior-dotless-i", "prior", "normal(0, \u0131nf)", "unexpected character"),
    # a fault before the word is named as itself; an unclosed call ending in the word names the word
    ("prior-fault-before-inf", "prior", "normal(0, 1 2, inf)", "syntax error at '2'"),
    ("prior-unclosed-nan", "prior", "normal(0, nan", "'nan' is not a number a prior can take"),
    ("prior-nan-before-fault", "prior", "normal(nan, 1 2)", "'nan' is not a number a prior can take"),
    ("prior-long", "prior", "normal(" + ", ".join(["1"] * 2_490) + ")", None),
    ("NUL", "parse", "y ~ x\x00 + z", "unexpected character '\\x00'"),
]


@pytest.mark.parametrize("entry,text,outcome", [a[1:] for a in ADVERSARIAL], ids=[a[0] for a in ADVERSARIAL])
def test_adversarial_input(entry: str, text: str, outcome: str | None) -> None:
    """Each named input gives the expected outcome in under a second of wall time."""
    error, wall = check(entry, text)
    assert wall < SECONDS, f"{wall:.2f} s"
    if outcome is None:
        assert error is None, error
    else:
        assert error is not None and error.message.startswith(outcome), error
