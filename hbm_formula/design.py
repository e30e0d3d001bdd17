"""DataFrame + IR → numeric arrays (a frozen ``Design``).

Population and group-level design matrices are built by ``terms.py``: our own
interpreter evaluates every factor, formulaic encodes and combines them
(contrasts, interactions, column names) from structure, never from text. The
matrices keep what rebuilds them on new data (transform states, training
levels). Grouping factors become integer level indices plus unique level
names. Responses, trials and offsets are evaluated by the same interpreter.

Nothing here is mutated after it is built: the stages after this one take a
``Design`` and return new objects (the parameterization decision, the lowered
code), as formulaic's ``ModelSpec.update()`` returns a copy.
"""

from __future__ import annotations

import difflib
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from .errors import DataError, FormulaError, warn
from .families import FAMILIES, family_spec
from .functions import LOGICAL_NAMES
from .ir import Call, Expr, GroupTerm, Linear, ModelSpec, Neg, Var, expr_calls
from .terms import Evaluator, Matrix, build_matrix


@dataclass(frozen=True)
class GroupBlock:
    """One group term of one predictor, as arrays."""

    number: int  # 1-based, across the whole model, in order of appearance
    predictor: str
    term: GroupTerm
    label: str  # unique site label, e.g. "county" or "a:b" (suffixed if repeated)
    levels: tuple[str, ...]
    g: np.ndarray  # (N,) int32 level index
    Z: np.ndarray | None  # (N, K); None when the term is intercept-only
    matrix: Matrix | None  # rebuilds Z on new data
    coef_names: tuple[str, ...]
    z_scale: np.ndarray  # (K,) SD of each column, 1 for constant columns
    joint: int | None = None  # number of the joint block (terms linked by an ID) it belongs to

    @property
    def n_coef(self) -> int:
        return len(self.coef_names)

    @property
    def factor(self) -> tuple[str, ...]:
        return self.term.group


@dataclass(frozen=True)
class JointBlock:
    """Group terms on one grouping factor linked by an ID (brms ``(1 |p| g)``),
    possibly in different predictors (non-linear or distributional parameters):
    their coefficients get one SD vector, one LKJ correlation matrix and one
    matrix of group effects, of which each member term is a slice."""

    number: int  # 1-based among joint blocks
    label: str  # site label "<factor>__<ID>" (cor_<factor>__<ID>, L_..., z_...)
    id: str
    members: tuple[GroupBlock, ...]

    @property
    def levels(self) -> tuple[str, ...]:
        return self.members[0].levels

    @property
    def coef_names(self) -> list[str]:
        """Member coefficients, prefixed by their predictor unless it is the mean (brms style)."""
        return [c if m.predictor == "mu" else f"{m.predictor}_{c}" for m in self.members for c in m.coef_names]

    @property
    def param(self) -> str:
        return self.members[0].term.param

    def offsets(self) -> list[int]:
        """Column offset of each member in the joint matrix of group effects."""
        out, a = [], 0
        for m in self.members:
            out.append(a)
            a += m.n_coef
        return out


@dataclass(frozen=True)
class PredictorData:
    name: str
    linear: Linear
    X: np.ndarray  # (N, P), centered when the predictor has an intercept
    X_mean: np.ndarray  # (P,)
    coef_names: tuple[str, ...]
    x_scale: np.ndarray  # (P,)
    matrix: Matrix | None  # rebuilds X (uncentered) on new data; None without terms
    offset: np.ndarray | None
    offset_states: Mapping[str, Any] = field(default_factory=dict)
    groups: tuple[GroupBlock, ...] = ()

    @property
    def intercept(self) -> bool:
        return self.linear.intercept


@dataclass(frozen=True)
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
    levels: tuple[str, ...] | None = None  # categories of an ordinal or categorical response


@dataclass(frozen=True)
class Design:
    spec: ModelSpec
    response: ResponseData
    predictors: Mapping[str, PredictorData]
    columns: Mapping[str, np.ndarray]  # data columns used by a non-linear expression
    n_dropped: int
    stats: Mapping[str, float]
    response_label: str
    joints: tuple[JointBlock, ...] = ()  # group terms linked by an ID
    #: the data columns the model reads, after dropping rows with missing values (fit files keep them)
    frame: pd.DataFrame | None = None
    #: dose-response parameters' default priors (centre, scale, group-SD scale), from the data
    nl_roles: Mapping[str, tuple[float, float, float]] = field(default_factory=dict)
    #: what the data showed that the fit's answer depends on (complete separation, a constant discrete response,
    #: dropped rows): warned as the design is built, and kept in the fit's ``warnings``
    warnings: tuple[str, ...] = ()

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

    def joint(self, number: int) -> JointBlock:
        return self.joints[number - 1]

    def group(self, number: int) -> GroupBlock:
        """The group term numbered ``number`` (``GroupBlock.number``)."""
        return next(b for b in self.groups if b.number == number)


# ---------------------------------------------------------------- helpers
def nested_folds(by_factor: dict[tuple[str, ...], list[GroupBlock]]) -> dict[tuple[str, ...], tuple[GroupBlock, np.ndarray]]:
    """Coarse grouping factors whose effects can be gathered through a finer factor's levels: a factor with one
    term, intercept-only and not linked by an ID, whose level is a function of another factor's level on every row
    (instructors within departments, classes within schools), where that finer factor has an intercept-only term
    in the same predictor. ``(r_fine + r_coarse[in_coarse])[g_fine]`` is ``r_fine[g_fine] + r_coarse[g_coarse]``
    with one gather over the rows (and one scatter-add in the gradient) fewer: InstEval's gradient 0.80 of the
    time (benchmarks/bench_gather.py). The finer factor chosen: the one with fewest levels; a factor takes at most
    one coarse factor and is then never folded itself. The nesting is the fitted data's: predictions keep the
    model's sums for new rows that break it (``predict.renest``). Returns coarse factor -> (the finer factor's term,
    each of its levels' coarse level)."""
    folds: dict[tuple[str, ...], tuple[GroupBlock, np.ndarray]] = {}
    targets: set[tuple[str, ...]] = set()
    for coarse, cblocks in by_factor.items():
        if len(cblocks) != 1 or cblocks[0].Z is not None or cblocks[0].joint is not None:
            continue
        cb = cblocks[0]
        best = None
        for fine, fblocks in by_factor.items():
            if fine == coarse or fine in folds or fine in targets or len(by_factor[fine][0].levels) <= len(cb.levels):
                continue
            match = [b for b in fblocks if b.predictor == cb.predictor and b.Z is None and b.joint is None]
            if not match:
                continue
            fb = match[0]
            level_map = np.full(len(fb.levels), -1, dtype=np.int64)
            level_map[fb.g] = cb.g
            if (level_map < 0).any() or not np.array_equal(level_map[fb.g], cb.g):
                continue  # a fine level without rows, or in two coarse levels: not nested
            if best is None or len(fb.levels) < len(best[0].levels):
                best = (fb, level_map.astype(np.int32))
        if best is not None and coarse not in targets:
            folds[coarse] = best
            targets.add(best[0].factor)
    return folds


