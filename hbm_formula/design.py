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
from .ir import BinOp, Call, Expr, GroupTerm, Linear, ModelSpec, Neg, Num, Str, Var, expr_vars, terms_text

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
    #: per level, whether its effects are sampled centered (decided for param="auto" by a pilot fit)
    centered: np.ndarray | None = None
    auto_reason: str = ""
    #: the correlated block this term belongs to when it shares an ID with other terms
    joint: JointBlock | None = None

    @property
    def n_coef(self) -> int:
        return len(self.coef_names)

    def centered_levels(self) -> np.ndarray:
        """Boolean per level: centered or not, from the term's parameterization."""
        if self.centered is not None:
            return self.centered
        return np.full(len(self.levels), self.term.param == "centered")


@dataclass
class JointBlock:
    """Group terms on one grouping factor linked by an ID (brms ``(1 |p| g)``),
    possibly in different predictors (non-linear or distributional parameters):
    their coefficients get one SD vector, one LKJ correlation matrix and one
    matrix of group effects, of which each member term is a slice."""

    number: int  # 1-based among joint blocks (code names sd_j1, L_j1, z_j1, r_j1)
    label: str  # site label "<factor>__<ID>" (cor_<factor>__<ID>, L_..., z_...)
    id: str
    members: list[GroupBlock]

    @property
    def levels(self) -> list[str]:
        return self.members[0].levels

    @property
    def coef_names(self) -> list[str]:
        """Member coefficients, prefixed by their predictor unless it is the mean (brms style)."""
        return [c if m.predictor == "mu" else f"{m.predictor}_{c}" for m in self.members for c in m.coef_names]

    @property
    def param(self) -> str:
        return self.members[0].term.param

    def centered_levels(self) -> np.ndarray:
        return self.members[0].centered_levels()

    def offsets(self) -> list[int]:
        """Column offset of each member in the joint matrix of group effects."""
        out, a = [], 0
        for m in self.members:
            out.append(a)
            a += m.n_coef
        return out


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
class ResponseData:
    """The response and its brms-style addition terms, as arrays."""

    y: np.ndarray
    trials: np.ndarray | None = None
    weights: np.ndarray | None = None
    se: np.ndarray | None = None
    se_sigma: bool = False  # se(s, sigma = TRUE): residual SD on top of the known SE
    cens: np.ndarray | None = None  # int codes: 0 exact, 1 right, -1 left, 2 interval
    cens_upper: np.ndarray | None = None
    trunc_lb: np.ndarray | None = None
    trunc_ub: np.ndarray | None = None
    levels: list[str] | None = None  # categories of an ordinal or categorical response


@dataclass
class Design:
    spec: ModelSpec
    response: ResponseData
    predictors: dict[str, PredictorData]
    columns: dict[str, np.ndarray]  # data columns used by a non-linear expression
    n_dropped: int
    stats: dict[str, float]
    response_label: str
    joints: list[JointBlock] = field(default_factory=list)  # group terms linked by an ID

    @property
    def y(self) -> np.ndarray:
        return self.response.y

    @property
    def trials(self) -> np.ndarray | None:
        return self.response.trials

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


def unknown_column(name: str, columns: Iterable[str]) -> DataError:
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
        for arg in a.args:
            add(expr_vars(arg))
        for key, val in a.kwargs:
            if key != "sigma":  # se(s, sigma = TRUE): a flag, not a column
                add(expr_vars(val))
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
    if spec.formula.is_nonlinear:
        _check_nl_names(spec, data.columns)
    for name in used:
        if name not in data.columns:
            raise unknown_column(name, data.columns)
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
    _check_dpars(spec)
    resp = _response(spec, df)
    fam.check(resp.y, resp.trials)

    ys = fam.y_transform(resp.y) if fam.y_transform is not None else resp.y
    y_sd = float(np.std(ys)) if ys.size > 1 else 1.0
    stats = {
        "y_mean": float(np.mean(ys)),
        "y_sd": y_sd if y_sd > 1e-12 else 1.0,
        "n": float(len(ys)),
    }

    predictors: dict[str, PredictorData] = {}
    number = 0
    labels_used: dict[str, int] = {}
    plist: list[tuple[str, Linear]] = []
    for name, lin in spec.predictors():
        if name == "mu" and fam.kind == "categorical":
            # one predictor per non-reference category, all with the mu formula (brms mu2, mu3, ...)
            plist += [(f"mu{k}", lin) for k in range(2, len(resp.levels or []) + 1)]
        else:
            plist.append((name, lin))
    for pname, lin in plist:
        center = lin.intercept and not (fam.kind == "ordinal" and pname == "mu")
        if lin.terms:
            X, names, mspec = _model_matrix(terms_text(lin.intercept, lin.terms), df)
            if lin.intercept:
                keep = [i for i, n in enumerate(names) if n != "Intercept"]
                X, names = X[:, keep], [names[i] for i in keep]
        else:
            X, names, mspec = np.zeros((len(df), 0)), [], None
        x_scale = _col_scale(X)
        X_mean = X.mean(axis=0) if center and X.shape[1] else np.zeros(X.shape[1])
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
                Z, znames, zspec = _model_matrix(gt.lhs_text(), df)
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

    joints = _link_ids([b for p in predictors.values() for b in p.groups])
    return Design(spec, resp, predictors, columns, n_dropped, stats, str(spec.formula.response.expr), joints)


