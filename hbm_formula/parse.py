"""Formula and prior text → IR, through the Lark grammar in ``grammar/``.

This is the only module that imports lark, and the only place that decides
which function names may appear in a formula (the whitelist): whatever reaches
formulaic's evaluator later is printed from an IR this module has checked.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from . import functions as _fn
from .errors import FormulaError, PriorError
from .families import DPAR_NAMES, resolve_family
from .ir import (
    PARAMETERIZATIONS,
    BinOp,
    Call,
    Expr,
    Family,
    Formula,
    GroupTerm,
    Linear,
    ModelSpec,
    Neg,
    Num,
    Prior,
    PriorDist,
    Response,
    Str,
    Term,
    Var,
    expr_calls,
    expr_vars,
)

# ---------------------------------------------------------------- whitelists
# The function tables (names, argument shapes, implementations) live in functions.py:
# a name is allowed only where it is implemented.
TERM_FUNCTIONS = _fn.TERM_FUNCTIONS
CONTRAST_FUNCTIONS = _fn.CONTRASTS
RESPONSE_FUNCTIONS = _fn.RESPONSE_FUNCTIONS
ADDTERM_FUNCTIONS = _fn.ADDTERMS
NL_FUNCTIONS = _fn.NL_FUNCTIONS
LOGICAL_NAMES = _fn.LOGICAL_NAMES
Table = Mapping[str, _fn.Fn]


@functools.cache
def _parser() -> Lark:
    return Lark.open_from_package(
        "hbm_formula.grammar",
        "formula.lark",
        parser="lalr",
        start=["model", "nl_model", "param", "prior", "hypothesis"],
        propagate_positions=True,
        maybe_placeholders=False,
    )


# ---------------------------------------------------------------- syntax errors
# Friendly messages, chosen by the parser state a malformed example reaches
# (lark's ``match_examples``). The first matching label wins.
_SYNTAX_EXAMPLES: dict[str, list[str]] = {
    "the response is missing before '~'": ["~ x", "~ x + z"],
    "the right-hand side is empty: write the terms after '~' (use 1 for an intercept-only model)": [
        "y ~",
        "y ~ x + (1 | g) ~",
    ],
    "expected '~' between the response and the terms": ["y x", "y + x z"],
    "a formula has a single '~'": ["y ~ ~ x", "y ~ x ~ z"],
    "an operator needs a term on its right": ["y ~ x +", "y ~ x -", "y ~ x *", "y ~ x:"],
    "two operators in a row: an operator needs a term on both sides": [
        "y ~ x ++ z",
        "y ~ x + * z",
        "y ~ x * + z",
        "y ~ x + : z",
    ],
    "unclosed parenthesis: add ')'": [
        "y ~ (1 | g",
        "y ~ (x",
        "y ~ x + (1 + x | g) + (1 | g",
        "y ~ log(x",
        "y ~ (1 + x",
    ],
    "group term needs a grouping factor after '|', e.g. (1 | g)": ["y ~ x + (1 | )", "y ~ (x || )"],
    "group term needs terms before '|', e.g. (1 | g)": ["y ~ x + ( | g)", "y ~ x + ( || g)"],
    "a grouping factor must be a column name, an interaction a:b or a nesting a/b": [
        "y ~ x + (1 | g + h)",
        "y ~ x + (1 | log(g))",
        "y ~ x + (1 | 1)",
        "y ~ x + (1 | g * h)",
        "y ~ x + (1 | g - h)",
        "y ~ (1 | g:1)",
    ],
    "too many '|' in a group term: write (terms | g), (terms || g) or (terms | ID | g)": [
        "y ~ x + (1 | g | h | k)",
        "y ~ x + (1 ||| g)",
        "y ~ x + (1 || g | h)",
        "y ~ (1 | a | b | c | d)",
    ],
    "unbalanced parenthesis: this ')' has no matching '('": ["y ~ x + z)", "y ~ x)", "y ~ (x + z))"],
    "'|' belongs inside a group term in parentheses, e.g. (1 | g)": ["y ~ 1 | g)", "y ~ x + 1 | g", "y ~ x || g"],
    "two terms next to each other: join them with an operator such as '+' or ':'": [
        "y ~ x + 3x",
        "y ~ x z",
        "y ~ 2 x",
        "y ~ x + (1 | g) z",
    ],
}

_CHAR_HINTS = {
    ".": "attribute access is not allowed in a formula (quote a column name containing '.' in backticks: `log.radon`)",
    ";": "';' is not allowed: a formula is a single expression",
    '"': "unterminated string",
    "'": "unterminated string",
    "[": "list literals are not allowed in a formula",
    "{": "dict literals are not allowed in a formula",
    "`": "unterminated backtick-quoted name",
}


def _syntax_error(text: str, err: UnexpectedInput, start: str, cls: type[FormulaError]) -> FormulaError:
    pos = err.pos_in_stream if err.pos_in_stream is not None else len(text)
    end = pos + 1
    if isinstance(err, UnexpectedToken) and err.token is not None and err.token.type != "$END":
        end = err.token.end_pos or pos + 1
        shown = f"'{err.token}'"
    elif isinstance(err, UnexpectedEOF) or (isinstance(err, UnexpectedToken) and err.token.type == "$END"):
        pos, end = len(text), len(text) + 1
        shown = "end of text"
    else:
        shown = f"'{text[pos]}'" if pos < len(text) else "end of text"
    if isinstance(err, UnexpectedToken) and err.token.type == "STRING":
        return cls("a string is not a term: name a column (quote names with spaces in backticks: `my col`)", text, pos, end)
    if isinstance(err, UnexpectedCharacters):
        ch = text[pos] if pos < len(text) else ""
        hint = _CHAR_HINTS.get(ch, f"unexpected character {ch!r}")
        return cls(hint, text, pos, pos + 1)
    label = None
    if start == "model":
        try:
            label = err.match_examples(
                lambda s: _parser().parse(s, start="model"), _SYNTAX_EXAMPLES, use_accepts=True
            )
        except Exception:  # noqa: BLE001 - a failed match just means no friendly label
            label = None
    expected = sorted(_describe(t) for t in getattr(err, "expected", ()) or ())
    exp_text = f" (expected {', '.join(expected[:8])})" if expected else ""
    msg = f"{label}: found {shown}" if label else f"syntax error at {shown}{exp_text}"
    return cls(msg, text, pos, end)


_TOKEN_NAMES = {
    "TILDE": "'~'", "BAR": "'|'", "DBAR": "'||'", "PLUS": "'+'", "MINUS": "'-'", "POW": "'**'",
    "STAR": "'*'", "SLASH": "'/'", "COLON": "':'", "CARET": "'^'", "LPAR": "'('", "RPAR": "')'",
    "COMMA": "','", "EQ": "'='", "LT": "'<'", "GT": "'>'", "NAME": "a name", "BQNAME": "a `quoted name`",
    "NUMBER": "a number", "STRING": "a string", "$END": "end of text",
}


def _describe(tok: str) -> str:
    return _TOKEN_NAMES.get(tok, tok)


def _parse_tree(text: str, start: str, cls: type[FormulaError] = FormulaError) -> Tree:
    if not isinstance(text, str):
        raise cls(f"expected a formula string, got {type(text).__name__}")
    if not text.strip():
        raise cls("the formula is empty", text, 0, 1)
    try:
        return _parser().parse(text, start=start)
    except UnexpectedInput as err:
        raise _syntax_error(text, err, start, cls) from None


# ---------------------------------------------------------------- tree → IR
def _span(node: Tree | Token) -> tuple[int, int] | None:
    if isinstance(node, Token):
        return (node.start_pos, node.end_pos)
    meta = node.meta
    if getattr(meta, "empty", True):
        return None
    return (meta.start_pos, meta.end_pos)


@dataclass
class _Terms:
    """Intermediate result of formula algebra on a sum."""

    intercept: bool | None = None  # None: not said (default applies)
    terms: list[Term] = field(default_factory=list)
    groups: list[GroupTerm] = field(default_factory=list)
    offsets: list[Expr] = field(default_factory=list)
    number: tuple[int, tuple[int, int] | None] | None = None  # a bare 0/1 literal

    def add_terms(self, terms: Iterable[Term]) -> None:
        keys = {t.key for t in self.terms}
        for t in terms:
            if t.key not in keys:
                self.terms.append(t)
                keys.add(t.key)


class _Builder:
    """Walks a parse tree of ``text`` into IR nodes, checking as it goes."""

    def __init__(self, text: str) -> None:
        self.text = text

    def err(self, msg: str, node: Tree | Token | tuple[int, int] | None) -> FormulaError:
        span = node if isinstance(node, tuple) or node is None else _span(node)
        if span is None:
            return FormulaError(msg, self.text)
        return FormulaError(msg, self.text, span[0], span[1])

    # ---- names and expressions -------------------------------------------------
    def name(self, tok: Token) -> str:
        s = str(tok)
        if tok.type == "BQNAME":
            s = s[1:-1]
            if not s.strip():
                raise self.err("an empty backtick-quoted name", tok)
            return s
        if s.startswith("__"):
            raise self.err(f"names starting with '__' are not allowed: '{s}'", tok)
        return s

    def var(self, node: Tree) -> Var:
        tok = node.children[0]
        return Var(self.name(tok), span=_span(tok))

    def call(self, node: Tree, allowed: Table, where: str) -> Call:
        name_tok = node.children[0]
        fn = str(name_tok)
        if fn not in allowed:
            names = ", ".join(sorted(set(allowed) - {"offset", "cbind"}))
            raise self.err(f"function '{fn}' is not allowed {where}; allowed: {names}", name_tok)
        spec = allowed[fn]
        args: list[Expr] = []
        kwargs: list[tuple[str, Expr]] = []
        for ch in node.children[1:]:
            if isinstance(ch, Tree) and ch.data == "args":
                for a in ch.children:
                    if not isinstance(a, Tree):
                        continue
                    if a.data == "posarg":
                        if kwargs:
                            raise self.err(f"{fn}(): a positional argument after a keyword argument", a)
                        if fn == "C" and len(args) == 1:
                            args.append(self.contrast(a.children[0]))
                        else:
                            strings = fn in CONTRAST_FUNCTIONS
                            args.append(self.arith(a.children[0], allowed, where, strings=strings))
                    else:
                        key = str(a.children[0])
                        if key not in spec.keywords:
                            known = f"; it takes {', '.join(spec.keywords)}" if spec.keywords else ""
                            raise self.err(f"{fn}() has no argument '{key}'{known}", a.children[0])
                        if any(k == key for k, _ in kwargs):
                            raise self.err(f"{fn}() got '{key}' twice", a.children[0])
                        kwargs.append((key, self.keyword_value(a.children[2], spec.keywords[key], fn, key, allowed, where)))
        if len(args) not in spec.arity:
            raise self.err(f"{fn}() is written {spec.usage}", node)
        if fn in ("poly", "bs") and len(args) == 2 and not isinstance(args[1], Num):
            raise self.err(f"{fn}(): the degree must be a number, e.g. {spec.usage}", node)
        return Call(fn, tuple(args), tuple(kwargs), span=_span(node))

    def keyword_value(self, node: Tree, kind: str, fn: str, key: str, allowed: Table, where: str) -> Expr:
        """A keyword argument's value: a number, a logical constant (TRUE/FALSE), or (trunc bounds) an expression."""
        value = self.arith(node, allowed, where)
        if kind == "logical" and not (isinstance(value, Var) and value.name in LOGICAL_NAMES):
            raise self.err(f"{fn}(..., {key} = TRUE or FALSE)", node)
        is_number = isinstance(value, Num) or (isinstance(value, Neg) and isinstance(value.operand, Num))
        if kind == "number" and not is_number:
            raise self.err(f"{fn}(..., {key} = a number)", node)
        return value

    def contrast(self, node: Tree) -> Expr:
        """The coding of ``C(x, coding)``: ``Treatment('b')``, ``Sum``, ``Sum()``, ..."""
        if isinstance(node, Tree) and node.data == "var" and str(node.children[0]) in CONTRAST_FUNCTIONS:
            return Call(str(node.children[0]), (), (), span=_span(node))
        if isinstance(node, Tree) and node.data == "call" and str(node.children[0]) in CONTRAST_FUNCTIONS:
            c = self.call(node, CONTRAST_FUNCTIONS, "as a contrast coding")
            for a in c.args:
                if not isinstance(a, (Str, Num)):
                    raise self.err("a contrast's reference level is a string or a number, e.g. Treatment('b')", node)
            return c
        names = ", ".join(sorted(CONTRAST_FUNCTIONS))
        raise self.err(f"the second argument of C() is a contrast coding: {names}, e.g. C(x, Treatment('b'))", node)

    def arith(self, node: Tree | Token, allowed: Table, where: str, strings: bool = False) -> Expr:
        if isinstance(node, Token):  # pragma: no cover - grammar wraps tokens
            raise self.err("unexpected token", node)
        d = node.data
        if d == "a_num":
            return Num(_finite(node.children[0], self), span=_span(node))
        if d == "a_str":
            if not strings:
                raise self.err("string literals are only allowed inside contrast codings such as C(x, Treatment('b'))", node)
            raw = str(node.children[0])
            return Str(raw[1:-1], span=_span(node))
        if d == "var":
            return self.var(node)
        if d == "call":
            # contrast codings such as Treatment('b') may hold strings
            c = self.call(node, allowed, where)
            return c
        if d == "a_paren":
            return self.arith(node.children[1], allowed, where, strings)
        if d == "a_neg":
            return Neg(self.arith(node.children[1], allowed, where), span=_span(node))
        ops = {"a_add": "+", "a_sub": "-", "a_mul": "*", "a_div": "/", "a_pow": "**"}
        if d in ops:
            left = self.arith(node.children[0], allowed, where)
            right = self.arith(node.children[2], allowed, where)
            if d == "a_div" and isinstance(right, Num) and right.value == 0:
                raise self.err("division by zero", node.children[2])
            return BinOp(ops[d], left, right, span=_span(node))  # type: ignore[arg-type]
        raise self.err(f"unexpected {d}", node)  # pragma: no cover

    # ---- formula algebra ---------------------------------------------------------
    def sum(self, node: Tree | Token, in_group: bool = False) -> _Terms:
        d = node.data if isinstance(node, Tree) else None
        if d == "add":
            left = self.sum(node.children[0], in_group)
            right = self.sum(node.children[2], in_group)
            return self._union(left, right)
        if d == "sub":
            left = self.sum(node.children[0], in_group)
            right = self.sum(node.children[2], in_group)
            return self._difference(left, right, node.children[2])
        if d == "neg":
            right = self.sum(node.children[1], in_group)
            return self._difference(_Terms(), right, node.children[1])
        if d == "number":
            tok = node.children[0]
            v = float(tok)
            if v not in (0.0, 1.0):
                raise self.err(f"a number as a term must be 0 or 1 (the intercept), not {tok}", tok)
            out = _Terms(intercept=v == 1.0, number=(int(v), _span(tok)))
            return out
        if d == "var":
            v = self.var(node)
            return _Terms(terms=[Term((v,), span=v.span)])
        if d == "call":
            c = self.call(node, TERM_FUNCTIONS, "in a formula term")
            if c.fn == "offset":
                if in_group:
                    raise self.err("offset() cannot appear inside a group term", node)
                if len(c.args) != 1 or c.kwargs:
                    raise self.err("offset() takes exactly one argument", node)
                return _Terms(offsets=[c.args[0]])
            return _Terms(terms=[Term((c,), span=c.span)])
        if d == "paren":
            return self.sum(node.children[1], in_group)
        if d in ("group", "ugroup", "idgroup"):
            if in_group:
                raise self.err("group terms cannot be nested inside another group term", node)
            return _Terms(groups=self.group(node))
        if d == "colon":
            return self._product(node, in_group, keep_main=False)
        if d == "star":
            return self._product(node, in_group, keep_main=True)
        if d == "nest":
            return self._nest(node, in_group)
        if d == "power":
            return self._power(node, in_group)
        raise self.err("unexpected element in formula", node)  # pragma: no cover

    def _plain(self, t: _Terms, node: Tree | Token, op: str) -> list[Term]:
        """The terms of an operand of ``:``, ``*``, ``/`` or ``^`` (no intercept literals or groups)."""
        if t.groups:
            raise self.err(f"group terms cannot be combined with '{op}'", node)
        if t.offsets:
            raise self.err(f"offset() cannot be combined with '{op}'", node)
        if t.number is not None:
            raise self.err(f"a number cannot be part of an interaction ('{op}'); use column names", t.number[1] or node)
        if not t.terms:
            raise self.err(f"'{op}' needs terms on both sides", node)
        return t.terms

    def _product(self, node: Tree, in_group: bool, keep_main: bool) -> _Terms:
        op = ":" if not keep_main else "*"
        a = self._plain(self.sum(node.children[0], in_group), node.children[0], op)
        b = self._plain(self.sum(node.children[2], in_group), node.children[2], op)
        out = _Terms()
        if keep_main:
            out.add_terms(a)
            out.add_terms(b)
        out.add_terms(_cross(a, b))
        return out

    def _nest(self, node: Tree, in_group: bool) -> _Terms:
        a = self._plain(self.sum(node.children[0], in_group), node.children[0], "/")
        b = self._plain(self.sum(node.children[2], in_group), node.children[2], "/")
        out = _Terms()
        out.add_terms(a)
        all_a: list[Expr] = []
        for t in a:
            for f in t.factors:
                if str(f) not in {str(x) for x in all_a}:
                    all_a.append(f)
        out.add_terms(_cross([Term(tuple(all_a))], b))
        return out

    def _power(self, node: Tree, in_group: bool) -> _Terms:
        base = self._plain(self.sum(node.children[0], in_group), node.children[0], "^")
        tok = node.children[2]
        n = float(tok)
        if not n.is_integer() or n < 1:
            raise self.err("the power of a term must be a positive whole number, e.g. (a + b)^2", tok)
        out = _Terms()
        out.add_terms(base)
        cur = list(base)
        for _ in range(int(n) - 1):
            cur = _cross(cur, base)
            out.add_terms(cur)
        return out

    def _union(self, a: _Terms, b: _Terms) -> _Terms:
        out = _Terms(intercept=a.intercept)
        if b.intercept is not None:
            out.intercept = b.intercept
        out.add_terms(a.terms)
        out.add_terms(b.terms)
        out.groups = a.groups + b.groups
        out.offsets = a.offsets + b.offsets
        return out

    def _difference(self, a: _Terms, b: _Terms, node: Tree | Token) -> _Terms:
        out = _Terms(intercept=a.intercept, groups=list(a.groups), offsets=list(a.offsets))
        if b.groups or b.offsets:
            raise self.err("only population terms and the intercept can be removed with '-'", node)
        if b.number is not None:
            # "- 1" removes the intercept, "- 0" adds it back (as in R)
            out.intercept = b.number[0] == 0
        drop = {t.key for t in b.terms}
        out.add_terms(t for t in a.terms if t.key not in drop)
        return out

    # ---- group terms ---------------------------------------------------------------
    def group(self, node: Tree) -> list[GroupTerm]:
        ch = node.children
        lhs = self.sum(ch[1], in_group=True)
        if node.data == "idgroup":
            gid: str | None = str(ch[3])
            gnode = ch[5]
            correlated = True
        else:
            gid = None
            gnode = ch[3]
            correlated = node.data == "group"
        intercept = lhs.intercept if lhs.intercept is not None else True
        if not intercept and not lhs.terms:
            raise self.err("group term has no terms: (0 | g) varies nothing", ch[1])
        factors = self.gfactors(gnode)
        out = []
        for grp in factors:
            out.append(
                GroupTerm(
                    intercept=intercept,
                    terms=tuple(lhs.terms),
                    group=grp,
                    correlated=correlated,
                    id=gid,
                    span=_span(node),
                )
            )
        return out

    def gfactors(self, node: Tree) -> list[tuple[str, ...]]:
        """``a`` → [(a,)]; ``a:b`` → [(a, b)]; ``a/b/c`` → [(a,), (a, b), (a, b, c)]."""
        if node.data == "gvar":
            return [(self.name(node.children[0]),)]
        left = self.gfactors(node.children[0])
        right = self.name(node.children[2].children[0])
        last = left[-1]
        if node.data == "ginter":
            return left[:-1] + [last + (right,)]
        return left + [last + (right,)]

    def linear(self, node: Tree) -> Linear:
        t = self.sum(node)
        intercept = t.intercept if t.intercept is not None else True
        if not intercept and not t.terms and not t.groups and not t.offsets:
            raise self.err("the model has no terms: '0' or '-1' alone removes everything", node)
        return Linear(
            intercept=intercept,
            terms=tuple(t.terms),
            group_terms=tuple(t.groups),
            offsets=tuple(t.offsets),
            span=_span(node),
        )

    # ---- response --------------------------------------------------------------------
    def response(self, node: Tree) -> Response:
        expr = self.arith(node.children[0], RESPONSE_FUNCTIONS, "in the response")
        if isinstance(expr, Num):
            raise self.err("the response must be a column, not a number", node.children[0])
        for c in expr_calls(expr):
            if c.fn == "cbind":
                if c is not expr:
                    raise self.err("cbind() must be the whole response", c.span)
                if len(c.args) != 2 or c.kwargs:
                    raise self.err(
                        "cbind() takes two arguments: cbind(successes, failures)", c.span
                    )
        adds: list[Call] = []
        se_sigma = False
        for ch in node.children[1:]:
            if isinstance(ch, Tree) and ch.data == "addterm":
                c = self.call(ch.children[0], ADDTERM_FUNCTIONS, "after '|' in the response")
                if any(a.fn == c.fn for a in adds):
                    raise self.err(f"{c.fn}() is given twice", ch)
                if c.fn == "trunc" and not c.kwargs:
                    raise self.err(f"trunc() needs a bound: {ADDTERM_FUNCTIONS['trunc'].usage}", ch)
                if c.fn == "se":  # se(s, sigma = TRUE): a flag of the response, not an argument
                    flag = c.kwarg("sigma")
                    se_sigma = isinstance(flag, Var) and LOGICAL_NAMES[flag.name]
                    c = Call("se", c.args, (), span=c.span)
                adds.append(c)
        if isinstance(expr, Call) and expr.fn == "cbind" and any(a.fn == "trials" for a in adds):
            raise self.err("use either cbind(successes, failures) or y | trials(n), not both", node)
        return Response(expr, tuple(adds), se_sigma, span=_span(node))