def evaluate(e: Expr, df: pd.DataFrame, states: dict[str, dict[str, Any]] | None = None) -> np.ndarray:
    """Evaluate a checked value expression on the data (our interpreter, no Python eval)."""
    return np.asarray(Evaluator(df, {} if states is None else states, fitted=False).numeric(e), dtype=float)


def check_infinite_bounds(spec: ModelSpec, columns: Iterable[Any]) -> None:
    """R's ``trunc(ub = Inf)``: a bound named inf / Inf / infinity that is no column of the data is refused as what
    it means, before it is reported as an unknown column."""
    t = spec.formula.response.addterm("trunc")
    cols = {str(c) for c in columns}
    for key in ("lb", "ub"):
        bound = None if t is None else t.kwarg(key)
        words = [] if bound is None else [v.name for v in data_vars(bound)
                                          if v.name not in cols and v.name.lower() in ("inf", "infinity", "nan")]
        if words:  # (lb = -Inf, ub = x + Inf, ...)
            raise DataError(f"trunc({key} = {bound}): a bound is a finite number or a column (R's {words[0]} is "
                            f"neither): for no bound, leave {key} out")


def unknown_column(name: str, columns: Iterable[Any]) -> DataError:
    cols = [str(c) for c in columns]
    close = difflib.get_close_matches(name, cols, n=3, cutoff=0.6)
    lower = [c for c in cols if c.lower() == name.lower() and c not in close]
    close = lower + close
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    shown = ", ".join(cols[:12]) + (", ..." if len(cols) > 12 else "")
    return DataError(f"unknown column '{name}'{hint}; the data has: {shown}")


def data_vars(e: Expr) -> list[Var]:
    """The data columns an expression reads: its names, except logical constants given as
    keyword values (``scale(x, center = FALSE)``) and contrast codings (``C(f, Sum)``)."""
    out: list[Var] = []

    def walk(x: Expr) -> None:
        if isinstance(x, Var):
            out.append(x)
        elif isinstance(x, Call):
            args = x.args[:1] if x.fn == "C" else x.args
            for a in args:
                walk(a)
            for _, v in x.kwargs:
                if not (isinstance(v, Var) and v.name in LOGICAL_NAMES):
                    walk(v)
        elif isinstance(x, Neg):
            walk(x.operand)
        elif hasattr(x, "left"):
            walk(x.left)  # type: ignore[union-attr]
            walk(x.right)  # type: ignore[union-attr]

    walk(e)
    return out


def columns_used(spec: ModelSpec) -> list[str]:
    """Every data column the model reads, in order of first use."""
    names: list[str] = []
    nlpar_names = {n for n, _ in spec.nlpars}

    def add(vs: Iterable[Var]) -> None:
        for v in vs:
            if v.name not in names and v.name not in nlpar_names:
                names.append(v.name)

    add(data_vars(spec.formula.response.expr))
    for a in spec.formula.response.addterms:
        for arg in a.args:
            add(data_vars(arg))
        for _, val in a.kwargs:
            add(data_vars(val))
    if not isinstance(spec.formula.rhs, Linear):
        add(data_vars(spec.formula.rhs))
    for _, lin in spec.predictors():
        for t in lin.terms:
            for f in t.factors:
                add(data_vars(f))
        for o in lin.offsets:
            add(data_vars(o))
        for g in lin.group_terms:
            for t in g.terms:
                for f in t.factors:
                    add(data_vars(f))
            add(Var(n) for n in g.group)
    return names


def grouping_columns(spec: ModelSpec) -> list[str]:
    """The columns that are grouping factors (read as text from files: labels are kept exactly)."""
    out: list[str] = []
    for _, lin in spec.predictors():
        for g in lin.group_terms:
            out += [c for c in g.group if c not in out]
    return out


def categorical_uses(spec: ModelSpec) -> set[str]:
    """Columns the model reads as categories whatever their dtype: inside ``C()`` or as grouping factors."""
    out = set(grouping_columns(spec))

    def walk(e: Expr) -> None:
        if isinstance(e, Call):
            if e.fn == "C" and isinstance(e.args[0], Var):
                out.add(e.args[0].name)
            for a in e.args:
                walk(a)
        elif hasattr(e, "left"):
            walk(e.left)  # type: ignore[union-attr]
            walk(e.right)  # type: ignore[union-attr]

    for _, lin in spec.predictors():
        for t in (*lin.terms, *(t for g in lin.group_terms for t in g.terms)):
            for f in t.factors:
                walk(f)
    return out


def response_only_columns(spec: ModelSpec) -> set[str]:
    """Columns read only by the response side (the response, trials, censoring, bounds, weights)."""
    lhs = set(data_vars(spec.formula.response.expr))
    for a in spec.formula.response.addterms:
        for arg in (*a.args, *(v for _, v in a.kwargs)):
            lhs.update(data_vars(arg))
    rhs: set[str] = set()
    if not isinstance(spec.formula.rhs, Linear):
        rhs.update(v.name for v in data_vars(spec.formula.rhs))
    for _, lin in spec.predictors():
        for t in (*lin.terms, *(t for g in lin.group_terms for t in g.terms)):
            for f in t.factors:
                rhs.update(v.name for v in data_vars(f))
        for o in lin.offsets:
            rhs.update(v.name for v in data_vars(o))
        for g in lin.group_terms:
            rhs.update(g.group)
    return {v.name for v in lhs} - rhs


def text_columns(spec: ModelSpec) -> list[str]:
    """Grouping columns used only as grouping factors (or inside ``C()``): files give them as text,
    so labels such as ``01`` and ``1`` stay distinct levels."""
    numeric: set[str] = set()

    def numeric_vars(e: Expr) -> None:
        if isinstance(e, Call) and e.fn == "C" and isinstance(e.args[0], Var):
            return  # categorical use: text is fine
        numeric.update(v.name for v in data_vars(e))

    numeric_vars(spec.formula.response.expr)
    for a in spec.formula.response.addterms:
        for arg in (*a.args, *(v for _, v in a.kwargs)):
            numeric_vars(arg)
    if not isinstance(spec.formula.rhs, Linear):
        numeric_vars(spec.formula.rhs)
    for _, lin in spec.predictors():
        for t in (*lin.terms, *(t for g in lin.group_terms for t in g.terms)):
            for f in t.factors:
                numeric_vars(f)
        for o in lin.offsets:
            numeric_vars(o)
    return [c for c in grouping_columns(spec) if c not in numeric]


def _col_scale(X: np.ndarray) -> np.ndarray:
    if X.shape[1] == 0:
        return np.ones(0)
    sd = X.std(axis=0)
    return np.where(sd > 1e-12, sd, 1.0)


def _label(v: Any) -> str:
    return v if isinstance(v, str) else str(v)


def _unique_labels(values: list[Any], column: str = "") -> list[str]:
    """Text labels of distinct values; values whose text coincides (1 and '1') get their repr.
    A label with a NUL character is refused: netCDF (the fit file) cannot hold it."""
    texts = [_label(v) for v in values]
    for t in texts:
        if "\x00" in t:
            raise DataError(f"column '{column}' has a label with a NUL character ({t!r}); remove it from the data")
    seen: dict[str, int] = {}
    for t in texts:
        seen[t] = seen.get(t, 0) + 1
    return [repr(v) if seen[t] > 1 else t for v, t in zip(values, texts, strict=True)]