def _link_ids(blocks: list[GroupBlock]) -> list[JointBlock]:
    """Merge the group terms that share a grouping factor and an ID into joint blocks."""
    by_key: dict[tuple[tuple[str, ...], str], list[GroupBlock]] = {}
    for b in blocks:
        if b.term.id is not None:
            by_key.setdefault((b.term.group, b.term.id), []).append(b)
    taken = {b.label for b in blocks}
    joints: list[JointBlock] = []
    for (group, gid), members in by_key.items():
        if len(members) < 2:
            continue  # an ID used once links nothing (as in brms)
        # one parameterization for the block: param= is set per grouping factor, so members share it
        label = f"{':'.join(group)}__{gid}"
        while label in taken:
            label += "_"
        taken.add(label)
        j = JointBlock(len(joints) + 1, label, gid, members)
        for m in members:
            m.joint = j
        joints.append(j)
    return joints


def _check_nl_names(spec: ModelSpec, columns: Iterable[str]) -> None:
    """Names in a non-linear expression are declared parameters or data columns, never both."""
    import re

    cols = [str(c) for c in columns]
    params = [n for n, _ in spec.nlpars]
    text = str(spec.formula)
    for v in expr_vars(spec.formula.rhs):  # type: ignore[arg-type]
        if v.name in params and v.name in cols:
            m = re.search(rf"(?<![\w`]){re.escape(v.name)}(?![\w`])", text)
            raise FormulaError(
                f"'{v.name}' is both a data column and a non-linear parameter: rename the parameter",
                text, *(m.span() if m else (0, 1)),
            )
        if v.name not in params and v.name not in cols:
            close = difflib.get_close_matches(v.name, cols + params, n=3, cutoff=0.6)
            hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
            m = re.search(rf"(?<![\w`]){re.escape(v.name)}(?![\w`])", text)
            raise FormulaError(
                f"'{v.name}' in the non-linear formula is neither a data column nor a declared parameter{hint}; "
                f"declare a parameter with a formula line such as '{v.name} ~ 1'",
                text, *(m.span() if m else (0, 1)),
            )


def _check_dpars(spec: ModelSpec) -> None:
    fam = family_spec(spec.family.name)
    names = [a.name for a in fam.aux]
    for name, _ in spec.dpars:
        if name == "mu":
            raise FormulaError("mu is the main formula; give formulas only for distributional parameters")
        if name not in names:
            has = f"its parameters: {', '.join(names)}" if names else "it has no distributional parameters"
            raise FormulaError(f"family '{fam.name}' has no parameter '{name}'; {has}")


_CENS_CODES = {
    "none": 0, "exact": 0, "right": 1, "left": -1, "interval": 2,
    0: 0, 1: 1, -1: -1, 2: 2,  # True/False hash as 1/0
}


def _cens_codes(values: pd.Series) -> np.ndarray:
    out = np.zeros(len(values), dtype=np.int32)
    for i, v in enumerate(values.tolist()):
        key = v.strip().lower() if isinstance(v, str) else (int(v) if isinstance(v, (int, float, np.integer, np.floating)) and float(v).is_integer() else v)
        if key not in _CENS_CODES:
            raise DataError(
                f"unknown censoring code {v!r} in row {i}; use none/left/right/interval or 0/-1/1/2 (brms codes)"
            )
        out[i] = _CENS_CODES[key]
    return out


def _bound(e: Expr, df: pd.DataFrame) -> np.ndarray:
    return eval_expr(e, df)


def _categories(y: pd.Series, what: str) -> tuple[np.ndarray, list[str]]:
    if isinstance(y.dtype, pd.CategoricalDtype):
        cats = list(y.cat.categories)
        codes = y.cat.codes.to_numpy()
    else:
        cats = sorted(y.unique().tolist())
        lookup = {c: i for i, c in enumerate(cats)}
        codes = y.map(lookup).to_numpy()
    return codes.astype(np.int32), [str(c) for c in cats]


