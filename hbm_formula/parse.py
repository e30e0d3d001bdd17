"""Formula and prior text → IR, through the Lark grammar in ``grammar/``.

This is the only module that imports lark, and the only place that decides
which function names may appear in a formula (the whitelist): whatever reaches
formulaic's evaluator later is printed from an IR this module has checked.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterable, Mapping
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


# ---------------------------------------------------------------- limits
# Generous for any formula a person (or a script listing columns) writes, and
# small enough that every input is accepted or rejected in a fraction of a
# second and that no step -- Lark, the tree walk, printing or lowering the IR --
# recurses deeper than Python allows. Each has its own one-line error.
#: characters in one formula (all lines), parameter formula or prior; checked first
MAX_LENGTH = 20_000
#: tokens (names, numbers, operators, parentheses) in one text; checked before Lark parses
MAX_TOKENS = 5_000
#: nesting of parentheses: grouping, group terms and function calls; checked before Lark parses
MAX_DEPTH = 64
#: terms joined by ``+`` or ``-`` in one formula as written, duplicates included (``x + x`` is 2)
MAX_TERMS_WRITTEN = 2_000
#: terms of the expanded formula (after ``*``, ``/``, ``^`` and ``|`` nesting), as its canonical text
#: prints them: population terms, offsets, and each group term with its own terms
MAX_TERMS = 1_000
#: factors in one interaction term (``a:b:c`` has 3) or in one grouping factor (``g1:g2``)
MAX_INTERACTION = 10
#: the power n in ``(a + b)^n``
MAX_POWER = 100
#: the degree of poly() and the df / degree of bs(): each is that many design columns
MAX_BASIS = 50
#: operators (``+ - * / ** ^``, unary minus included) in one arithmetic expression: the response,
#: one function argument, a non-linear formula; bounds the depth of the expression tree
MAX_OPERATORS = 200
#: pairs of terms examined while expanding interactions, summed over one formula
MAX_COMBINATIONS = 100_000
#: parameter formulas of one model: further lines of a multi-line formula plus ``dpars=`` and ``nl=`` entries
MAX_PARAMETERS = 200


def _what(cls: type[FormulaError]) -> str:
    return "prior" if issubclass(cls, PriorError) else "formula"


def _check_length(text: str, cls: type[FormulaError] = FormulaError) -> None:
    """Before anything else looks at the text: every later cost grows with its length."""
    if len(text) > MAX_LENGTH:
        raise cls(
            f"the {_what(cls)} is too long: {len(text):,} characters; the limit is {MAX_LENGTH:,}",
            text,
            MAX_LENGTH,
            MAX_LENGTH + 1,
        )


# one token, as the lexer reads them: quoted names and strings (which may hold
# parentheses), names, numbers, two-character operators, any other character
_TOKENS = re.compile(
    r"`[^`\n\r]+`|'[^'\n\r]*'|\"[^\"\n\r]*\"|[A-Za-z_][A-Za-z0-9_]*"
    r"|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|\*\*|\|\||\S"
)


def _check_tokens(text: str, cls: type[FormulaError] = FormulaError) -> None:
    """Symbols and nesting depth, in one regex scan of the raw text.

    Lark's time grows with the number of tokens (about 10 µs each), and the
    recursive parts of the walk -- parentheses and calls -- with the depth; both
    are bounded here, before Lark starts.
    """
    depth = 0
    for i, m in enumerate(_TOKENS.finditer(text)):
        if i == MAX_TOKENS:
            raise cls(
                f"the {_what(cls)} is too long: the limit is {MAX_TOKENS:,} symbols (names, numbers, operators, parentheses)",
                text,
                m.start(),
                m.end(),
            )
        tok = m.group()
        if tok == "(":
            depth += 1
            if depth > MAX_DEPTH:
                raise cls(
                    f"parentheses nested too deeply: the limit is {MAX_DEPTH} levels of parentheses and calls",
                    text,
                    m.start(),
                    m.end(),
                )
        elif tok == ")":
            depth = max(depth - 1, 0)


#: how the parser is built (part of its cached file's name, with the grammar)
_PARSER_OPTIONS = {"parser": "lalr", "start": ["model", "nl_model", "param", "prior", "hypothesis"],
                   "propagate_positions": True, "maybe_placeholders": False}


def _build_parser() -> Lark:
    """The LALR parser built from the grammar (with its grammar object, which a parser loaded from the cache
    folder lacks: the fuzz tests' strategies read it)."""
    return Lark.open_from_package("hbm_formula.grammar", "formula.lark", **_PARSER_OPTIONS)


@functools.cache
def _parser() -> Lark:
    """The LALR parser of the grammar. Building its tables took 0.25 s of every process's first parse; they are
    kept (``Lark.save``, a pickle) in the cache folder (``infer.cache_dir``, a user's own, as the compiled programs
    beside it), in a file named by a hash of the grammar, the parser's options and the package's version, and by
    Lark's and Python's versions, written as the compiled programs are (``progcache.write``: whole or not at all).
    A file that does not load, or loads with other start rules, is built again and replaced."""
    import hashlib
    import importlib.resources
    import io
    import sys

    import lark

    from . import progcache
    from ._version import __version__
    from .infer import cache_dir

    folder = cache_dir()
    if folder is None:
        return _build_parser()
    made_of = importlib.resources.files("hbm_formula.grammar").joinpath("formula.lark").read_bytes() + repr(
        (sorted(_PARSER_OPTIONS.items()), __version__)).encode()
    path = folder / "lark" / (f"formula-{hashlib.sha256(made_of).hexdigest()[:16]}-lark{lark.__version__}"
                              f"-py{sys.version_info[0]}{sys.version_info[1]}.pickle")
    try:
        with open(path, "rb") as f:
            loaded = Lark.load(f)
        if list(loaded.options.start) == _PARSER_OPTIONS["start"]:
            return loaded
    except Exception:  # noqa: BLE001 - none yet, or damaged: built again (and replaced)
        pass
    parser = _build_parser()
    tables = io.BytesIO()
    parser.save(tables)
    progcache.write(path, tables.getvalue())
    return parser


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
    "the power of a term must be a positive whole number, e.g. (a + b)^2": ["y ~ x^-1", "y ~ (a + b)^c", "y ~ x^(2)"],
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


#: a prior's argument written as a non-finite word (``lkj(nan)``, ``normal(0, -inf)``, ``student_t(df=inf)``): the word
#: (group 1, with its sign, which whitespace may part from it as from a number) standing alone where a number goes,
#: after '(', ',' or '=' and before ',', ')' or the end; a prior has no column names, so in one that does not parse
#: such a word is the cause
_NON_FINITE = re.compile(r"[(,=]\s*((?:[-+]\s*)?(?:nan|inf|infinity))\s*(?:[,)]|$)", re.ASCII | re.IGNORECASE)


#: a bound (``lb = -inf`` of a non-linear parameter or of ``trunc()``) written as a non-finite word (group 2)
_BOUND_NON_FINITE = re.compile(r"\b(lb|ub)\s*=\s*((?:[-+]\s*)?(?:nan|inf|infinity))\b", re.ASCII | re.IGNORECASE)


def _stopped_at(m: re.Match[str], group: int, text: str, pos: int) -> bool:
    """The parser stopped within ``m``'s group or right after it (whitespace between)."""
    return m.start(group) <= pos and not text[m.end(group):pos].strip()


def _syntax_error(text: str, err: UnexpectedInput, start: str, cls: type[FormulaError]) -> FormulaError:
    pos = err.pos_in_stream if err.pos_in_stream is not None else len(text)
    if isinstance(err, UnexpectedEOF) or (isinstance(err, UnexpectedToken) and err.token.type == "$END"):
        pos = len(text)
    if issubclass(cls, PriorError):
        # the word is the fault where the parser stopped at it or just after it (at the token it cannot take after
        # a name); a fault elsewhere is named as itself ('normal(0, 1 2, inf)': the '2')
        word = next((w for w in _NON_FINITE.finditer(text) if _stopped_at(w, 1, text, pos)), None)
        if word is not None:
            shown = "".join(word.group(1).split())  # (a sign may stand apart, as before a number: '- inf')
            return cls(f"'{shown}' is not a number a prior can take: its arguments must be finite numbers",
                       text, word.start(1), word.end(1))
    bound = next((b for b in _BOUND_NON_FINITE.finditer(text) if _stopped_at(b, 2, text, pos)), None)
    if bound is not None:
        shown = "".join(bound.group(2).split())
        return cls(f"'{shown}' is not a bound: {bound.group(1)} is a finite number (leave it out for none)", text,
                   bound.start(2), bound.end(2))
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
        raise cls(f"the {_what(cls)} is empty" + (": give a distribution, e.g. normal(0, 1)"
                                                  if issubclass(cls, PriorError) else ""), text, 0, 1)
    _check_length(text, cls)
    _check_tokens(text, cls)
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


#: the node kinds of each left-deep chain Lark builds for ``x1 + x2 + ...``, ``a * b / c``, ``a:b:c``
_CHAINS: dict[str, frozenset[str]] = {
    kind: kinds
    for kinds in (frozenset({"add", "sub"}), frozenset({"star", "nest"}), frozenset({"colon"}))
    for kind in kinds
}
#: the chain of a grouping factor, ``a/b:c``
_GROUP_CHAIN = frozenset({"ginter", "gnest"})
_ARITH_OPS = {"a_add": "+", "a_sub": "-", "a_mul": "*", "a_div": "/", "a_pow": "**"}
#: tokens counted against MAX_OPERATORS in an arithmetic expression
_OPERATOR_TOKENS = frozenset({"PLUS", "MINUS", "STAR", "SLASH", "POW", "CARET"})


def _left_spine(node: Tree | Token, kinds: frozenset[str]) -> tuple[Tree | Token, list[Tree]]:
    """``((x0 op x1) op x2) ...`` → ``x0`` and the chain's nodes, innermost first.

    Lark builds a sum of n terms as a tree n levels deep; walking its left
    spine in a loop lets the caller fold it without any recursion.
    """
    steps: list[Tree] = []
    while isinstance(node, Tree) and node.data in kinds:
        steps.append(node)
        node = node.children[0]
    steps.reverse()
    return node, steps


def _number(tok: Token, text: str, cls: type[FormulaError] = FormulaError) -> float:
    """A NUMBER token as a float; ``1e999`` reads as inf, which no later step could use."""
    v = float(tok)
    if not math.isfinite(v):
        raise cls(f"the number {tok} is too large: it must be a finite number", text, tok.start_pos, tok.end_pos)
    return v


@dataclass
class _Terms:
    """Intermediate result of formula algebra on a sum."""

    intercept: bool | None = None  # None: not said (default applies)
    #: population terms by ``Term.key`` (computed once per term), in order of first appearance
    terms: dict[frozenset[str], Term] = field(default_factory=dict)
    groups: list[GroupTerm] = field(default_factory=list)
    offsets: list[Expr] = field(default_factory=list)
    number: tuple[int, tuple[int, int] | None] | None = None  # a bare 0/1 literal
    group_size: int = 0  # the group terms and all their terms, kept as groups grow

    def extend(self, other: _Terms) -> None:
        """Add the terms of ``other`` not already here (a term is its set of factors)."""
        for key, term in other.terms.items():
            self.terms.setdefault(key, term)

    @property
    def size(self) -> int:
        """What MAX_TERMS limits: the terms the expanded formula prints."""
        return len(self.terms) + len(self.offsets) + self.group_size


class _Builder:
    """Walks a parse tree of ``text`` into IR nodes, checking as it goes.

    Long chains (sums, products, arithmetic) are walked in loops; only
    parentheses, group terms and calls recurse, and ``_check_tokens`` has
    bounded those before the walk starts.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.written = 1  # terms joined by '+' or '-' so far, against MAX_TERMS_WRITTEN
        self.combinations = 0  # pairs of terms examined so far, against MAX_COMBINATIONS
        self.in_expr = False  # inside an expression whose operators are counted already

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
        if fn in ("poly", "bs"):  # each makes that many design columns: a whole number within MAX_BASIS
            counts = [("degree", args[1])] if len(args) == 2 else []
            counts += [(k, v) for k, v in kwargs if k in ("df", "degree")]
            for key, v in counts:
                n = v.value if isinstance(v, Num) else -1.0
                if not (n == int(n) and 1 <= n <= MAX_BASIS):
                    raise self.err(f"{fn}(): {key} must be a whole number from 1 to {MAX_BASIS}, got {v}", node)
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
        """An arithmetic expression; its operators are counted first (MAX_OPERATORS)
        unless it is an argument inside an expression counted already."""
        if isinstance(node, Token):  # pragma: no cover - grammar wraps tokens
            raise self.err("unexpected token", node)
        if self.in_expr:
            return self._arith(node, allowed, where, strings)
        self._count_operators(node)
        self.in_expr = True
        try:
            return self._arith(node, allowed, where, strings)
        finally:
            self.in_expr = False

    def _count_operators(self, node: Tree) -> None:
        """MAX_OPERATORS, before converting: the IR of an expression is a binary
        tree as deep as its longest chain, and printing or lowering it recurses."""
        ops: list[Token] = []
        todo = [node]
        while todo:
            for ch in todo.pop().children:
                if isinstance(ch, Tree):
                    todo.append(ch)
                elif ch.type in _OPERATOR_TOKENS:
                    ops.append(ch)
        if len(ops) > MAX_OPERATORS:
            ops.sort(key=lambda t: t.start_pos)
            raise self.err(
                f"expression too long: the limit is {MAX_OPERATORS} operators in one expression", ops[MAX_OPERATORS]
            )

    def _arith(self, node: Tree, allowed: Table, where: str, strings: bool) -> Expr:
        """Post-order conversion with an explicit stack, so ``a + b + ...``, ``- - x``
        and ``x^x^...`` chains cost no recursion; operands are converted left to
        right, so the first error in the text is the one reported."""
        out: list[Expr] = []
        todo: list[tuple[Tree, bool, bool]] = [(node, strings, False)]  # (node, strings allowed, operands done)
        while todo:
            n, s, done = todo.pop()
            d = n.data
            if d == "a_paren":
                todo.append((n.children[1], s, False))
            elif d == "a_neg":
                if done:
                    out.append(Neg(out.pop(), span=_span(n)))
                else:
                    todo += [(n, s, True), (n.children[1], False, False)]
            elif d in _ARITH_OPS:
                if done:
                    right = out.pop()
                    left = out.pop()
                    if d == "a_div" and isinstance(right, Num) and right.value == 0:
                        raise self.err("division by zero", n.children[2])
                    out.append(BinOp(_ARITH_OPS[d], left, right, span=_span(n)))  # type: ignore[arg-type]
                else:
                    todo += [(n, s, True), (n.children[2], False, False), (n.children[0], False, False)]
            else:
                out.append(self._arith_leaf(n, allowed, where, s))
        return out[0]

    def _arith_leaf(self, node: Tree, allowed: Table, where: str, strings: bool) -> Expr:
        d = node.data
        if d == "a_num":
            return Num(_number(node.children[0], self.text), span=_span(node))
        if d == "a_str":
            if not strings:
                raise self.err("string literals are only allowed inside contrast codings such as C(x, Treatment('b'))", node)
            raw = str(node.children[0])
            return Str(raw[1:-1], span=_span(node))
        if d == "var":
            return self.var(node)
        if d == "call":
            # contrast codings such as Treatment('b') may hold strings
            return self.call(node, allowed, where)
        raise self.err(f"unexpected {d}", node)  # pragma: no cover

    # ---- formula algebra ---------------------------------------------------------
    def sum(self, node: Tree | Token, in_group: bool = False) -> _Terms:
        """Formula algebra on a sum. A chain (``x1 + x2 + ...``, ``a * b / c``,
        ``a:b:c``) is folded left to right in a loop, each step on the result so
        far, as R reads it; only parentheses, group terms and calls recurse."""
        while isinstance(node, Tree) and node.data == "paren":
            node = node.children[1]
        d = node.data if isinstance(node, Tree) else None
        if d in _CHAINS:
            first, steps = _left_spine(node, _CHAINS[d])
            acc = self.sum(first, in_group)
            for st in steps:
                left, op, right = st.children
                if st.data in ("add", "sub"):
                    self._written(right)
                if st.data == "add":
                    acc = self._union(acc, self.sum(right, in_group), right)
                elif st.data == "sub":
                    acc = self._difference(acc, self.sum(right, in_group), right)
                else:
                    a = self._plain(acc, left, str(op))
                    b = self._plain(self.sum(right, in_group), right, str(op))
                    acc = self._nest(a, b, op) if st.data == "nest" else self._product(a, b, op, st.data == "star")
            return acc
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
            return _Terms(terms={frozenset({str(v)}): Term((v,), span=v.span)})
        if d == "call":
            c = self.call(node, TERM_FUNCTIONS, "in a formula term")
            if c.fn == "offset":
                if in_group:
                    raise self.err("offset() cannot appear inside a group term", node)
                if len(c.args) != 1 or c.kwargs:
                    raise self.err("offset() takes exactly one argument", node)
                return _Terms(offsets=[c.args[0]])
            return _Terms(terms={frozenset({str(c)}): Term((c,), span=c.span)})
        if d in ("group", "ugroup", "idgroup"):
            if in_group:
                raise self.err("group terms cannot be nested inside another group term", node)
            groups = self.group(node)
            out = _Terms(groups=groups, group_size=sum(1 + len(g.terms) for g in groups))
            self._check_size(out, node)  # (x1 + ... + x600 | a/b) prints its 600 terms twice
            return out
        if d == "power":
            base = self._plain(self.sum(node.children[0], in_group), node.children[0], "^")
            return self._power(base, node.children[2])
        raise self.err("unexpected element in formula", node)  # pragma: no cover

    def _written(self, node: Tree | Token) -> None:
        self.written += 1
        if self.written > MAX_TERMS_WRITTEN:
            raise self.err(
                f"too many terms written: the limit is {MAX_TERMS_WRITTEN:,} terms joined by '+' or '-' in one formula",
                node,
            )

    def _check_size(self, t: _Terms, node: Tree | Token) -> None:
        if t.size > MAX_TERMS:
            raise self.err(f"too many terms: the limit is {MAX_TERMS:,} terms in the expanded formula", node)

    def _plain(self, t: _Terms, node: Tree | Token, op: str) -> _Terms:
        """An operand of ``:``, ``*``, ``/`` or ``^``: population terms only (no intercept literals or groups)."""
        if t.groups:
            raise self.err(f"group terms cannot be combined with '{op}'", node)
        if t.offsets:
            raise self.err(f"offset() cannot be combined with '{op}'", node)
        if t.number is not None:
            raise self.err(f"a number cannot be part of an interaction ('{op}'); use column names", t.number[1] or node)
        if not t.terms:
            raise self.err(f"'{op}' needs terms on both sides", node)
        return t

    def _product(self, a: _Terms, b: _Terms, op: Token, keep_main: bool) -> _Terms:
        """``a:b``, or ``a*b`` = ``a + b + a:b`` when ``keep_main``."""
        out = _Terms()
        if keep_main:
            out.extend(a)
            out.extend(b)
            self._check_size(out, op)
        self._cross(out, a, b, op)
        return out

    def _nest(self, a: _Terms, b: _Terms, op: Token) -> _Terms:
        """``a/b`` = ``a + (all factors of a):b``."""
        out = _Terms()
        out.extend(a)
        factors: dict[str, Expr] = {}
        for t in a.terms.values():
            for f in t.factors:
                factors.setdefault(str(f), f)
        self._cross(out, _Terms(terms={frozenset(factors): Term(tuple(factors.values()))}), b, op)
        return out

    def _power(self, base: _Terms, tok: Token) -> _Terms:
        """``(a + b + ...)^n``: the interactions of up to n terms of the base.

        Step k crosses the distinct terms of step k-1 with the base, dropping
        duplicates as it goes (the first of each is kept, so the result is the
        one crossing without dropping would give); once a step adds nothing,
        no later step can, so ``(a + b)^20`` takes two steps of 3 terms.
        """
        n = float(tok)
        if not n.is_integer() or n < 1:
            raise self.err("the power of a term must be a positive whole number, e.g. (a + b)^2", tok)
        if n > MAX_POWER:
            raise self.err(f"the power of a term is too large: the limit is {MAX_POWER}", tok)
        out = _Terms()
        out.extend(base)
        cur = base
        for _ in range(int(n) - 1):
            nxt = _Terms()
            self._cross(nxt, cur, base, tok)
            if len(nxt.terms) == len(cur.terms):  # nxt holds cur: the same terms
                break
            out.extend(nxt)
            self._check_size(out, tok)
            cur = nxt
        return out

    def _cross(self, out: _Terms, a: _Terms, b: _Terms, op: Token) -> None:
        """Add each ``x:y`` (x of ``a``, y of ``b``, in that order) not already in ``out``.

        The pairs are counted against MAX_COMBINATIONS before any is formed; each
        new term is checked against MAX_INTERACTION and ``out`` against MAX_TERMS
        as it grows, so no expansion runs past a limit.
        """
        self.combinations += len(a.terms) * len(b.terms)
        if self.combinations > MAX_COMBINATIONS:
            raise self.err(
                f"interactions expand too much: the limit is {MAX_COMBINATIONS:,} pairs of terms combined in one formula",
                op,
            )
        for kx, x in a.terms.items():
            for ky, y in b.terms.items():
                key = kx | ky
                if key in out.terms:
                    continue
                if len(key) > MAX_INTERACTION:
                    raise self.err(f"interaction of too many factors: the limit is {MAX_INTERACTION} in one term", op)
                out.terms[key] = Term(x.factors + tuple(f for f in y.factors if str(f) not in kx))
                if out.size > MAX_TERMS:
                    self._check_size(out, op)

    def _union(self, a: _Terms, b: _Terms, node: Tree | Token) -> _Terms:
        """``a + b``, in place on ``a`` (a fresh result of the walk): a long sum costs linear time."""
        if b.intercept is not None:
            a.intercept = b.intercept
        a.extend(b)
        a.groups += b.groups
        a.group_size += b.group_size
        a.offsets += b.offsets
        a.number = None
        self._check_size(a, node)
        return a

    def _difference(self, a: _Terms, b: _Terms, node: Tree | Token) -> _Terms:
        """``a - b``, in place on ``a``."""
        if b.groups or b.offsets:
            raise self.err("only population terms and the intercept can be removed with '-'", node)
        if b.number is not None:
            # "- 1" removes the intercept, "- 0" adds it back (as in R)
            a.intercept = b.number[0] == 0
        for key in b.terms:
            a.terms.pop(key, None)
        a.number = None
        return a

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
                    terms=tuple(lhs.terms.values()),
                    group=grp,
                    correlated=correlated,
                    id=gid,
                    span=_span(node),
                )
            )
        return out

    def gfactors(self, node: Tree) -> list[tuple[str, ...]]:
        """``a`` → [(a,)]; ``a:b`` → [(a, b)]; ``a/b/c`` → [(a,), (a, b), (a, b, c)], folded in a loop."""
        first, steps = _left_spine(node, _GROUP_CHAIN)
        out = [(self.name(first.children[0]),)]
        for st in steps:
            _, op, right = st.children
            last = out[-1] + (self.name(right.children[0]),)
            if len(last) > MAX_INTERACTION:
                raise self.err(f"grouping factor of too many columns: the limit is {MAX_INTERACTION}", op)
            if st.data == "ginter":
                out[-1] = last
            else:
                out.append(last)
        return out

    def linear(self, node: Tree) -> Linear:
        t = self.sum(node)
        intercept = t.intercept if t.intercept is not None else True
        if not intercept and not t.terms and not t.groups and not t.offsets:
            raise self.err("the model has no terms: '0' or '-1' alone removes everything", node)
        return Linear(
            intercept=intercept,
            terms=tuple(t.terms.values()),
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
        raise PriorError(f"prior for {name!r} must be a string such as 'normal(0, 1)', got {type(text).__name__}")
    try:
        return parse_prior(text)
    except PriorError as err:
        raise PriorError(f"prior for {name!r}: {err.message}", err.text, err.start, err.end) from None


def _pnum(node: Tree, text: str, cls: type[FormulaError] = FormulaError) -> float:
    toks = [t for t in node.children if isinstance(t, Token)]
    v = _number(toks[-1], text, cls)
    return -v if toks[0].type == "MINUS" else v


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
        _check_length(formula)  # all lines together: each is parsed (some twice)
        nl = _formula_map("nl", nl)
        dpars = _formula_map("dpars", dpars)
        lines = [ln for ln in formula.splitlines() if ln.strip()]
        if not lines:
            raise FormulaError("the formula is empty", formula, 0, 1)
        _check_parameter_count(formula, len(lines) - 1 + len(nl) + len(dpars))
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
            for v in expr_vars(main.rhs):  # type: ignore[arg-type]
                if v.name in dpar_map or (v.name == "mu" and v.name in texts):
                    # (its line models the family's parameter: `y ~ mu * exp(-k * t)` with `mu ~ 1` fitted the curve's
                    # height as the site `Intercept`; `sigma ~ 1` beside `sigma * ...` was asked to be declared)
                    start, end = v.span or (0, len(lines[0]))
                    what = ("is the response's mean (the non-linear formula itself)" if v.name == "mu" else
                            f"names a distributional parameter of the response (its line '{v.name} ~ ...' models it)")
                    raise FormulaError(f"'{v.name}' {what}, so it cannot also be a parameter of the non-linear formula: "
                                       f"rename it, e.g. '{v.name}_nl'", lines[0], start, end)
            for name in _dose_model_params(main.rhs, lines[0]):  # type: ignore[arg-type]
                if name not in nlpars:  # a dose-response parameter without a formula: one value for all rows
                    nlpars[name] = Linear()
            _check_nl(main, nlpars, texts, lines[0])
        _check_response_not_predictor(main, lines[0])
        spec = ModelSpec(main, tuple(dpar_map.items()), tuple(nlpars.items()), nlbounds=tuple(bounds))
        _check_printed(str(spec), formula)
    if family is not None or link is not None or not isinstance(formula, ModelSpec):
        fam_name = family.name if isinstance(family, Family) else (family or spec.family.name)
        fam_link = link or (family.link if isinstance(family, Family) else None)
        spec = replace(spec, family=resolve_family(str(fam_name), fam_link))
    if priors:
        spec = replace(
            spec, priors=spec.priors + tuple(Prior(str(k), _named_prior(str(k), v)) for k, v in _prior_items(priors))
        )
    if param is not None:
        spec = with_param(spec, param)
    return spec


def _check_printed(printed: str, text: str) -> None:
    """The canonical text of an accepted formula must be accepted too, so that
    ``parse(str(spec))`` always works (fits store it). Expansion makes it longer
    than the input -- ``a*b*c`` prints ``a + b + a:b + ...``, ``(x | a/b)`` prints
    ``x`` twice -- and printing can add parentheses (``x^-x`` → ``x ** (-x)``)."""
    try:
        _check_length(printed)  # as parse() checks them: the length of all lines, the rest line by line
        for line in printed.splitlines():
            _check_tokens(line)
    except FormulaError as err:
        raise FormulaError(f"the expanded formula is too big: {err.message}", text) from None


def _formula_map(what: str, value: object) -> Mapping[str, str]:
    """``dpars=`` / ``nl=``: parameter name → formula text, or nothing."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise FormulaError(f"{what}= must map parameter names to formula strings, got {type(value).__name__}")
    return value


def _check_parameter_count(formula: str, n: int) -> None:
    """MAX_PARAMETERS, before any parameter formula is parsed: each costs a parse
    (Lark takes some 40 µs for even the shortest), and lines are cheap to write."""
    if n <= MAX_PARAMETERS:
        return
    msg = f"too many parameter formulas: the limit is {MAX_PARAMETERS} in one model"
    starts = []  # where each non-blank line starts
    pos = 0
    for ln in formula.splitlines(keepends=True):
        if ln.strip():
            starts.append(pos)
        pos += len(ln)
    if len(starts) > MAX_PARAMETERS + 1:  # the first line is the model formula
        start = starts[MAX_PARAMETERS + 1]
        end = start + len(formula[start:].splitlines()[0])
        raise FormulaError(msg, formula, start, end)
    raise FormulaError(msg)


def _prior_items(priors: object) -> list[tuple[object, object]]:
    """``priors=``: a mapping, or pairs, of parameter name → prior text."""
    if isinstance(priors, Mapping):
        return list(priors.items())
    if isinstance(priors, Iterable) and not isinstance(priors, str | bytes):
        items = list(priors)
        if all(isinstance(it, tuple | list) and len(it) == 2 for it in items):
            return [(k, v) for k, v in items]
    raise PriorError(
        f"priors= must map parameter names to prior strings such as 'normal(0, 1)', got {type(priors).__name__}"
    )


def _named_formula(name: str, text: object) -> str:
    """A parameter formula given by name (``dpars={"sigma": "x"}``) may omit ``sigma ~``."""
    if not isinstance(text, str):
        raise FormulaError(f"the formula for '{name}' must be a string, got {type(text).__name__}")
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


def _linears(spec: ModelSpec) -> list[Linear]:
    """The formula's linear predictors in a fixed order: the main one (if linear), the distributional, the
    non-linear parameters'."""
    main = [spec.formula.rhs] if isinstance(spec.formula.rhs, Linear) else []
    return main + [lin for _, lin in spec.dpars] + [lin for _, lin in spec.nlpars]


def term_params(spec: ModelSpec) -> list[str]:
    """Each group term's requested parameterization, in ``_linears`` order (what a fit file keeps)."""
    return [g.param for lin in _linears(spec) for g in lin.group_terms]


def with_term_params(spec: ModelSpec, params: list[str]) -> ModelSpec:
    """``spec`` with each group term's parameterization from ``term_params`` of the same formula."""
    if len(params) != len(term_params(spec)) or any(v not in PARAMETERIZATIONS for v in params):
        raise ValueError("the stored parameterizations do not match the formula's group terms")
    it = iter(params)
    return _map_group_terms(spec, lambda g: replace(g, param=next(it)))


def _map_group_terms(spec: ModelSpec, fn: Callable[[GroupTerm], GroupTerm]) -> ModelSpec:
    """``spec`` with ``fn`` applied to every group term, in ``_linears`` order."""

    def fix(lin: Linear) -> Linear:
        return replace(lin, group_terms=tuple(fn(g) for g in lin.group_terms))

    formula = spec.formula
    if isinstance(formula.rhs, Linear):
        formula = replace(formula, rhs=fix(formula.rhs))
    return replace(spec, formula=formula, dpars=tuple((n, fix(lin)) for n, lin in spec.dpars),
                   nlpars=tuple((n, fix(lin)) for n, lin in spec.nlpars))


def with_param(spec: ModelSpec, param: str | Mapping[str, str]) -> ModelSpec:
    """Set the parameterization of group terms: one value for all, or a map
    from grouping factor (``"county"``, ``"a:b"``) to value."""
    if not isinstance(spec, ModelSpec):
        raise FormulaError(f"with_param() takes a ModelSpec, got {type(spec).__name__}")
    if isinstance(param, str):
        mapping: dict[str, str] = {"*": param}
    elif isinstance(param, Mapping):
        mapping = dict(param)
    else:
        raise FormulaError(
            f"param must be a parameterization or map grouping factors to one, got {type(param).__name__}"
        )
    for v in mapping.values():
        if v not in PARAMETERIZATIONS:
            raise FormulaError(f"unknown parameterization '{v}': use one of {', '.join(PARAMETERIZATIONS)}")
    known = {g.group_label for _, lin in spec.predictors() for g in lin.group_terms}
    for k in mapping:
        if k != "*" and k not in known:
            raise FormulaError(
                f"param names grouping factor '{k}', which the formula does not have; grouping factors: {', '.join(sorted(known)) or 'none'}"
            )

    return _map_group_terms(
        spec, lambda g: replace(g, param=mapping.get(g.group_label, mapping.get("*", g.param)))  # type: ignore[arg-type]
    )