def _join_label(parts: tuple[str, ...]) -> str:
    """``a:b`` labels of an interaction's levels, unambiguous: a part holding ':' or '`' is backtick-quoted."""
    return ":".join(f"`{p.replace('`', '``')}`" if (":" in p or "`" in p) else p for p in parts)


def _sorted_uniques(col: pd.Series) -> list[Any]:
    uniq = list(pd.unique(col))
    if isinstance(col.dtype, pd.CategoricalDtype):
        present = set(uniq)
        return [c for c in col.cat.categories if c in present]
    try:
        return sorted(uniq)
    except TypeError:
        return sorted(uniq, key=lambda v: (type(v).__name__, str(v)))


def group_index(df: pd.DataFrame, cols: tuple[str, ...]) -> tuple[np.ndarray, list[str]]:
    """Level index per row and unique level names (interactions: the levels that occur)."""
    per_col: list[tuple[np.ndarray, list[str]]] = []
    for c in cols:
        uniq = _sorted_uniques(df[c])
        lookup = {v: i for i, v in enumerate(uniq)}
        codes = np.fromiter((lookup[v] for v in df[c].tolist()), dtype=np.int64, count=len(df))
        per_col.append((codes, _unique_labels(uniq, c)))
    if len(cols) == 1:
        codes, names = per_col[0]
        return codes.astype(np.int32), names
    combo = np.stack([c for c, _ in per_col], axis=1)
    uniq_rows, inverse = np.unique(combo, axis=0, return_inverse=True)
    names = [_join_label(tuple(per_col[k][1][i] for k, i in enumerate(row))) for row in uniq_rows]
    return inverse.reshape(-1).astype(np.int32), names


def level_codes(df: pd.DataFrame, cols: tuple[str, ...], levels: tuple[str, ...]) -> tuple[np.ndarray, list[str]]:
    """Indices of new rows into fitted ``levels`` (-1 for a level the model has not seen) and the new level names."""
    names = level_codes_names(df, cols)
    lookup = {lv: i for i, lv in enumerate(levels)}
    codes = np.array([lookup.get(n, -1) for n in names], dtype=np.int32)
    new = sorted({n for n, c in zip(names, codes, strict=True) if c < 0})
    return codes, new


# ---------------------------------------------------------------- main entry
def build_design(spec: ModelSpec, data: Any, *, na: str = "drop") -> Design:
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
    dup = sorted({str(c) for c in data.columns[data.columns.duplicated()]})
    used = columns_used(spec)
    if spec.formula.is_nonlinear:
        _check_nl_names(spec, data.columns)
    check_infinite_bounds(spec, data.columns)
    for name in used:
        if name not in data.columns:
            raise unknown_column(name, data.columns)
        if name in dup:
            raise DataError(f"the data has two columns named '{name}': rename one")
    df = data[used].copy() if used else pd.DataFrame(index=data.index)
    said: list[str] = []

    def say(msg: str) -> None:
        said.append(msg)
        warn(msg)  # (at the user's line)

    df = _drop_missing(df, used, na, spec, say)
    df = df.reset_index(drop=True)

    if len(df) < 2:
        raise DataError(f"the data has {len(df)} usable row: a model needs at least 2 (and several per group)")
    fam = family_spec(spec.family.name)
    _check_dpars(spec)
    resp = _response(spec, df)
    fam.check(resp.y, resp.trials)
    _check_spread(resp, fam.discrete, str(spec.formula.response.expr), say)

    ys = fam.y_transform(resp.y) if fam.y_transform is not None else resp.y
    y_sd = float(np.std(ys)) if ys.size > 1 else 1.0
    stats = {"y_mean": float(np.mean(ys)), "y_sd": y_sd if y_sd > 1e-12 else 1.0, "n": float(len(ys))}

    plist: list[tuple[str, Linear]] = []
    for name, lin in spec.predictors():
        if name == "mu" and fam.kind == "categorical":
            # one predictor per non-reference category, all with the mu formula (brms mu2, mu3, ...)
            plist += [(f"mu{k}", lin) for k in range(2, len(resp.levels or ()) + 1)]
        else:
            plist.append((name, lin))
    predictors: dict[str, PredictorData] = {}
    number = 0

    def base_label(gt: Any, pname: str) -> str:
        base = gt.group_label if pname == "mu" else f"{gt.group_label}__{pname}"
        return base.replace("/", "_")  # a backticked factor `a/b`: netCDF (the fit file) refuses '/' in names

    # a second term on a factor is <factor>_2 (_3, ...), skipping a label another factor has (`g_2` beside two
    # terms on g: a review found sd_g_2 sampled twice)
    bases = {base_label(gt, pname) for pname, lin in plist for gt in lin.group_terms}
    taken: set[str] = set()
    for pname, lin in plist:
        center = lin.intercept and not (fam.kind == "ordinal" and pname == "mu")
        pdata = _population(pname, lin, df, center)
        blocks = []
        for gt in lin.group_terms:
            number += 1
            base = base_label(gt, pname)
            label, k = base, 1
            while label in taken or (k > 1 and label in bases):
                k += 1
                label = f"{base}_{k}"
            taken.add(label)
            blocks.append(_group_block(number, pname, gt, label, df))
        predictors[pname] = replace(pdata, groups=tuple(blocks))

    columns: dict[str, np.ndarray] = {}
    if not isinstance(spec.formula.rhs, Linear):
        nlnames = {n for n, _ in spec.nlpars}
        for v in data_vars(spec.formula.rhs):
            if v.name not in nlnames and v.name not in columns:
                columns[v.name] = evaluate(v, df)

    predictors, joints = _link_ids(predictors)
    spec, nl_roles = _dose_defaults(spec, df, resp.y)
    if fam.name in ("bernoulli", "binomial", "beta_binomial") and "mu" in predictors:
        for msg in separation(predictors["mu"], resp):
            say(msg)
    if fam.kind in ("ordinal", "categorical") and predictors:
        for msg in category_separation(next(iter(predictors.values())), resp, fam.kind == "ordinal"):
            say(msg)
    n_dropped = int(len(data) - len(df))
    return Design(spec, resp, predictors, columns, n_dropped, stats, str(spec.formula.response.expr),
                  joints, df, nl_roles, tuple(said))