def _response(spec: ModelSpec, df: pd.DataFrame) -> ResponseData:
    resp = spec.formula.response
    fam = family_spec(spec.family.name)
    e = resp.expr
    for a in resp.addterms:
        if a.fn not in fam.addterms and not (a.fn == "trials" and not fam.needs_trials):
            raise FormulaError(f"the {fam.name} family does not take {a.fn}()")
    out = ResponseData(y=np.zeros(0))
    if fam.kind in ("ordinal", "categorical"):
        if not isinstance(e, Var):
            raise FormulaError(f"the {fam.name} family needs a plain column as its response")
        codes, levels = _categories(df[e.name], fam.name)
        need = 3 if fam.kind == "ordinal" else 2
        if len(levels) < need:
            raise DataError(
                f"an {'ordinal' if fam.kind == 'ordinal' else 'categorical'} response needs at least {need} categories; "
                f"'{e.name}' has {len(levels)} ({', '.join(levels)})"
                + ("; use family='bernoulli' for two" if fam.kind == "ordinal" else "")
            )
        out.y, out.levels = codes, levels
    elif isinstance(e, Call) and e.fn == "cbind":
        succ = eval_expr(e.args[0], df)
        fail = eval_expr(e.args[1], df)
        if (fail < 0).any():
            raise DataError(f"cbind(): failures ({e.args[1]}) are negative in {int((fail < 0).sum())} rows")
        out.y, out.trials = succ, succ + fail
    elif isinstance(e, Var) and not pd.api.types.is_numeric_dtype(df[e.name]) and df[e.name].dtype != bool:
        raise DataError(f"the response '{e.name}' is not numeric (dtype {df[e.name].dtype})")
    else:
        out.y = eval_expr(e, df)
    if (tr := resp.addterm("trials")) is not None:
        out.trials = eval_expr(tr.args[0], df)
    if out.trials is not None and not fam.needs_trials:
        raise FormulaError(
            f"the {spec.family.name} family takes no trials; use family='binomial' for cbind() or trials()"
        )
    if fam.needs_trials and out.trials is None:
        raise DataError(
            f"the {fam.name} family needs trials: write cbind(successes, failures) ~ ... or successes | trials(n) ~ ..."
        )
    if (w := resp.addterm("weights")) is not None:
        out.weights = eval_expr(w.args[0], df)
        if not np.all(np.isfinite(out.weights)) or (out.weights < 0).any():
            raise DataError("weights() must be finite and non-negative")
    if (se := resp.addterm("se")) is not None:
        out.se = eval_expr(se.args[0], df)
        if not np.all(np.isfinite(out.se)) or (out.se <= 0).any():
            raise DataError("se() must be positive: it is the known standard error of each observation")
        from .parse import LOGICAL_NAMES

        flag = dict(se.kwargs).get("sigma")
        out.se_sigma = bool(LOGICAL_NAMES[flag.name]) if isinstance(flag, Var) else False
    if (c := resp.addterm("cens")) is not None:
        if not isinstance(c.args[0], Var):
            raise FormulaError("cens() takes the column of censoring codes, e.g. cens(censored)")
        out.cens = _cens_codes(df[c.args[0].name])
        if (out.cens == 2).any():
            if len(c.args) < 2:
                raise DataError("interval censoring (code 2) needs the upper bound: cens(censored, upper)")
            out.cens_upper = eval_expr(c.args[1], df)
            bad = (out.cens == 2) & ~(out.cens_upper > out.y)
            if bad.any():
                raise DataError(f"interval-censored rows need upper > y; {int(bad.sum())} rows do not")
        else:
            out.cens_upper = out.y.copy() if len(c.args) < 2 else eval_expr(c.args[1], df)
    if (t := resp.addterm("trunc")) is not None:
        kw = dict(t.kwargs)
        if "lb" in kw:
            out.trunc_lb = np.broadcast_to(_bound(kw["lb"], df), out.y.shape).astype(float)
        if "ub" in kw:
            out.trunc_ub = np.broadcast_to(_bound(kw["ub"], df), out.y.shape).astype(float)
        lo = out.trunc_lb if out.trunc_lb is not None else -np.inf
        hi = out.trunc_ub if out.trunc_ub is not None else np.inf
        bad = (out.y < lo) | (out.y > hi)
        if bad.any():
            raise DataError(f"{int(bad.sum())} responses lie outside the trunc() bounds (first: {out.y[bad][0]:g})")
    if (out.cens is not None or out.trunc_lb is not None or out.trunc_ub is not None) and not fam.has_cdf:
        raise FormulaError(f"censoring and truncation need a CDF, which the {fam.name} family does not provide here")
    return out