def _cross(a: list[Term], b: list[Term]) -> list[Term]:
    out: list[Term] = []
    for x in a:
        for y in b:
            factors = list(x.factors)
            keys = {str(f) for f in factors}
            for f in y.factors:
                if str(f) not in keys:
                    factors.append(f)
                    keys.add(str(f))
            out.append(Term(tuple(factors)))
    return out


# ---------------------------------------------------------------- public API
def parse_formula(text: str) -> Formula:
    """Parse ``response ~ terms`` into a Formula."""
    tree = _parse_tree(text, "model")
    b = _Builder(text)
    return Formula(b.response(tree.children[0]), b.linear(tree.children[2]), span=(0, len(text)))


def parse_nl_formula(text: str) -> Formula:
    """Parse ``response ~ expression`` (a non-linear formula)."""
    tree = _parse_tree(text, "nl_model")
    b = _Builder(text)
    rhs = b.arith(tree.children[2], NL_FUNCTIONS, "in a non-linear formula")
    return Formula(b.response(tree.children[0]), rhs, span=(0, len(text)))


def parse_param_formula(text: str, name: str | None = None) -> tuple[str | None, Linear]:
    """Parse ``[name] ~ terms`` (a distributional or non-linear parameter formula)."""
    got, lin, bounds = _parse_param(text, name)
    if bounds != (None, None):
        raise FormulaError("bounds (lb =, ub =) apply to non-linear parameters only", text, text.index(","), len(text))
    return got, lin