def _dose_defaults(spec: ModelSpec, df: pd.DataFrame, y: np.ndarray) -> tuple[ModelSpec, dict[str, tuple[float, float, float]]]:
    """Resolve what dose-response calls (``LL4(dose, b, c, d, e)``) leave unsaid: each parameter's
    bound (b's sign from the data's direction, e > 0, ...) unless the formula gives one, and its
    data-driven default prior. Returns the spec with those bounds written in (it prints them)."""
    from .doseresponse import defaults
    from .functions import DOSE_MODELS

    if not spec.formula.is_nonlinear:
        return spec, {}
    bounds = {n: (lo, hi) for n, lo, hi in spec.nlbounds}
    roles: dict[str, tuple[float, float, float]] = {}
    for call in expr_calls(spec.formula.rhs):  # type: ignore[arg-type]
        if call.fn not in DOSE_MODELS:
            continue
        model = DOSE_MODELS[call.fn]
        nlnames = {n for n, _ in spec.nlpars}
        for v in data_vars(call.args[0]):
            if v.name in nlnames:
                raise FormulaError(f"{call.fn}(): the dose, its first argument, must be a data column; "
                                   f"'{v.name}' is a parameter of the model")
            if v.name not in df.columns:
                raise unknown_column(v.name, df.columns)
        names = {role: a.name for role, a in zip(model.params, call.args[1:], strict=True) if isinstance(a, Var)}
        found = defaults(model, names, evaluate(call.args[0], df), y)
        for name, b in found.bounds.items():
            bounds.setdefault(name, b)
        for name, r in found.roles.items():
            roles.setdefault(name, r)
        if (np.asarray(evaluate(call.args[0], df)) < 0).any():
            raise DataError(f"{call.fn}(): the dose {call.args[0]} has negative values; doses are 0 or more")
    order = [n for n, _ in spec.nlpars]
    nlbounds = tuple((n, *bounds[n]) for n in order if n in bounds and bounds[n] != (None, None))
    return replace(spec, nlbounds=nlbounds), roles


def float32_risk(design: Design) -> str | None:
    """Why single precision (JAX's default) cannot represent this model's log density well, or None.

    A log-likelihood summed over values of magnitude M in float32 carries rounding of about
    M · 6e-8 per term: counts near 1e7 (Poisson terms y·log(mu) - lgamma(y + 1) ~ 1e8) make the
    log density noisy by whole units, which NUTS reports as non-mixing (R-hat = inf) rather than
    as a precision problem. The same happens for a continuous response whose values are huge
    compared with their spread (1e6 ± 0.01)."""
    fam = family_spec(design.spec.family.name)
    y = np.asarray(design.y, dtype=float)
    big = float(np.max(np.abs(y))) if y.size else 0.0
    if fam.discrete and fam.kind == "standard" and big > 1e5:
        return f"counts up to {big:.3g}: their log-likelihood terms (about y·log y = {big * np.log(big):.2g}) lose whole units in float32"
    if design.trials is not None and float(np.max(design.trials)) > 1e6:
        return f"trials up to {float(np.max(design.trials)):.3g} lose precision in float32"
    sd = float(np.std(y)) if y.size > 1 else 0.0
    if not fam.discrete and sd > 0 and big / sd > 1e5:
        return f"values up to {big:.3g} vary by only {sd:.3g}: float32 keeps about 7 digits"
    # magnitudes float32 cannot hold (beyond about 3e38, and squares of anything beyond 1e19)
    arrays = [("the response", y)] + [(f"the predictors of {p.name}", p.X) for p in design.predictors.values()]
    arrays += [(f"the predictors of ({b.label})", b.Z) for b in design.groups if getattr(b, "Z", None) is not None]
    for what, a in arrays:
        a = np.asarray(a, dtype=float)
        if a.size and float(np.max(np.abs(a))) > 1e15:
            return f"{what} reach {float(np.max(np.abs(a))):.3g}, beyond what float32 computes with"
    return None


def prior_range_risk(entries: Iterable[Any]) -> str | None:
    """Why single precision cannot hold a prior's constants (``normal(0, 1e39)``), or None; constants that
    even double precision cannot use are an error naming the parameter."""
    risk = None
    for e in entries:
        for v in (*e.prior.args, *(v for _, v in e.prior.kwargs)):
            a = abs(float(v))
            if a > 1e300 or 0 < a < 1e-300:
                raise DataError(f"the prior of {e.name}, {e.prior}, has the number {float(v):g}, beyond what a "
                                "sampler can compute with; give numbers between 1e-300 and 1e300 in size")
            if risk is None and (a > 1e30 or 0 < a < 1e-30):
                risk = f"the prior of {e.name}, {e.prior}, has the number {float(v):g}, beyond float32's range"
    return risk


def prior_fix(*classes: str) -> str:
    """The fix for coefficients bounded only by their priors, with an example prior for each class (``b`` when none
    is named; a categorical response's ``b_mu2``, ``b_mu3``, ...) in Python's and the command line's spelling (quoted
    for a shell)."""
    classes = classes or ("b",)
    py = ", ".join(f"{c!r}: 'normal(0, 1)'" for c in classes)
    cli = " ".join(f"--prior {shlex.quote(c + '=normal(0, 1)')}" for c in classes)
    which = "a stronger prior" if len(classes) == 1 else "stronger priors"
    return f"use {which} (e.g. priors={{{py}}}; CLI: {cli})"


def _running_classes(categories: Any, present: np.ndarray) -> list[str]:
    """A categorical response's coefficient classes that run off with ``categories`` (indices; 0 the reference):
    each non-reference category's own (``b_mu<k+1>``); the reference's, or every category but one, move every
    class (each relative to the reference)."""
    cats = sorted({int(c) for c in categories})
    if 0 in cats:
        cats = [int(c) for c in present if c > 0]
    return [f"b_mu{c + 1}" for c in cats] or ["b_mu2"]


#: what the separation messages of one column or level advise
_PRIOR_FIX = prior_fix()
_SEPARATION_FIX = f"{_PRIOR_FIX}, pool the level, or drop the term"


def separation(p: PredictorData, resp: ResponseData) -> list[str]:
    """Population columns that separate a binary (or binomial) response: where a coefficient can grow
    without bound and only its prior stops it (Albert & Anderson 1984). Checked one column at a time:
    an indicator whose rows are all failures or all successes, or a threshold on a numeric column
    above which every row succeeds and below which every row fails."""
    y = resp.y.astype(float)
    n = resp.trials if resp.trials is not None else np.ones_like(y)
    informative = n > 0  # (a row of zero trials says nothing either way)
    frac = np.divide(y, n, out=np.full_like(y, 0.5), where=informative)
    all_zero, all_one = (frac == 0) & informative, (frac == 1) & informative
    if not (all_zero | all_one).any() or all_zero[informative].all() or all_one[informative].all():
        return []  # (a response that never varies is said on its own)
    X = p.X + p.X_mean
    out: list[str] = []
    said: set[str] = set()
    for j, name in enumerate(p.coef_names):
        x = X[:, j]
        vals = np.unique(x)
        if vals.size == 2 and set(vals.tolist()) <= {0.0, 1.0}:
            on = (x == 1) & informative
            if on.any() and (~on & informative).any() and (all_zero[on].all() or all_one[on].all()):
                what = "every row fails" if all_zero[on].all() else "every row succeeds"
                said.add(name)
                out.append(f"separation: where {name} = 1, {what} ({_rows(int(on.sum()))}): the coefficient of {name} "
                           f"is bounded only by its prior; {_SEPARATION_FIX}")
        elif all_zero.any() and all_one.any() and (all_zero | all_one)[informative].all():  # (two values too: 1/2)
            lo0, hi0, lo1, hi1 = x[all_zero].min(), x[all_zero].max(), x[all_one].min(), x[all_one].max()
            if hi0 < lo1 or hi1 < lo0:
                cut = (hi0 + lo1) / 2 if hi0 < lo1 else (hi1 + lo0) / 2
                above = ("every trial succeeds" if hi0 < lo1 else "every trial fails") if resp.trials is not None \
                    else f"the response is {'1' if hi0 < lo1 else '0'}"
                below = "every trial the other way" if resp.trials is not None else "the other value"
                out.append(f"complete separation: {above} whenever {name} > {cut:.3g} and {below} below: the "
                           f"coefficient of {name} is bounded only by its prior; {_PRIOR_FIX} or a "
                           "different model")
    return out + _reference_separation(p, X, all_zero, all_one, informative, resp.trials is not None, said)


