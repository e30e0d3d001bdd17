"""Design matrices without handing formulaic any text.

formulaic evaluates the factors of a formula string with Python's ``eval``; a
whitelist on our side cannot make that safe, because formulaic's tokenizer
reads quotes and escapes differently from our grammar (that was exploitable).
So formulaic never sees formula text here. Each factor of a term (``x``,
``log(x)``, ``scale(x)``, ``C(f, Treatment('b'))``, ``poly(x, 2)``) is an IR
expression that this module evaluates itself, over the data, with the
implementations bound in ``functions.py``; the values go to formulaic in its
evaluation context under the factor's canonical text, and formulaic receives
the structure (terms made of factors evaluated by *lookup*, a dictionary
access) to do what it is good at: categorical encodings, contrasts, rank
reduction of interactions, and column names. Literal arguments (a reference
level, a polynomial degree) are Python objects bound here, never text.

Stateful transforms (``scale``, ``center``, ``standardize``, ``poly``, ``bs``)
keep their state (training mean and SD, polynomial coefficients, knots) in a
dictionary per factor, so new data are transformed as the training data were.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .errors import DataError
from .functions import CONTRASTS, LOGICAL_NAMES, TERM_FUNCTIONS
from .ir import BinOp, Call, Expr, Neg, Num, Str, Term, Var

States = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Matrix:
    """A design matrix (population or group-level) and what rebuilds it on new data."""

    values: np.ndarray  # (N, P)
    names: tuple[str, ...]
    intercept: bool
    terms: tuple[Term, ...]
    spec: Any  # formulaic ModelSpec whose factors are looked up by key
    states: Mapping[str, Mapping[str, Any]]  # per factor key: transform state, categorical levels

    def on(self, df: pd.DataFrame) -> np.ndarray:
        """The same columns for new data: stored transform states, training levels."""
        ctx = Evaluator(df, {k: dict(v) for k, v in self.states.items()}, fitted=True).context(self.terms)
        mm = self.spec.get_model_matrix(pd.DataFrame(index=df.index), context=ctx)
        X = np.asarray(mm.to_numpy() if hasattr(mm, "to_numpy") else mm, dtype=float)
        names = [str(c) for c in mm.columns]
        if names != list(self.names):  # pragma: no cover - the spec fixes the columns
            raise DataError(f"new data give design columns {names}, the fit had {list(self.names)}")
        return X


def factor_key(f: Expr) -> str:
    """The name a factor is looked up by, which is also its column name: a column's own
    name, or the canonical text of a call (``scale(x)``, ``C(f, Treatment('b'))``)."""
    return f.name if isinstance(f, Var) else str(f)


def build_matrix(intercept: bool, terms: Sequence[Term], df: pd.DataFrame) -> Matrix:
    """Evaluate the factors of ``terms`` on ``df`` and let formulaic encode and combine them."""
    import formulaic
    from formulaic import Formula
    from formulaic.parser.types import Factor
    from formulaic.parser.types import Term as FTerm

    _check_keys(terms)
    states: States = {}
    ctx = Evaluator(df, states, fitted=False).context(terms)
    fterms = [FTerm([Factor("1", eval_method="literal")])] if intercept else []
    for t in terms:
        fterms.append(FTerm([Factor(factor_key(f), eval_method="lookup") for f in t.factors]))
    formula = Formula.from_spec(fterms, ordering="degree")
    try:
        mm = formulaic.model_matrix(formula, pd.DataFrame(index=df.index), context=ctx, na_action="raise")
    except DataError:
        raise
    except Exception as exc:  # formulaic raises many types; surface one clear error
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        shown = " + ".join(["1" if intercept else "0"] + [str(t) for t in terms])
        raise DataError(f"could not build the design for '{shown}': {msg}") from None
    X = np.asarray(mm.to_numpy() if hasattr(mm, "to_numpy") else mm, dtype=float)
    frozen = {k: dict(v) for k, v in states.items()}
    return Matrix(X, tuple(str(c) for c in mm.columns), intercept, tuple(terms), mm.model_spec, frozen)


def _check_keys(terms: Sequence[Term]) -> None:
    """Two different factors must not share a key (a column named ``log(x)`` beside ``log(x)``)."""
    seen: dict[str, Expr] = {}
    for t in terms:
        for f in t.factors:
            k = factor_key(f)
            if k in seen and seen[k] != f:
                raise DataError(
                    f"the column `{k}` and the expression {k} would get the same design column name; "
                    "rename the column"
                )
            seen[k] = f


class Evaluator:
    """Evaluates factor expressions over a data frame: numbers, columns, whitelisted calls, arithmetic."""

    def __init__(self, df: pd.DataFrame, states: States, fitted: bool) -> None:
        self.df = df
        self.states = states
        self.fitted = fitted  # states come from the training data (new data must match them)

    def context(self, terms: Sequence[Term]) -> dict[str, Any]:
        ctx: dict[str, Any] = {}
        for t in terms:
            for f in t.factors:
                k = factor_key(f)
                if k not in ctx:
                    ctx[k] = self.factor(f)
        return ctx

    # ---- a factor: categorical or numeric values -----------------------------------
    def factor(self, f: Expr) -> Any:
        if isinstance(f, Var):
            col = self.df[f.name]
            # new data: the fitted model decides (a text column read as numbers must not become a slope)
            known = self.states.get(factor_key(f), {})
            if ("levels" in known) if self.fitted else _is_categorical(col):
                return self.categorical(factor_key(f), col, None, factor_key(f))
            return self.numeric(f)
        if isinstance(f, Call) and f.fn == "C":
            col = self.series(f.args[0])
            return self.categorical(factor_key(f), col, f.args[1] if len(f.args) > 1 else None, str(f.args[0]))
        return self.numeric(f)

    def categorical(self, key: str, col: pd.Series, coding: Expr | None, what: str) -> Any:
        from formulaic.transforms import C

        state = self.states.setdefault(key, {})
        values = col.reset_index(drop=True)
        if not self.fitted:
            state["levels"] = _levels(values)
            for lv in state["levels"]:
                if isinstance(lv, str) and "\x00" in lv:
                    raise DataError(f"'{what}' has a level with a NUL character ({lv!r}); remove it from the data")
        else:
            values = _as_levels(values, state["levels"])
            unknown = sorted({str(v) for v in pd.unique(values)} - {str(v) for v in state["levels"]})
            if unknown:
                shown = ", ".join(unknown[:10]) + (", ..." if len(unknown) > 10 else "")
                raise DataError(
                    f"'{key}' has {len(unknown)} level(s) the model was not fitted with: {shown}; "
                    f"its levels: {', '.join(str(v) for v in state['levels'][:10])}"
                )
        contrasts = None
        if isinstance(coding, Call):
            args = [_literal(a) for a in coding.args]
            if coding.fn == "Treatment" and args:
                ref = _match_level(args[0], state["levels"])
                if ref is None:
                    raise DataError(
                        f"{coding}: {args[0]!r} is not a level of {what}; its levels: "
                        + ", ".join(str(v) for v in state["levels"][:10])
                    )
                args = [ref]
            contrasts = CONTRASTS[coding.fn].transform(*args)  # type: ignore[misc]
        return C(values, contrasts, levels=list(state["levels"]))

    def series(self, e: Expr) -> pd.Series:
        """The argument of ``C()``: a column as it is, or computed numbers."""
        if isinstance(e, Var):
            return self.df[e.name]
        return pd.Series(self.numeric(e), index=self.df.index)

    # ---- numeric values ------------------------------------------------------------
    def numeric(self, e: Expr) -> Any:
        out = self._num(e)
        raw = out.__wrapped__ if hasattr(out, "__wrapped__") else out
        parts = [np.asarray(v, dtype=float).reshape(len(self.df), -1) for v in (raw.values() if isinstance(raw, dict) else [raw])]
        bad = ~np.isfinite(np.concatenate(parts, axis=1))
        if bad.any():
            rows = int(bad.any(axis=1).sum())
            raise DataError(
                f"{e} is not finite in {rows} of {len(self.df)} rows (e.g. the log of 0 or of a negative number)"
            )
        return out

    def _num(self, e: Expr) -> Any:
        n = len(self.df)
        if isinstance(e, Num):
            return np.full(n, float(e.value))
        if isinstance(e, Var):
            col = self.df[e.name]
            if _is_categorical(col):
                raise DataError(f"column '{e.name}' is not numeric (dtype {col.dtype}) but is used in arithmetic")
            return col.to_numpy(dtype=float)
        if isinstance(e, Neg):
            return -_plain(self._num(e.operand))
        if isinstance(e, BinOp):
            a, b = _plain(self._num(e.left)), _plain(self._num(e.right))
            with np.errstate(all="ignore"):
                return {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "**": np.power}[e.op](a, b)
        if isinstance(e, Call):
            fn = TERM_FUNCTIONS.get(e.fn)
            if fn is None or e.fn in ("C", "offset"):
                raise DataError(f"{e.fn}() cannot be used inside another expression here: {e}")
            x = _plain(self._num(e.args[0]))
            if fn.numpy is not None:
                return np.asarray(fn.numpy(x), dtype=float)
            kwargs = {k: _literal(v) for k, v in e.kwargs}
            if e.fn == "poly" and len(e.args) > 1:
                kwargs["degree"] = _literal(e.args[1])
            state = self.states.setdefault(str(e), {})
            try:
                return fn.transform(x, state, **kwargs)  # type: ignore[misc]
            except DataError:
                raise
            except Exception as exc:  # noqa: BLE001 - a transform's own complaint, as one line
                msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise DataError(f"{e}: {msg}") from None
        if isinstance(e, Str):
            raise DataError(f"a string cannot be evaluated as data: {e}")
        raise DataError(f"cannot evaluate '{e}' here")  # pragma: no cover - the parser admits nothing else


def _plain(v: Any) -> np.ndarray:
    return np.asarray(v.__wrapped__ if hasattr(v, "__wrapped__") else v, dtype=float)


def _literal(e: Expr) -> Any:
    """A literal argument as a Python value: a number (whole numbers as int), a string, TRUE/FALSE."""
    if isinstance(e, Num):
        return int(e.value) if float(e.value).is_integer() else float(e.value)
    if isinstance(e, Neg) and isinstance(e.operand, Num):
        return -_literal(e.operand)
    if isinstance(e, Str):
        return e.value
    if isinstance(e, Var) and e.name in LOGICAL_NAMES:
        return LOGICAL_NAMES[e.name]
    raise DataError(f"expected a literal value, got {e}")  # pragma: no cover - checked by the parser


def _is_categorical(col: pd.Series) -> bool:
    return not pd.api.types.is_numeric_dtype(col) or col.dtype == bool


def _levels(values: pd.Series) -> list[Any]:
    """Sorted distinct values (mixed types sorted by type name, then text)."""
    uniq = [v for v in pd.unique(values) if not (isinstance(v, float) and np.isnan(v))]
    if isinstance(values.dtype, pd.CategoricalDtype):
        return [c for c in values.cat.categories if c in set(uniq)]
    try:
        return sorted(uniq)
    except TypeError:
        return sorted(uniq, key=lambda v: (type(v).__name__, str(v)))


def _as_levels(values: pd.Series, levels: Sequence[Any]) -> pd.Series:
    """New data's values as the fitted levels: the same value of the same type, else the one level with the
    same text (a column read as numbers where it was text, or the reverse: ``1`` and ``"1"``). Values
    matching no level keep their own value (the caller names them)."""
    by_text: dict[str, list[Any]] = {}
    for lv in levels:
        by_text.setdefault(str(lv), []).append(lv)
    mapping: dict[Any, Any] = {}
    for v in pd.unique(values.astype(object)):
        same = by_text.get(str(v), [])
        exact = [lv for lv in same if type(lv) is type(v) and lv == v]
        mapping[v] = exact[0] if exact else same[0] if len(same) == 1 else v
    out = pd.Series([mapping[v] for v in values.astype(object)], index=values.index, dtype=object)
    return out


def _match_level(ref: Any, levels: Sequence[Any]) -> Any:
    """The level a contrast's reference names: the same value, or the same text (``Treatment(2)`` on 2.0)."""
    for lv in levels:
        if lv == ref:
            return lv
    for lv in levels:
        if str(lv) == str(ref):
            return lv
    return None