def _parse_param(text: str, name: str | None) -> tuple[str | None, Linear, tuple[float | None, float | None]]:
    """``[name] ~ terms [, lb = number] [, ub = number]``."""
    tree = _parse_tree(text, "param")
    b = _Builder(text)
    ch = tree.children
    got = str(ch[0]) if isinstance(ch[0], Token) and ch[0].type == "NAME" else None
    if got is not None and name is not None and got != name:
        raise FormulaError(f"formula names parameter '{got}' but was given for '{name}'", text, 0, len(got))
    sum_node = next(c for c in ch if isinstance(c, Tree) and c.data != "bound")
    lo: float | None = None
    hi: float | None = None
    for c in ch:
        if isinstance(c, Tree) and c.data == "bound":
            key = str(c.children[0])
            if key not in ("lb", "ub"):
                raise FormulaError(f"unknown bound '{key}': use lb = ... or ub = ...", text, *_span(c.children[0]))  # type: ignore[misc]
            val = _pnum(c.children[2], text)
            if key == "lb":
                lo = val
            else:
                hi = val
    if lo is not None and hi is not None and not lo < hi:
        raise FormulaError(f"lb ({lo:g}) must be below ub ({hi:g})", text, text.index(","), len(text))
    return got or name, b.linear(sum_node), (lo, hi)


