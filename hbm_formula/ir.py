"""The intermediate representation: the only contract between parsing and lowering.

Frozen dataclasses holding tuples. Every node may carry a source ``span``
(start, end) that is excluded from equality, so tests compare meaning, not
positions. ``str(node)`` prints canonical formula text that re-parses to an
equal node.

Shape of a model::

    ModelSpec
      formula: Formula            response ~ linear predictor  (or ~ non-linear expression)
      dpars:   ((name, Linear),)  distributional parameters, e.g. sigma ~ x + (1|g)
      nlpars:  ((name, Linear),)  parameters of a non-linear expression
      family:  Family(name, link)
      priors:  (Prior,)           overrides by parameter name

A ``Linear`` predictor is intercept + population ``Term``s + ``GroupTerm``s +
offsets. Value expressions (``Expr``: numbers, columns, whitelisted calls,
arithmetic) appear inside terms, responses, offsets and non-linear formulas.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

Span = tuple[int, int] | None

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def quote_name(name: str) -> str:
    """Print a column name, backtick-quoted when it is not a plain identifier (or starts
    with ``__``, which the parser takes only in backticks)."""
    if _IDENT.match(name) and not keyword.iskeyword(name) and not name.startswith("__"):
        return name
    return f"`{name}`"


# ---------------------------------------------------------------------------
# value expressions
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Num:
    value: float
    span: Span = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        v = self.value
        if float(v).is_integer() and abs(v) < 1e15:
            return str(int(v))
        return repr(float(v))


@dataclass(frozen=True, slots=True)
class Str:
    value: str
    span: Span = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return repr(self.value)


@dataclass(frozen=True, slots=True)
class Var:
    """A data column (or, in a non-linear formula, a parameter)."""

    name: str
    span: Span = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return quote_name(self.name)


@dataclass(frozen=True, slots=True)
class Call:
    fn: str
    args: tuple[Expr, ...] = ()
    kwargs: tuple[tuple[str, Expr], ...] = ()
    span: Span = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return render(self)

    def kwarg(self, name: str) -> Expr | None:
        for k, v in self.kwargs:
            if k == name:
                return v
        return None


@dataclass(frozen=True, slots=True)
class BinOp:
    op: Literal["+", "-", "*", "/", "**"]
    left: Expr
    right: Expr
    span: Span = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return render(self)


@dataclass(frozen=True, slots=True)
class Neg:
    operand: Expr
    span: Span = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return render(self)


Expr = Num | Str | Var | Call | BinOp | Neg

#: binding strength of the operators (higher binds tighter); unary minus sits between * and **
PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, "neg": 3, "**": 4, "atom": 5}


def _canonical_leaf(e: Expr) -> str:
    return str(e)


def _canonical_call(c: Call, args: list[str]) -> str:
    return f"{c.fn}({', '.join(args)})"


def render(
    e: Expr,
    leaf: Callable[[Expr], str] = _canonical_leaf,
    call: Callable[[Call, list[str]], str] = _canonical_call,
    power: Callable[[str, str], str] | None = None,
) -> str:
    """Print an expression: the one printer of the package.

    By default it prints canonical formula text (which re-parses to an equal
    node). The lowering stage passes its own ``leaf`` (names of code variables,
    number literals), ``call`` (jax.numpy functions) and ``power`` (``**`` as a
    function call), and gets jax.numpy code with the same parenthesization.
    """

    def prec(x: Expr) -> int:
        if isinstance(x, BinOp):
            return PRECEDENCE["atom"] if (x.op == "**" and power is not None) else PRECEDENCE[x.op]
        return PRECEDENCE["neg"] if isinstance(x, Neg) else PRECEDENCE["atom"]

    def wrap(x: Expr, parent: int, right_side: bool) -> str:
        p = prec(x)
        text = go(x)
        return f"({text})" if p < parent or (p == parent and right_side) else text

    def go(x: Expr) -> str:
        if isinstance(x, Call):
            parts = [go(a) for a in x.args] + [f"{k}={go(v)}" for k, v in x.kwargs]
            return call(x, parts)
        if isinstance(x, BinOp):
            if x.op == "**" and power is not None:
                return power(go(x.left), go(x.right))
            p = PRECEDENCE[x.op]
            left = wrap(x.left, p, right_side=x.op == "**")
            right = wrap(x.right, p, right_side=x.op != "**")
            return f"{left} {x.op} {right}"
        if isinstance(x, Neg):
            return f"-{wrap(x.operand, PRECEDENCE['neg'], right_side=False)}"
        return leaf(x)

    return go(e)


def expr_vars(e: Expr) -> list[Var]:
    """Every Var in an expression, in order of appearance."""
    out: list[Var] = []

    def walk(x: Expr) -> None:
        if isinstance(x, Var):
            out.append(x)
        elif isinstance(x, Call):
            for a in x.args:
                walk(a)
            for _, v in x.kwargs:
                walk(v)
        elif isinstance(x, BinOp):
            walk(x.left)
            walk(x.right)
        elif isinstance(x, Neg):
            walk(x.operand)

    walk(e)
    return out


def expr_calls(e: Expr) -> list[Call]:
    """Every Call in an expression, outermost first."""
    out: list[Call] = []
    if isinstance(e, Call):
        out.append(e)
        for a in e.args:
            out += expr_calls(a)
    elif isinstance(e, BinOp):
        out += expr_calls(e.left) + expr_calls(e.right)
    elif isinstance(e, Neg):
        out += expr_calls(e.operand)
    return out


# ---------------------------------------------------------------------------
# formula-level nodes
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Term:
    """A population-level term: the interaction of its factors (``a:b``)."""

    factors: tuple[Expr, ...]
    span: Span = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return ":".join(str(f) for f in self.factors)

    @property
    def key(self) -> frozenset[str]:
        return frozenset(str(f) for f in self.factors)


def terms_text(intercept: bool, terms: tuple[Term, ...] | list[Term]) -> str:
    """``1 + a + b`` / ``0 + a``: the population part of a predictor, as printed and as given to formulaic."""
    return " + ".join(["1" if intercept else "0"] + [str(t) for t in terms])


Parameterization = Literal["noncentered", "centered", "auto"]
PARAMETERIZATIONS: tuple[str, ...] = ("noncentered", "centered", "auto")


@dataclass(frozen=True, slots=True)
class GroupTerm:
    """``(terms | group)``: coefficients varying by the levels of ``group``.

    ``group`` is a tuple of column names; more than one means their interaction
    (``a:b``). Nesting ``a/b`` is expanded by the parser into ``a`` and ``a:b``.
    ``correlated`` is False for ``||``. ``id`` links terms of different
    predictors into one correlation block (brms ``|ID|``). ``param`` is the
    parameterization of the group effects.
    """

    intercept: bool
    terms: tuple[Term, ...]
    group: tuple[str, ...]
    correlated: bool = True
    id: str | None = None
    param: Parameterization = "auto"
    span: Span = field(default=None, compare=False, repr=False)

    @property
    def group_label(self) -> str:
        return ":".join(self.group)

    def lhs_text(self) -> str:
        return terms_text(self.intercept, self.terms)

    def __str__(self) -> str:
        bar = "|" if self.correlated else "||"
        if self.id is not None:
            bar = f"| {self.id} |"
        grp = ":".join(quote_name(g) for g in self.group)
        return f"({self.lhs_text()} {bar} {grp})"


@dataclass(frozen=True, slots=True)
class Linear:
    """A linear predictor: intercept + terms + group terms + offsets."""

    intercept: bool = True
    terms: tuple[Term, ...] = ()
    group_terms: tuple[GroupTerm, ...] = ()
    offsets: tuple[Expr, ...] = ()
    span: Span = field(default=None, compare=False, repr=False)

    def population_text(self) -> str:
        """Intercept, terms and offsets: everything but the group terms."""
        return " + ".join([terms_text(self.intercept, self.terms)] + [f"offset({o})" for o in self.offsets])

    def __str__(self) -> str:
        return " + ".join([self.population_text()] + [str(g) for g in self.group_terms])


@dataclass(frozen=True, slots=True)
class Response:
    """Left-hand side: an expression (``y``, ``log(y)``, ``cbind(s, f)``) and
    brms-style addition terms after ``|`` (``trials(n)``, ``weights(w)``, ...).
    ``se_sigma``: ``se(s, sigma = TRUE)``, a residual SD on top of the known SEs."""

    expr: Expr
    addterms: tuple[Call, ...] = ()
    se_sigma: bool = False
    span: Span = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        if not self.addterms:
            return str(self.expr)
        parts = [str(a) if not (a.fn == "se" and self.se_sigma) else f"{str(a)[:-1]}, sigma = TRUE)" for a in self.addterms]
        return f"{self.expr} | " + " + ".join(parts)

    def addterm(self, name: str) -> Call | None:
        for a in self.addterms:
            if a.fn == name:
                return a
        return None


@dataclass(frozen=True, slots=True)
class Formula:
    """``response ~ rhs``; ``rhs`` is a Linear predictor or, for non-linear
    models, an arithmetic Expr over parameters and columns."""

    response: Response
    rhs: Linear | Expr
    span: Span = field(default=None, compare=False, repr=False)

    @property
    def is_nonlinear(self) -> bool:
        return not isinstance(self.rhs, Linear)

    def __str__(self) -> str:
        return f"{self.response} ~ {self.rhs}"


@dataclass(frozen=True, slots=True)
class Family:
    name: str = "gaussian"
    link: str = "identity"

    def __str__(self) -> str:
        return f"{self.name}({self.link})"


@dataclass(frozen=True, slots=True)
class PriorDist:
    """A prior distribution as written, e.g. ``normal(0, 2.5)``."""

    name: str
    args: tuple[float, ...] = ()
    kwargs: tuple[tuple[str, float], ...] = ()
    span: Span = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        parts = [_fmt(a) for a in self.args] + [f"{k}={_fmt(v)}" for k, v in self.kwargs]
        return f"{self.name}({', '.join(parts)})"


def _fmt(v: float) -> str:
    return str(Num(v))


@dataclass(frozen=True, slots=True)
class Prior:
    """An override: the prior of parameter (or class) ``target``."""

    target: str
    dist: PriorDist

    def __str__(self) -> str:
        return f"{self.target} ~ {self.dist}"


@dataclass(frozen=True, slots=True)
class ModelSpec:
    formula: Formula
    dpars: tuple[tuple[str, Linear], ...] = ()
    nlpars: tuple[tuple[str, Linear], ...] = ()
    family: Family = Family()
    priors: tuple[Prior, ...] = ()
    #: bounds of non-linear parameters: (name, lower or None, upper or None)
    nlbounds: tuple[tuple[str, float | None, float | None], ...] = ()

    def bounds(self, name: str) -> tuple[float | None, float | None]:
        for n, lo, hi in self.nlbounds:
            if n == name:
                return lo, hi
        return None, None

    def __str__(self) -> str:
        lines = [str(self.formula)]
        for name, lin in self.nlpars:
            lo, hi = self.bounds(name)
            extra = (f", lb = {Num(lo)}" if lo is not None else "") + (f", ub = {Num(hi)}" if hi is not None else "")
            lines.append(f"{name} ~ {lin}{extra}")
        lines += [f"{name} ~ {lin}" for name, lin in self.dpars]
        return "\n".join(lines)

    def predictors(self) -> list[tuple[str, Linear]]:
        """Every linear predictor with its name: ``mu`` first (if linear),
        then non-linear parameters, then distributional parameters."""
        out: list[tuple[str, Linear]] = []
        if isinstance(self.formula.rhs, Linear):
            out.append(("mu", self.formula.rhs))
        out += list(self.nlpars)
        out += list(self.dpars)
        return out