def _reference_rows(p: PredictorData, X: np.ndarray, said: set[str]) -> list[tuple[str, Any, np.ndarray]]:
    """Each treatment-coded factor's reference level, which no column of its own stands for: the factor, the level
    and its rows (where each of the factor's indicator columns ``<factor>[T.<level>]`` is 0). Found from the
    factors' levels (``Matrix.states``), not by parsing column names (a label may hold ']' or ':'). A factor of one
    column in ``said`` (named already: its reference rows are the same split) is left out."""
    names = list(p.coef_names)
    out = []
    for key, state in (p.matrix.states if p.matrix is not None else {}).items():
        levels = state.get("levels")
        if not levels:
            continue
        cols = [f"{key}[T.{lv}]" for lv in levels]
        have = [c for c in cols if c in names]
        missing = [lv for lv, c in zip(levels, cols, strict=True) if c not in names]
        if not have or len(missing) != 1 or (len(have) == 1 and have[0] in said):
            continue  # (fully coded, no intercept to absorb a level; other contrasts; or its one column named)
        block = X[:, [names.index(c) for c in have]]
        if not set(np.unique(block).tolist()) <= {0.0, 1.0} or (block.sum(axis=1) > 1).any():
            continue
        out.append((key, missing[0], block.sum(axis=1) == 0))
    return out


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


def _reference_separation(p: PredictorData, X: np.ndarray, all_zero: np.ndarray, all_one: np.ndarray,
                          informative: np.ndarray, binomial: bool, said: set[str]) -> list[str]:
    """A factor's reference level whose rows all fail or all succeed: the intercept (or the coefficients standing for
    it) and the factor's coefficients grow without bound together, bounded only by their priors."""
    out = []
    for factor, level, rows in _reference_rows(p, X, said):
        ref = rows & informative
        if ref.any() and (~ref & informative).any() and (all_zero[ref].all() or all_one[ref].all()):
            what = "fails" if all_zero[ref].all() else "succeeds"
            base = "the intercept" if p.intercept else "the coefficients standing for the intercept"
            out.append(f"separation: where {factor} is at its reference level {level!r} ({_rows(int(ref.sum()))}; no "
                       f"column of its own), every {'trial' if binomial else 'row'} {what}: {base} and the "
                       f"coefficients of {factor} are bounded only by their priors; {_SEPARATION_FIX}")
    return out


def _level_separation(p: PredictorData, X: np.ndarray, y: np.ndarray, levels: tuple[Any, ...], ordinal: bool,
                      said: set[str]) -> list[str]:
    """A factor's level (an indicator column's rows, or the reference level's) that leaves some coefficient bounded
    only by its prior: for an ordinal response, every row of the level in the lowest category, or every one in the
    highest (quasi-separation: its coefficient runs off to make that category certain); for a categorical one, a
    category that never occurs at the level (that category's coefficient runs off to minus infinity), or only
    one that does. Columns in ``said`` were named already (complete separation)."""
    present = np.unique(y)
    where: list[tuple[str, str, np.ndarray]] = []
    for j, name in enumerate(p.coef_names):
        x = X[:, j]
        if name not in said and set(np.unique(x).tolist()) == {0.0, 1.0}:
            where.append((f"{name} = 1 ({_rows(int((x == 1).sum()))})",
                          f"the coefficient of {name} is bounded only by its prior", x == 1))
    for factor, level, rows in _reference_rows(p, X, said):
        base = "the thresholds" if ordinal else "an intercept"
        where.append((f"{factor} is at its reference level {level!r} ({_rows(int(rows.sum()))}; no column of its "
                      "own)", f"{base} and the coefficients of {factor} are bounded only by their priors", rows))
    out = []

    def fix(runs_off: Any = ()) -> str:
        """The advice; for a categorical response with the classes of the categories whose coefficients run off."""
        if ordinal:
            return f"; {_SEPARATION_FIX}"
        return f"; {prior_fix(*_running_classes(runs_off, present))}, pool the level, or drop the term"

    for at, bounded, rows in where:
        if not rows.any() or rows.all():
            continue
        here, there = y[rows], y[~rows]
        if ordinal:
            for end, word in ((present[0], "lowest"), (present[-1], "highest")):
                if (here == end).all() and not (there == end).all():
                    out.append(f"separation: where {at}, every row is in the {word} "
                               f"category ({levels[end]!r}): {bounded}{fix()}")
            continue
        seen = np.unique(here)
        if seen.size == 1 and (there != seen[0]).any():
            # (one category certain: every other category's coefficient runs, the reference's as all of them)
            out.append(f"separation: where {at}, every row is {levels[seen[0]]!r}: "
                       f"{bounded}{fix([0])}")
        elif seen.size < present.size:
            absent = [int(c) for c in present if c not in seen]
            never = " or ".join(repr(levels[c]) for c in absent)
            out.append(f"separation: where {at}, the response is never {never}: {bounded}{fix(absent)}")
    return out


def category_separation(p: PredictorData, resp: ResponseData, ordinal: bool) -> list[str]:
    """Population columns that separate a categorical response's category from the rest (every row of it on one
    side of a threshold, every other row on the other: that category's coefficient can grow without bound), or
    order an ordinal response completely (every cut separated, the same way: with one common coefficient, a cut
    alone bounds it through the others'). The coefficient is then bounded only by its prior, as under complete
    separation in a logistic model. One column at a time; then each factor level's rows (``_level_separation``)."""
    y, levels = np.asarray(resp.y, int), resp.levels or ()
    present = np.unique(y)  # (an ordinal's categories in order, those with rows)
    X = p.X + p.X_mean
    out: list[str] = []
    said: set[str] = set()
    for j, name in enumerate(p.coef_names):
        x = X[:, j]
        if np.unique(x).size < 2:
            continue
        if ordinal:
            lo, hi = [x[y == k].min() for k in present], [x[y == k].max() for k in present]
            up = all(hi[i] < lo[i + 1] for i in range(len(present) - 1))
            down = all(lo[i] > hi[i + 1] for i in range(len(present) - 1))
            if up or down:
                said.add(name)
                out.append(f"complete separation: {name} orders the response's categories completely (each "
                           f"category's rows {'above' if up else 'below'} the one before's): the coefficient of "
                           f"{name} is bounded only by its prior; {_PRIOR_FIX} or a different model")
            continue
        apart, cats = [], []
        for c in range(len(levels)):
            a, b = x[y == c], x[y != c]
            if a.size and b.size and (a.min() > b.max() or a.max() < b.min()):
                cut = (a.min() + b.max()) / 2 if a.min() > b.max() else (a.max() + b.min()) / 2
                apart.append(f"{levels[c]!r} whenever {name} {'>' if a.min() > b.max() else '<'} {cut:.3g}")
                cats.append(c)
        if apart:
            said.add(name)
            # (a categorical response's coefficients have a class per category past the first: b_mu2, b_mu3, ...;
            # on a 0/1 column the rows at 1 or at 0 are all one category, which leaves every other category's
            # coefficient unbounded there too, as at a factor's level: every class)
            binary = set(np.unique(x).tolist()) <= {0.0, 1.0}
            runs = _running_classes([0] if binary else cats, present)
            out.append(f"complete separation: the response is {' and '.join(apart)} and another category otherwise: "
                       f"the coefficient of {name} is bounded only by its prior; {prior_fix(*runs)} or a "
                       "different model")
    return out + _level_separation(p, X, y, levels, ordinal, said)