def parse_prior(text: str) -> PriorDist:
    """Parse a prior such as ``normal(0, 2.5)``; no evaluation involved."""
    tree = _parse_tree(text, "prior", PriorError)
    name = str(tree.children[0])
    args: list[float] = []
    kwargs: list[tuple[str, float]] = []
    for ch in tree.children[1:]:
        if isinstance(ch, Tree) and ch.data == "pargs":
            for a in ch.children:
                if not isinstance(a, Tree):
                    continue
                if a.data == "pposarg":
                    if kwargs:
                        raise PriorError("positional argument after keyword argument", text, *_span(a))  # type: ignore[misc]
                    args.append(_pnum(a.children[0], text, PriorError))
                else:
                    kwargs.append((str(a.children[0]), _pnum(a.children[2], text, PriorError)))
    return PriorDist(name, tuple(args), tuple(kwargs), span=(0, len(text)))


def parse_hypothesis(text: str) -> tuple[Expr, str | None, Expr | None]:
    """``floor < 0``, ``b_x - b_z > 0.5``, ``exp(Intercept) = 2``: (left, comparison, right), over
    parameter names, numbers, arithmetic and the non-linear functions; never evaluated by Python."""
    tree = _parse_tree(text, "hypothesis")
    b = _Builder(text)
    ch = tree.children
    left = b.arith(ch[0], NL_FUNCTIONS, "in a hypothesis")
    if len(ch) == 1:
        return left, None, None
    return left, str(ch[1]), b.arith(ch[2], NL_FUNCTIONS, "in a hypothesis")


