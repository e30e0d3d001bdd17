"""DataFrame + IR → numeric arrays.

Population and group-level design matrices come from formulaic (contrasts,
stateful transforms such as ``scale`` and ``poly``); its model specs are kept
so the same transforms apply to new data. Grouping factors become integer
level indices plus level names. Responses, trials and offsets are evaluated
here from the checked IR by a small numpy interpreter, not by ``eval``.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .errors import DataError, FormulaError
from .families import family_spec
from .ir import BinOp, Call, Expr, GroupTerm, Linear, ModelSpec, Neg, Num, Str, Var, expr_vars

#: numpy implementations of the functions a response/offset may use
_NUMPY_FUNCS: dict[str, Any] = {
    "log": np.log, "log2": np.log2, "log10": np.log10, "log1p": np.log1p,
    "exp": np.exp, "expm1": np.expm1, "sqrt": np.sqrt, "abs": np.abs, "I": lambda x: x,
}
#: extra functions handed to formulaic's evaluator (its own transforms cover the rest)
_FORMULAIC_CONTEXT: dict[str, Any] = {
    "log1p": np.log1p, "expm1": np.expm1, "sqrt": np.sqrt, "abs": np.abs, "exp": np.exp, "log": np.log,
}


@dataclass
class GroupBlock:
    """One group term of one predictor, as arrays."""

    number: int  # 1-based, across the whole model (names z_1, sd_1, ... in code)
    predictor: str
    term: GroupTerm
    label: str  # unique site label, e.g. "county" or "a:b" (suffixed if repeated)
    levels: list[str]
    g: np.ndarray  # (N,) int32 level index
    Z: np.ndarray | None  # (N, K); None when the term is intercept-only
    coef_names: list[str]
    z_scale: np.ndarray  # (K,) SD of each column, 1 for constant columns
    spec: Any = None  # formulaic ModelSpec of the group design

    @property
    def n_coef(self) -> int:
        return len(self.coef_names)


@dataclass
class PredictorData:
    name: str
    linear: Linear
    X: np.ndarray  # (N, P), centered when the predictor has an intercept
    X_mean: np.ndarray  # (P,)
    coef_names: list[str]
    x_scale: np.ndarray  # (P,)
    spec: Any  # formulaic ModelSpec of the population design (None if no terms)
    offset: np.ndarray | None
    groups: list[GroupBlock] = field(default_factory=list)

    @property
    def intercept(self) -> bool:
        return self.linear.intercept


@dataclass
class Design:
    spec: ModelSpec
    y: np.ndarray
    trials: np.ndarray | None
    predictors: dict[str, PredictorData]
    columns: dict[str, np.ndarray]  # data columns used by a non-linear expression
    n_dropped: int
    stats: dict[str, float]
    response_label: str

    @property
    def n(self) -> int:
        return int(self.y.shape[0])

    @property
    def groups(self) -> list[GroupBlock]:
        return [b for p in self.predictors.values() for b in p.groups]


# ---------------------------------------------------------------- helpers
def eval_expr(e: Expr, df: pd.DataFrame) -> np.ndarray:
    """Evaluate a checked value expression on the data (no Python eval)."""
    if isinstance(e, Num):
        return np.full(len(df), float(e.value))
    if isinstance(e, Var):
        col = df[e.name]
        if col.dtype == bool:
            return col.to_numpy(dtype=float)
        if not pd.api.types.is_numeric_dtype(col):
            raise DataError(f"column '{e.name}' is not numeric (dtype {col.dtype}) but is used in arithmetic")
        return col.to_numpy(dtype=float)
    if isinstance(e, Neg):
        return -eval_expr(e.operand, df)
    if isinstance(e, BinOp):
        a, b = eval_expr(e.left, df), eval_expr(e.right, df)
        with np.errstate(all="ignore"):
            return {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "**": np.power}[e.op](a, b)
    if isinstance(e, Call) and e.fn in _NUMPY_FUNCS and len(e.args) == 1:
        with np.errstate(all="ignore"):
            return np.asarray(_NUMPY_FUNCS[e.fn](eval_expr(e.args[0], df)), dtype=float)
    if isinstance(e, Str):
        raise DataError(f"a string cannot be evaluated as data: {e}")
    raise DataError(f"cannot evaluate '{e}' here")


def _unknown_column(name: str, columns: Iterable[str]) -> DataError:
    cols = [str(c) for c in columns]
    close = difflib.get_close_matches(name, cols, n=3, cutoff=0.6)
    lower = [c for c in cols if c.lower() == name.lower() and c not in close]
    close = lower + close
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    shown = ", ".join(cols[:12]) + (", ..." if len(cols) > 12 else "")
    return DataError(f"unknown column '{name}'{hint}; the data has: {shown}")


def columns_used(spec: ModelSpec) -> list[str]:
    """Every data column the model reads, in order of first use."""
    names: list[str] = []
    nlpar_names = {n for n, _ in spec.nlpars}

    def add(vs: Iterable[Var]) -> None:
        for v in vs:
            if v.name not in names and v.name not in nlpar_names:
                names.append(v.name)

    add(expr_vars(spec.formula.response.expr))
    for a in spec.formula.response.addterms:
        add(expr_vars(a))
    if not isinstance(spec.formula.rhs, Linear):
        add(expr_vars(spec.formula.rhs))
    for _, lin in spec.predictors():
        for t in lin.terms:
            for f in t.factors:
                add(expr_vars(f))
        for o in lin.offsets:
            add(expr_vars(o))
        for g in lin.group_terms:
            for t in g.terms:
                for f in t.factors:
                    add(expr_vars(f))
            add(Var(n) for n in g.group)
    return names


def _terms_text(intercept: bool, terms: Iterable[Any]) -> str:
    parts = ["1" if intercept else "0"] + [str(t) for t in terms]
    return " + ".join(parts)


def _model_matrix(text: str, df: pd.DataFrame) -> tuple[np.ndarray, list[str], Any]:
    import formulaic

    try:
        mm = formulaic.model_matrix(text, df, context=dict(_FORMULAIC_CONTEXT), na_action="raise")
    except Exception as exc:  # formulaic raises many types; surface one clear error
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"could not build the design for '{text}': {msg}") from None
    X = np.asarray(mm.to_numpy() if hasattr(mm, "to_numpy") else mm, dtype=float)
    return X, [str(c) for c in mm.columns], mm.model_spec


def _col_scale(X: np.ndarray) -> np.ndarray:
    if X.shape[1] == 0:
        return np.ones(0)
    sd = X.std(axis=0)
    return np.where(sd > 1e-12, sd, 1.0)


def _group_index(df: pd.DataFrame, cols: tuple[str, ...]) -> tuple[np.ndarray, list[str]]:
    if len(cols) == 1:
        codes, uniques = pd.factorize(df[cols[0]], sort=True)
        names = [str(u) for u in uniques]
    else:
        mi = pd.MultiIndex.from_frame(df[list(cols)])
        codes, uniques = pd.factorize(mi, sort=True)
        names = [":".join(str(x) for x in tup) for tup in uniques]
    return codes.astype(np.int32), names


# ---------------------------------------------------------------- main entry
def build_design(spec: ModelSpec, data: pd.DataFrame, *, na: str = "drop") -> Design:
    """Validate ``data`` against ``spec`` and build every array the model needs."""
    if not isinstance(data, pd.DataFrame):
        try:
            data = pd.DataFrame(data)
        except Exception:  # noqa: BLE001
            raise DataError(f"data must be a pandas DataFrame (or convertible), got {type(data).__name__}") from None
    if data.shape[0] == 0:
        raise DataError("the data has no rows")
    if na not in ("drop", "error"):
        raise DataError(f"na must be 'drop' or 'error', not {na!r}")
    used = columns_used(spec)
    for name in used:
        if name not in data.columns:
            raise _unknown_column(name, data.columns)
    df = data[used].copy() if used else pd.DataFrame(index=data.index)
    missing = df.isna().any(axis=1)
    n_dropped = int(missing.sum())
    if n_dropped:
        cols = [c for c in used if df[c].isna().any()]
        if na == "error":
            raise DataError(
                f"{n_dropped} rows have missing values in {', '.join(cols)}; drop them first or use na='drop' (--na drop)"
            )
        warnings.warn(
            f"dropped {n_dropped} of {len(df)} rows with missing values in {', '.join(cols)}",
            UserWarning,
            stacklevel=3,
        )
        df = df.loc[~missing]
        if df.shape[0] == 0:
            raise DataError("no rows left after dropping rows with missing values")
    df = df.reset_index(drop=True)

    fam = family_spec(spec.family.name)
    y, trials = _response(spec, df)
    fam.check(y, trials)

    y_sd = float(np.std(y)) if y.size > 1 else 1.0
    stats = {
        "y_mean": float(np.mean(y)),
        "y_sd": y_sd if y_sd > 1e-12 else 1.0,
        "n": float(len(y)),
    }

    predictors: dict[str, PredictorData] = {}
    number = 0
    labels_used: dict[str, int] = {}
    for pname, lin in spec.predictors():
        if lin.terms:
            X, names, mspec = _model_matrix(_terms_text(lin.intercept, lin.terms), df)
            if lin.intercept:
                keep = [i for i, n in enumerate(names) if n != "Intercept"]
                X, names = X[:, keep], [names[i] for i in keep]
        else:
            X, names, mspec = np.zeros((len(df), 0)), [], None
        x_scale = _col_scale(X)
        X_mean = X.mean(axis=0) if lin.intercept and X.shape[1] else np.zeros(X.shape[1])
        Xc = X - X_mean
        offset = None
        for o in lin.offsets:
            val = eval_expr(o, df)
            if not np.all(np.isfinite(val)):
                raise DataError(f"offset({o}) has non-finite values (e.g. log of zero)")
            offset = val if offset is None else offset + val
        pdata = PredictorData(pname, lin, Xc, X_mean, names, x_scale, mspec, offset)
        for gt in lin.group_terms:
            number += 1
            for col in gt.group:
                if df[col].nunique() < 2:
                    raise DataError(
                        f"grouping factor '{gt.group_label}' has only one level in the data: a group term needs at least two"
                    )
            g, levels = _group_index(df, gt.group)
            if len(levels) < 2:
                raise DataError(f"grouping factor '{gt.group_label}' has only one level in the data")
            if gt.terms:
                Z, znames, zspec = _model_matrix(_terms_text(gt.intercept, gt.terms), df)
                Zarr: np.ndarray | None = Z
            else:
                Zarr, znames, zspec = None, ["Intercept"], None
            base = gt.group_label if pname == "mu" else f"{gt.group_label}__{pname}"
            labels_used[base] = labels_used.get(base, 0) + 1
            label = base if labels_used[base] == 1 else f"{base}_{labels_used[base]}"
            z_scale = _col_scale(Zarr) if Zarr is not None else np.ones(1)
            if Zarr is not None:
                const = np.all(Zarr == Zarr[:1], axis=0)
                z_scale = np.where(const, 1.0, z_scale)
            pdata.groups.append(GroupBlock(number, pname, gt, label, levels, g, Zarr, znames, z_scale, zspec))
        predictors[pname] = pdata

    columns: dict[str, np.ndarray] = {}
    if not isinstance(spec.formula.rhs, Linear):
        nlnames = {n for n, _ in spec.nlpars}
        for v in expr_vars(spec.formula.rhs):
            if v.name not in nlnames and v.name not in columns:
                columns[v.name] = eval_expr(v, df)

    return Design(spec, y, trials, predictors, columns, n_dropped, stats, str(spec.formula.response.expr))


def _response(spec: ModelSpec, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
    resp = spec.formula.response
    fam = family_spec(spec.family.name)
    e = resp.expr
    trials: np.ndarray | None = None
    if isinstance(e, Call) and e.fn == "cbind":
        succ = eval_expr(e.args[0], df)
        fail = eval_expr(e.args[1], df)
        if (fail < 0).any():
            raise DataError(f"cbind(): failures ({e.args[1]}) are negative in {int((fail < 0).sum())} rows")
        y, trials = succ, succ + fail
    elif isinstance(e, Var) and not pd.api.types.is_numeric_dtype(df[e.name]) and df[e.name].dtype != bool:
        raise DataError(f"the response '{e.name}' is not numeric (dtype {df[e.name].dtype})")
    else:
        y = eval_expr(e, df)
    tr = resp.addterm("trials")
    if tr is not None:
        trials = eval_expr(tr.args[0], df)
    if trials is not None and not fam.needs_trials:
        raise FormulaError(
            f"the {spec.family.name} family takes no trials; use family='binomial' for cbind() or trials()"
        )
    if fam.needs_trials and trials is None:
        raise DataError(
            "binomial family needs trials: write cbind(successes, failures) ~ ... or successes | trials(n) ~ ..."
        )
    return y, trials