def _check_spread(resp: ResponseData, discrete: bool, label: str, say: Any) -> None:
    """A constant response has nothing to model: refused for continuous families (its SD is the
    scale of the default priors, and sigma would chase zero), a warning for discrete ones."""
    y = resp.y
    if not discrete:
        if np.all(y == y[0]):
            raise DataError(f"the response {label} is constant ({y[0]:g} in every row): there is nothing to model")
        return
    if resp.trials is not None:
        frac = np.divide(y, resp.trials, out=np.zeros_like(y, dtype=float), where=resp.trials > 0)
        constant = bool(np.all(frac == frac[0])) and frac[0] in (0.0, 1.0)
    else:
        constant = bool(np.all(y == y[0])) and y[0] in (0, 1) and resp.levels is None
    if not constant:
        return
    say(f"the response {label} is the same in every row ({y[0]:g}): its level is set by the prior alone "
        "(as under complete separation)")


def _drop_missing(df: pd.DataFrame, used: list[str], na: str, spec: ModelSpec, say: Any) -> pd.DataFrame:
    missing = df.isna().any(axis=1)
    n_missing = int(missing.sum())
    if not n_missing:
        return df
    per_col = {c: int(df[c].isna().sum()) for c in used if df[c].isna().any()}
    where = ", ".join(f"{c} ({k})" for c, k in per_col.items())
    groups = [c for c in grouping_columns(spec) if c in per_col]
    note = (f"; a missing grouping label (an empty field, NA or null in a file) is treated as missing "
            f"({', '.join(groups)})" if groups else "")
    if na == "error":
        raise DataError(
            f"{n_missing} rows have missing values in {where}; drop them first or use na='drop' (--na drop){note}"
        )
    say(f"dropped {n_missing} of {len(df)} rows with missing values in {where}{note}")
    df = df.loc[~missing]
    if df.shape[0] == 0:
        raise DataError("no rows left after dropping rows with missing values")
    return df


def _offset(lin: Linear, df: pd.DataFrame, states: dict[str, dict[str, Any]]) -> np.ndarray | None:
    offset = None
    for o in lin.offsets:
        try:
            val = evaluate(o, df, states)
        except DataError as err:
            raise DataError(f"offset({o}): {err}") from None
        offset = val if offset is None else offset + val
    return offset


def _population(pname: str, lin: Linear, df: pd.DataFrame, center: bool) -> PredictorData:
    if lin.terms:
        m = build_matrix(lin.intercept, lin.terms, df)
        X, names = m.values, list(m.names)
        if lin.intercept:
            keep = [i for i, n in enumerate(names) if n != "Intercept"]
            X, names = X[:, keep], [names[i] for i in keep]
        matrix: Matrix | None = m
    else:
        X, names, matrix = np.zeros((len(df), 0)), [], None
    X_mean = X.mean(axis=0) if center and X.shape[1] else np.zeros(X.shape[1])
    states: dict[str, dict[str, Any]] = {}
    offset = _offset(lin, df, states)
    return PredictorData(pname, lin, X - X_mean, X_mean, tuple(names), _col_scale(X), matrix, offset, states)


def _group_block(number: int, pname: str, gt: GroupTerm, label: str, df: pd.DataFrame) -> GroupBlock:
    for col in gt.group:
        if df[col].nunique() < 2:
            raise DataError(
                f"grouping factor '{gt.group_label}' has only one level in the data: a group term needs at least two"
            )
    g, levels = group_index(df, gt.group)
    if gt.terms:
        m = build_matrix(gt.intercept, gt.terms, df)
        Z: np.ndarray | None = m.values
        znames: list[str] = list(m.names)
        z_scale = _col_scale(m.values)
        const = np.all(m.values == m.values[:1], axis=0)
        z_scale = np.where(const, 1.0, z_scale)
        matrix: Matrix | None = m
    else:
        Z, znames, z_scale, matrix = None, ["Intercept"], np.ones(1), None
    return GroupBlock(number, pname, gt, label, tuple(levels), g, Z, matrix, tuple(znames), z_scale)


def _link_ids(predictors: dict[str, PredictorData]) -> tuple[dict[str, PredictorData], tuple[JointBlock, ...]]:
    """Merge the group terms that share a grouping factor and an ID into joint blocks."""
    blocks = [b for p in predictors.values() for b in p.groups]
    by_key: dict[tuple[tuple[str, ...], str], list[GroupBlock]] = {}
    for b in blocks:
        if b.term.id is not None:
            by_key.setdefault((b.term.group, b.term.id), []).append(b)
    taken = {b.label for b in blocks}
    joint_of: dict[int, int] = {}
    keys: list[tuple[str, str, list[GroupBlock]]] = []
    for (group, gid), members in by_key.items():
        if len(members) < 2:
            continue  # an ID used once links nothing (as in brms)
        label = f"{':'.join(group)}__{gid}"
        while label in taken:
            label += "_"
        taken.add(label)
        keys.append((label, gid, members))
        for m in members:
            joint_of[m.number] = len(keys)
    new_preds = {
        name: replace(p, groups=tuple(replace(b, joint=joint_of.get(b.number)) for b in p.groups))
        for name, p in predictors.items()
    }
    by_number = {b.number: b for p in new_preds.values() for b in p.groups}
    joints = tuple(
        JointBlock(k, label, gid, tuple(by_number[m.number] for m in members))
        for k, (label, gid, members) in enumerate(keys, start=1)
    )
    return new_preds, joints


def _check_nl_names(spec: ModelSpec, columns: Iterable[Any]) -> None:
    """Names in a non-linear expression are declared parameters or data columns, never both."""
    import re

    cols = [str(c) for c in columns]
    params = [n for n, _ in spec.nlpars]
    text = str(spec.formula)

    def span(name: str) -> tuple[int, int]:
        """Where ``name`` first stands in the formula, for the caret."""
        m = re.search(rf"(?<![\w`]){re.escape(name)}(?![\w`])", text)
        return m.span() if m else (0, 1)

    family = family_spec(spec.family.name)
    for name in params:  # else the family's parameter and the curve's would be one variable (a review: the decay
        # rate of a * exp(-sigma * t) became the residual SD too)
        if family.aux_param(name) is not None:
            raise FormulaError(f"'{name}' is a parameter of the {family.name} family and cannot also name a non-linear "
                               f"parameter: rename it (e.g. '{name}_nl' or 'k')", text, *span(name))
    for v in data_vars(spec.formula.rhs):  # type: ignore[arg-type]
        where = span(v.name)
        if v.name in params and v.name in cols:
            raise FormulaError(
                f"'{v.name}' is both a data column and a non-linear parameter: rename the parameter", text, *where
            )
        if v.name not in params and v.name not in cols:
            close = difflib.get_close_matches(v.name, cols + params, n=3, cutoff=0.6)
            hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
            declare = (f"declare a parameter with a formula line such as '{v.name} ~ 1'"
                       if v.name != "mu" and family.aux_param(v.name) is None else
                       f"'{v.name}' is a parameter of the {family.name} family (a line '{v.name} ~ 1' would model it): "
                       f"give the curve's parameter another name, e.g. '{v.name}_nl', with a line '{v.name}_nl ~ 1'")
            raise FormulaError(
                f"'{v.name}' in the non-linear formula is neither a data column nor a declared parameter{hint}; "
                f"{declare}", text, *where)