def _named_prior(name: str, text: object) -> PriorDist:
    """Parse the prior given for parameter ``name``; errors say which parameter."""
    if not isinstance(text, str):
        raise PriorError(f"prior for '{name}' must be a string such as 'normal(0, 1)', got {type(text).__name__}")
    try:
        return parse_prior(text)
    except PriorError as err:
        raise PriorError(f"prior for '{name}': {err.message}", err.text, err.start, err.end) from None


def _pnum(node: Tree, text: str = "", cls: type[FormulaError] = FormulaError) -> float:
    toks = [t for t in node.children if isinstance(t, Token)]
    v = float(toks[-1])
    if not math.isfinite(v):
        raise cls(f"'{toks[-1]}' is not a finite number", text or None, toks[-1].start_pos, toks[-1].end_pos)
    return -v if toks[0].type == "MINUS" else v


def _finite(tok: Token, b: _Builder) -> float:
    v = float(tok)
    if not math.isfinite(v):
        raise b.err(f"'{tok}' is not a finite number", tok)
    return v


def parse(
    formula: str | ModelSpec,
    *,
    family: str | Family | None = None,
    link: str | None = None,
    priors: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    dpars: Mapping[str, str] | None = None,
    nl: Mapping[str, str] | None = None,
    param: str | Mapping[str, str] | None = None,
) -> ModelSpec:
    """Parse a formula (and optional parameter formulas and priors) into a ModelSpec.

    ``formula`` may hold several lines, brms ``bf()`` style: the first is the
    model formula, each further line ``name ~ terms`` is a distributional
    parameter formula (or, when the first line is non-linear, a non-linear
    parameter formula).
    """
    if isinstance(formula, ModelSpec):
        spec = formula
    else:
        if not isinstance(formula, str):
            raise FormulaError(f"expected a formula string, got {type(formula).__name__}")
        lines = [ln for ln in formula.splitlines() if ln.strip()]
        if not lines:
            raise FormulaError("the formula is empty", formula, 0, 1)
        texts: dict[str, str] = {}
        for ln in lines[1:]:
            pname = _param_name(ln)
            if pname in texts:
                raise FormulaError(f"parameter '{pname}' has two formulas", ln, 0, len(pname))
            texts[pname] = ln
        for k, txt in (nl or {}).items():
            txt = _named_formula(k, txt)
            if k in texts:
                raise FormulaError(f"parameter '{k}' has two formulas", txt)
            texts[k] = txt
        nl_names = {k for k in texts if k in (nl or {}) or not _is_dpar_name(k)}
        # a formula line for a name that is not a distributional parameter makes the model non-linear
        is_nl = bool(nl_names) or _calls_dose_model(lines[0])
        main = parse_nl_formula(lines[0]) if is_nl else parse_formula(lines[0])
        nlpars: dict[str, Linear] = {}
        dpar_map: dict[str, Linear] = {}
        bounds: list[tuple[str, float | None, float | None]] = []
        for k, txt in texts.items():
            if is_nl and k in nl_names:
                _, lin, (lo, hi) = _parse_param(txt, k)
                nlpars[k] = lin
                if lo is not None or hi is not None:
                    bounds.append((k, lo, hi))
            else:
                dpar_map[k] = parse_param_formula(txt, k)[1]
        for k, txt in (dpars or {}).items():
            txt = _named_formula(k, txt)
            if k in dpar_map:
                raise FormulaError(f"parameter '{k}' has two formulas", txt)
            dpar_map[k] = parse_param_formula(txt, k)[1]
        if is_nl:
            for name in _dose_model_params(main.rhs, lines[0]):  # type: ignore[arg-type]
                if name not in nlpars:  # a dose-response parameter without a formula: one value for all rows
                    nlpars[name] = Linear()
            _check_nl(main, nlpars, texts, lines[0])
        _check_response_not_predictor(main, lines[0])
        spec = ModelSpec(main, tuple(dpar_map.items()), tuple(nlpars.items()), nlbounds=tuple(bounds))
    if family is not None or link is not None or not isinstance(formula, ModelSpec):
        fam_name = family.name if isinstance(family, Family) else (family or spec.family.name)
        fam_link = link or (family.link if isinstance(family, Family) else None)
        spec = replace(spec, family=resolve_family(str(fam_name), fam_link))
    if priors:
        items = priors.items() if isinstance(priors, Mapping) else priors
        spec = replace(spec, priors=spec.priors + tuple(Prior(str(k), _named_prior(str(k), v)) for k, v in items))
    if param is not None:
        spec = with_param(spec, param)
    return spec