def _check_dpars(spec: ModelSpec) -> None:
    fam = family_spec(spec.family.name)
    names = [a.name for a in fam.aux]
    for name, _ in spec.dpars:
        if name == "mu":
            raise FormulaError("mu is the main formula; give formulas only for distributional parameters")
        if name not in names:
            has = f"its parameters: {', '.join(names)}" if names else "it has no distributional parameters"
            raise FormulaError(f"family '{fam.name}' has no parameter '{name}'; {has}")


_CENS_CODES: dict[Any, int] = {
    "none": 0, "exact": 0, "right": 1, "left": -1, "interval": 2,
    0: 0, 1: 1, -1: -1, 2: 2,  # True/False hash as 1/0
}


def _cens_codes(values: pd.Series) -> np.ndarray:
    out = np.zeros(len(values), dtype=np.int32)
    for i, v in enumerate(values.tolist()):
        is_whole = isinstance(v, (int, float, np.integer, np.floating)) and float(v).is_integer()
        key = v.strip().lower() if isinstance(v, str) else (int(v) if is_whole else v)
        if key not in _CENS_CODES:
            raise DataError(
                f"unknown censoring code {v!r} in row {i}; use none/left/right/interval or 0/-1/1/2 (brms codes)"
            )
        out[i] = _CENS_CODES[key]
    return out


def _categories(y: pd.Series) -> tuple[np.ndarray, list[str]]:
    cats = _sorted_uniques(y)
    lookup = {c: i for i, c in enumerate(cats)}
    codes = np.array([lookup[v] for v in y.tolist()], dtype=np.int32)
    return codes, _unique_labels(cats, str(y.name))


def _response(spec: ModelSpec, df: pd.DataFrame) -> ResponseData:
    resp = spec.formula.response
    fam = family_spec(spec.family.name)
    e = resp.expr
    for a in resp.addterms:
        if a.fn not in fam.addterms and not (a.fn == "trials" and not fam.needs_trials):
            raise FormulaError(f"the {fam.name} family does not take {a.fn}()")
    out: dict[str, Any] = {}
    levels: list[str] | None = None
    if fam.kind in ("ordinal", "categorical"):
        if not isinstance(e, Var):
            raise FormulaError(f"the {fam.name} family needs a plain column as its response")
        codes, levels = _categories(df[e.name])
        need = 3 if fam.kind == "ordinal" else 2
        if len(levels) < need:
            raise DataError(
                f"{'an ordinal' if fam.kind == 'ordinal' else 'a categorical'} response needs at least {need} categories; "
                f"'{e.name}' has {len(levels)} ({', '.join(levels)})"
                + ("; use family='bernoulli' for two" if fam.kind == "ordinal" else "")
            )
        y = codes
    elif isinstance(e, Call) and e.fn == "cbind":
        succ = _response_values(e.args[0], df)
        fail = _response_values(e.args[1], df)
        if (fail < 0).any():
            raise DataError(f"cbind(): failures ({e.args[1]}) are negative in {int((fail < 0).sum())} rows")
        y, out["trials"] = succ, succ + fail
    else:
        y = _response_values(e, df)
    if (tr := resp.addterm("trials")) is not None:
        out["trials"] = evaluate(tr.args[0], df)
    if out.get("trials") is not None and not fam.needs_trials:
        raise FormulaError(
            f"the {spec.family.name} family takes no trials; use family='binomial' for cbind() or trials()"
        )
    if fam.needs_trials and out.get("trials") is None:
        raise DataError(
            f"the {fam.name} family needs trials: write cbind(successes, failures) ~ ... or successes | trials(n) ~ ..."
        )
    if (w := resp.addterm("weights")) is not None:
        out["weights"] = evaluate(w.args[0], df)
        if (out["weights"] < 0).any():
            raise DataError("weights() must be finite and non-negative")
    if (se := resp.addterm("se")) is not None:
        out["se"] = evaluate(se.args[0], df)
        if (out["se"] <= 0).any():
            raise DataError("se() must be positive: it is the known standard error of each observation")
        out["se_sigma"] = resp.se_sigma
    if (c := resp.addterm("cens")) is not None:
        if not isinstance(c.args[0], Var):
            raise FormulaError("cens() takes the column of censoring codes, e.g. cens(censored)")
        cens = _cens_codes(df[c.args[0].name])
        out["cens"] = cens
        if (cens == 2).any():
            if len(c.args) < 2:
                raise DataError("interval censoring (code 2) needs the upper bound: cens(censored, upper)")
            upper = evaluate(c.args[1], df)
            bad = (cens == 2) & ~(upper > y)
            if bad.any():
                raise DataError(f"interval-censored rows need upper > y; {int(bad.sum())} rows do not")
            out["cens_upper"] = upper
        else:
            out["cens_upper"] = y.copy() if len(c.args) < 2 else evaluate(c.args[1], df)
    if (t := resp.addterm("trunc")) is not None:
        for key in ("lb", "ub"):
            bound = t.kwarg(key)
            if bound is not None:
                values = out[f"trunc_{key}"] = np.broadcast_to(evaluate(bound, df), y.shape).astype(float)
                top = float(np.abs(values).max())
                if top > np.finfo(np.float32).max:
                    raise DataError(f"trunc({key} = {bound}): {top:g} is beyond what float32 holds; "
                                    f"for no bound, leave {key} out")
                # a bound a million times beyond the data removes no mass any fit to them gives, and the CDF there
                # overflows float32 (Weibull's (y / scale) ** shape at 1e30: a NaN gradient, most transitions diverged)
                # (a number only: a column's rows may hold a large stand-in for none where others are bounded)
                largest = float(np.max(np.abs(y)))
                if not data_vars(bound) and np.max(values * (1 if key == "ub" else -1)) > max(largest, 1.0) * 1e6:
                    raise DataError(f"trunc({key} = {bound}): the bound is over a million times beyond the data "
                                    f"(largest |y| {largest:g}): it removes nothing, and a CDF there overflows "
                                    f"float32; for no bound, leave {key} out")
        lo = out.get("trunc_lb", -np.inf)
        hi = out.get("trunc_ub", np.inf)
        bad = (y < lo) | (y > hi)
        if bad.any():
            raise DataError(f"{int(bad.sum())} responses lie outside the trunc() bounds (first: {y[bad][0]:g})")
    if "cens" in out and ("trunc_lb" in out or "trunc_ub" in out):
        raise FormulaError("censoring and truncation together are not supported here (the censored likelihood "
                           "needs the truncated distribution's CDF); use one of them")
    if any(k in out for k in ("cens", "trunc_lb", "trunc_ub")) and not fam.has_cdf:
        have = ", ".join(f.name for f in FAMILIES.values() if f.has_cdf and {"cens", "trunc"} & set(f.addterms))
        raise FormulaError(f"censoring and truncation need a CDF with a gradient, which the {fam.name} family does "
                           f"not provide here; families that have one: {have}")
    return ResponseData(y=y, levels=tuple(levels) if levels is not None else None, **out)