def _named_formula(name: str, text: str) -> str:
    """A parameter formula given by name (``dpars={"sigma": "x"}``) may omit ``sigma ~``."""
    return text if "~" in text else f"{name} ~ {text}"


def _param_name(line: str) -> str:
    name, _ = parse_param_formula_name(line)
    return name


def parse_param_formula_name(line: str) -> tuple[str, Tree]:
    tree = _parse_tree(line, "param")
    first = tree.children[0]
    if not (isinstance(first, Token) and first.type == "NAME"):
        raise FormulaError("a parameter formula needs a name before '~', e.g. sigma ~ x", line, 0, 1)
    return str(first), tree


_DOSE_MODEL_CALL = re.compile(r"(?<![\w`])(" + "|".join(_fn.DOSE_MODELS) + r")\s*\(")


def _calls_dose_model(line: str) -> bool:
    """Whether a formula's right-hand side calls a dose-response model (LL4, ...): then it is
    non-linear even without parameter lines (``resp ~ LL4(dose, b, c, d, e)``)."""
    rhs = line.split("~", 1)[1] if "~" in line else ""
    return bool(_DOSE_MODEL_CALL.search(rhs))


def _dose_model_params(e: Expr, line: str) -> list[str]:
    """The parameter names of dose-response calls; each argument after the dose must be a
    parameter name or a number (a fixed value, as drc's ``fixed =``)."""
    out: list[str] = []
    for c in expr_calls(e):
        if c.fn not in _fn.DOSE_MODELS:
            continue
        for a in c.args[1:]:
            fixed = isinstance(a, Num) or (isinstance(a, Neg) and isinstance(a.operand, Num))
            if isinstance(a, Var):
                out.append(a.name)
            elif not fixed:
                start, end = a.span or c.span or (0, len(line))
                raise FormulaError(
                    f"{_fn.DOSE_MODELS[c.fn].usage}: after the dose, each argument is a parameter name or a number",
                    line, start, end,
                )
    return out


def _check_response_not_predictor(main: Formula, line: str) -> None:
    """``y ~ y + x``: a column cannot explain itself (R warns and drops it; we say so and stop)."""
    response = {v.name for v in expr_vars(main.response.expr)}
    rhs: list[Var] = []
    if isinstance(main.rhs, Linear):
        for t in main.rhs.terms:
            for f in t.factors:
                rhs += expr_vars(f)
        for o in main.rhs.offsets:
            rhs += expr_vars(o)
        for g in main.rhs.group_terms:
            for t in g.terms:
                for f in t.factors:
                    rhs += expr_vars(f)
    else:
        rhs = expr_vars(main.rhs)
    for v in rhs:
        if v.name in response:
            start, end = v.span or (0, len(line))
            raise FormulaError(
                f"the response '{v.name}' also appears on the right-hand side: a column cannot predict itself",
                line, start, end,
            )


def _check_nl(main: Formula, nlpars: dict[str, Linear], texts: dict[str, str], line: str) -> None:
    """Every declared parameter is used by the expression; at least one is."""
    used = {v.name for v in expr_vars(main.rhs)}  # type: ignore[arg-type]
    for k in nlpars:
        if k not in used:
            txt = texts[k]
            start = txt.find(k) if txt.lstrip().startswith(k) else 0
            raise FormulaError(
                f"non-linear parameter '{k}' has a formula but the expression never uses it "
                f"(names in the expression: {', '.join(sorted(used))})",
                txt, max(start, 0), max(start, 0) + (len(k) if start >= 0 else 1),
            )
    if not used & set(nlpars):
        raise FormulaError("a non-linear formula needs parameters: give each a formula, e.g. b ~ 1", line, 0, len(line))