def _response_values(e: Expr, df: pd.DataFrame) -> np.ndarray:
    """A numeric response (bool counts as 0/1); non-numeric columns are a clear error."""
    if isinstance(e, Var):
        col = df[e.name]
        if col.dtype == bool:
            return col.to_numpy(dtype=float)
        if not pd.api.types.is_numeric_dtype(col):
            raise DataError(f"the response '{e.name}' is not numeric (dtype {col.dtype})")
    return evaluate(e, df)



# ---------------------------------------------------------------- new data
@dataclass(frozen=True)
class NewRows:
    """The arrays of a fitted design for new rows (prediction): the same transforms (training
    means, SDs, knots, categorical levels), level indices into the fitted levels, and the new
    levels of each group term appended after the fitted ones (index J, J + 1, ...)."""

    design: Design
    frame: pd.DataFrame
    arrays: Mapping[tuple[Any, ...], np.ndarray]
    new_levels: Mapping[int, tuple[str, ...]]  # group term number -> its new levels, in index order

    @property
    def n(self) -> int:
        return len(self.frame)


def _needed_columns(design: Design, with_response: bool) -> list[str]:
    spec = design.spec
    names = columns_used(spec)
    response = {v.name for v in data_vars(spec.formula.response.expr)}
    if with_response:
        return names
    keep = set()
    for a in spec.formula.response.addterms:  # trials, truncation bounds, se are needed to predict y
        if a.fn in ("trials", "trunc", "se"):
            for arg in (*a.args, *(v for _, v in a.kwargs)):
                keep.update(v.name for v in data_vars(arg))
    if isinstance(spec.formula.response.expr, Call) and spec.formula.response.expr.fn == "cbind":
        keep.update(response)  # trials = successes + failures
    return [c for c in names if c not in response or c in keep]


def new_rows(design: Design, data: Any) -> NewRows:
    """Build the model's arrays for new data (the response is not needed, except what sets the
    trials of a binomial model). Unknown columns, missing values and unknown categorical levels
    are clear errors; new levels of grouping factors are collected, not refused (the caller decides)."""
    if not isinstance(data, pd.DataFrame):
        try:
            data = pd.DataFrame(data)
        except Exception:  # noqa: BLE001
            raise DataError(f"newdata must be a pandas DataFrame, got {type(data).__name__}") from None
    if data.shape[0] == 0:
        raise DataError("newdata has no rows")
    cols = _needed_columns(design, with_response=False)
    for c in cols:
        if c not in data.columns:
            raise unknown_column(c, data.columns)
    df = data[cols].reset_index(drop=True) if cols else pd.DataFrame(index=range(len(data)))
    missing = df.isna().any(axis=1)
    if missing.any():
        bad = [c for c in cols if df[c].isna().any()]
        rows = ", ".join(str(int(i)) for i in np.flatnonzero(missing)[:5])
        raise DataError(f"newdata has missing values in {', '.join(bad)} (rows {rows}...): every row needs them to predict")
    for c in grouping_columns(design.spec):
        # an integer column that comes back as floats (pandas' reading once a value was missing): 1.0 is level 1,
        # not a new level (new_levels="population" would silently predict without its effect)
        fitted = design.frame[c] if c in design.frame.columns else None
        if (fitted is not None and pd.api.types.is_integer_dtype(fitted.dtype)
                and pd.api.types.is_float_dtype(df[c].dtype) and bool(np.all(np.mod(df[c].to_numpy(), 1) == 0))):
            df[c] = df[c].astype(fitted.dtype)
    arrays: dict[tuple[Any, ...], np.ndarray] = {}
    new: dict[int, tuple[str, ...]] = {}
    spec = design.spec
    for name, p in design.predictors.items():
        if p.matrix is not None:
            X = p.matrix.on(df)
            if p.intercept:
                X = X[:, [i for i, n in enumerate(p.matrix.names) if n != "Intercept"]]
            arrays[("X", name)] = X - p.X_mean
        arrays[("X_mean", name)] = p.X_mean
        if p.offset is not None:
            states = {k: dict(v) for k, v in p.offset_states.items()}
            arrays[("offset", name)] = sum(  # type: ignore[assignment]
                np.asarray(Evaluator(df, states, fitted=True).numeric(o), dtype=float) for o in p.linear.offsets
            )
        for b in p.groups:
            codes, unseen = level_codes(df, b.term.group, b.levels)
            if unseen:
                lookup = {lv: len(b.levels) + i for i, lv in enumerate(unseen)}
                names = level_codes_names(df, b.term.group)
                codes = np.where(codes < 0, np.array([lookup.get(n, -1) for n in names], dtype=np.int32), codes)
                new[b.number] = tuple(unseen)
            arrays[("g", b.number)] = codes.astype(np.int32)
            if b.matrix is not None:
                Z = b.matrix.on(df)
                arrays[("Z", b.number)] = Z
                arrays[("Z1", b.number)] = Z[:, 0]
    for col in design.columns:
        arrays[("column", col)] = evaluate(Var(col), df)
    resp = spec.formula.response
    if design.response.trials is not None:
        tr = resp.addterm("trials")
        if tr is not None:
            arrays[("trials",)] = evaluate(tr.args[0], df)
        else:  # cbind(successes, failures)
            e = resp.expr
            arrays[("trials",)] = evaluate(e.args[0], df) + evaluate(e.args[1], df)  # type: ignore[union-attr]
    if (se := resp.addterm("se")) is not None:
        arrays[("se",)] = evaluate(se.args[0], df)
    if (t := resp.addterm("trunc")) is not None:
        for key in ("lb", "ub"):
            bound = t.kwarg(key)
            if bound is not None:
                arrays[(f"trunc_{key}",)] = np.broadcast_to(evaluate(bound, df), (len(df),)).astype(float)
    n = len(df)
    arrays[("ones",)] = np.ones(n)
    arrays[("weights",)] = np.ones(n)
    arrays[("cens",)] = np.zeros(n, dtype=np.int32)  # predictions ignore censoring (as brms)
    return NewRows(design, df, arrays, new)


def level_codes_names(df: pd.DataFrame, cols: tuple[str, ...]) -> list[str]:
    """Each row's level name for a grouping factor (as ``level_codes`` names them)."""
    texts: list[list[str]] = []
    for c in cols:
        uniq = _sorted_uniques(df[c])
        labels = dict(zip(uniq, _unique_labels(uniq, c), strict=True))
        texts.append([labels[v] for v in df[c].tolist()])
    return texts[0] if len(cols) == 1 else [_join_label(parts) for parts in zip(*texts, strict=True)]