def _is_dpar_name(name: str) -> bool:
    return name in DPAR_NAMES


def with_param(spec: ModelSpec, param: str | Mapping[str, str]) -> ModelSpec:
    """Set the parameterization of group terms: one value for all, or a map
    from grouping factor (``"county"``, ``"a:b"``) to value."""
    if isinstance(param, str):
        mapping: dict[str, str] = {"*": param}
    else:
        mapping = dict(param)
    for v in mapping.values():
        if v not in PARAMETERIZATIONS:
            raise FormulaError(f"unknown parameterization '{v}': use one of {', '.join(PARAMETERIZATIONS)}")
    known = {g.group_label for _, lin in spec.predictors() for g in lin.group_terms}
    for k in mapping:
        if k != "*" and k not in known:
            raise FormulaError(
                f"param names grouping factor '{k}', which the formula does not have; grouping factors: {', '.join(sorted(known)) or 'none'}"
            )

    def fix(lin: Linear) -> Linear:
        gts = tuple(
            replace(g, param=mapping.get(g.group_label, mapping.get("*", g.param)))  # type: ignore[arg-type]
            for g in lin.group_terms
        )
        return replace(lin, group_terms=gts)

    formula = spec.formula
    if isinstance(formula.rhs, Linear):
        formula = replace(formula, rhs=fix(formula.rhs))
    return replace(
        spec,
        formula=formula,
        dpars=tuple((n, fix(lin)) for n, lin in spec.dpars),
        nlpars=tuple((n, fix(lin)) for n, lin in spec.nlpars),
    )
