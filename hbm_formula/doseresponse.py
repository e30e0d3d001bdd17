"""The drc dose-response model library: LL4, LL3, LL5, W1_4, W2_4, LN4, BC5.

Each is a function of the formula language, ``resp ~ LL4(dose, b, c, d, e)``,
with drc's parameter names, meanings and sign conventions (Ritz et al. 2015;
the formulas and their sources in drc are in ``benchmarks/drc/FORMULAS.md``).
With ``u = b (log dose - log e)``:

=======  ===========================================  ===============================
LL4      c + (d - c) / (1 + exp(u))                    b > 0: decreasing from d to c
LL3      LL4 with c = 0
LL5      c + (d - c) / (1 + exp(u))^f                  f > 0: asymmetry
W1_4     c + (d - c) exp(-exp(u))                      b > 0: decreasing
W2_4     c + (d - c) (1 - exp(-exp(u)))                b < 0: decreasing
LN4      c + (d - c) Phi(u)                            b < 0: decreasing
BC5      c + (d - c + f dose) / (1 + exp(u))           Brain-Cousens hormesis (f > 0)
=======  ===========================================  ===============================

At dose 0 each takes its limit exactly (``u`` is -inf for b > 0): the
generated code computes ``u`` only for positive doses (the "double where"), so
neither value nor gradient is ever NaN for an untreated control.

This module is backend-free: the metadata, the numpy twins of the mean
functions (for data-driven default priors) and the effective doses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class DoseModel:
    name: str  # the formula-language function
    drc: str  # drc's name
    kind: str  # "LL", "W1", "W2", "LN" or "BC"
    params: tuple[str, ...]  # the parameter arguments after the dose, in drc's order
    fixed: dict[str, float] = field(default_factory=dict)  # drc parameters this model fixes

    @property
    def usage(self) -> str:
        return f"{self.name}(dose, {', '.join(self.params)})"

    @property
    def decreasing_b_positive(self) -> bool:
        """Whether b > 0 means a decreasing curve (LL, W1, BC) or an increasing one (W2, LN)."""
        return self.kind in ("LL", "W1", "BC")


MODELS: dict[str, DoseModel] = {
    m.name: m
    for m in (
        DoseModel("LL4", "LL.4", "LL", ("b", "c", "d", "e"), {"f": 1.0}),
        DoseModel("LL3", "LL.3", "LL", ("b", "d", "e"), {"c": 0.0, "f": 1.0}),
        DoseModel("LL5", "LL.5", "LL", ("b", "c", "d", "e", "f")),
        DoseModel("W1_4", "W1.4", "W1", ("b", "c", "d", "e")),
        DoseModel("W2_4", "W2.4", "W2", ("b", "c", "d", "e")),
        DoseModel("LN4", "LN.4", "LN", ("b", "c", "d", "e")),
        DoseModel("BC5", "BC.5", "BC", ("b", "c", "d", "e", "f")),
    )
}

#: jax.numpy helpers emitted into a generated model that calls one of the models
HELPERS: dict[str, str] = {
    "dose_response_u": '''
def dose_response_u(dose, b, e):
    """(dose > 0, b (log dose - log e)): u only where the dose is positive, so the dose-0 rows
    (untreated controls) add nothing but exact zeros to the gradient (the double where)."""
    pos = dose > 0
    return pos, b * (jnp.log(jnp.where(pos, dose, 1.0)) - jnp.log(e))
''',
    "LL4": '''
def LL4(dose, b, c, d, e):
    """drc's LL.4: c + (d - c) / (1 + exp(b (log dose - log e))); at dose 0: d if b > 0, c if b < 0."""
    pos, u = dose_response_u(dose, b, e)
    return c + (d - c) * jnp.where(pos, jax.nn.sigmoid(-u), jnp.where(b > 0, 1.0, jnp.where(b < 0, 0.0, 0.5)))
''',
    "LL3": '''
def LL3(dose, b, d, e):
    """drc's LL.3: LL.4 with the lower limit c = 0."""
    return LL4(dose, b, 0.0, d, e)
''',
    "LL5": '''
def LL5(dose, b, c, d, e, f):
    """drc's LL.5: c + (d - c) / (1 + exp(b (log dose - log e)))^f (f > 0: asymmetry)."""
    pos, u = dose_response_u(dose, b, e)
    at0 = jnp.where(b > 0, 1.0, jnp.where(b < 0, 0.0, 2.0 ** -f))
    return c + (d - c) * jnp.where(pos, jnp.exp(-f * jax.nn.softplus(u)), at0)
''',
    "W1_4": '''
def W1_4(dose, b, c, d, e):
    """drc's W1.4: c + (d - c) exp(-exp(b (log dose - log e))); at dose 0: d if b > 0, c if b < 0."""
    pos, u = dose_response_u(dose, b, e)
    s = jnp.exp(-jnp.exp(jnp.minimum(u, 50.0)))  # beyond u = 50 the curve is at c, gradient 0
    return c + (d - c) * jnp.where(pos, s, jnp.where(b > 0, 1.0, jnp.where(b < 0, 0.0, jnp.exp(-1.0))))
''',
    "W2_4": '''
def W2_4(dose, b, c, d, e):
    """drc's W2.4: c + (d - c) (1 - exp(-exp(b (log dose - log e)))); at dose 0: c if b > 0, d if b < 0."""
    pos, u = dose_response_u(dose, b, e)
    s = -jnp.expm1(-jnp.exp(jnp.minimum(u, 50.0)))
    return c + (d - c) * jnp.where(pos, s, jnp.where(b > 0, 0.0, jnp.where(b < 0, 1.0, -jnp.expm1(-1.0))))
''',
    "LN4": '''
def LN4(dose, b, c, d, e):
    """drc's LN.4: c + (d - c) Phi(b (log dose - log e)); at dose 0: c if b > 0, d if b < 0."""
    pos, u = dose_response_u(dose, b, e)
    s = jax.scipy.stats.norm.cdf(u)
    return c + (d - c) * jnp.where(pos, s, jnp.where(b > 0, 0.0, jnp.where(b < 0, 1.0, 0.5)))
''',
    "BC5": '''
def BC5(dose, b, c, d, e, f):
    """drc's BC.5 (Brain-Cousens hormesis): c + (d - c + f dose) / (1 + exp(b (log dose - log e)))."""
    pos, u = dose_response_u(dose, b, e)
    s = jnp.where(pos, jax.nn.sigmoid(-u), jnp.where(b > 0, 1.0, jnp.where(b < 0, 0.0, 0.5)))
    return c + (d - c + f * dose) * s
''',
}
#: helpers each model's helper calls
NEEDS: dict[str, tuple[str, ...]] = {name: ("dose_response_u", *(("LL4",) if name == "LL3" else ())) for name in MODELS}


# ---------------------------------------------------------------- numpy twins
def _s(kind: str, x: np.ndarray, b: Any, e: Any, f: Any = 1.0) -> np.ndarray:
    """The fraction of the way from c to d (d at dose 0 for b > 0 in LL/W1/BC), exact at dose 0."""
    x = np.asarray(x, dtype=float)
    b, e, f = (np.broadcast_to(np.asarray(v, dtype=float), x.shape) for v in (b, e, f))
    pos = x > 0
    with np.errstate(all="ignore"):
        u = b * (np.log(np.where(pos, x, 1.0)) - np.log(e))
        if kind in ("LL", "BC"):
            s = np.exp(-f * np.logaddexp(0.0, u))
            at0 = np.where(b > 0, 1.0, np.where(b < 0, 0.0, 2.0**-f))
        elif kind == "W1":
            s = np.exp(-np.exp(np.minimum(u, 50.0)))
            at0 = np.where(b > 0, 1.0, np.where(b < 0, 0.0, math.exp(-1.0)))
        elif kind == "W2":
            s = -np.expm1(-np.exp(np.minimum(u, 50.0)))
            at0 = np.where(b > 0, 0.0, np.where(b < 0, 1.0, -math.expm1(-1.0)))
        else:  # LN
            from math import erf, sqrt

            s = 0.5 * (1.0 + np.vectorize(erf, otypes=[float])(u / sqrt(2.0)))
            at0 = np.where(b > 0, 0.0, np.where(b < 0, 1.0, 0.5))
    return np.where(pos, s, at0)


def mean(name: str, dose: Any, *args: Any) -> np.ndarray:
    """The mean of model ``name`` at ``dose`` with its parameter arguments (numpy, exact at dose 0)."""
    m = MODELS[name]
    p = dict(zip(m.params, args, strict=True)) | {k: v for k, v in m.fixed.items() if k not in m.params}
    c, d = p.get("c", 0.0), p["d"]
    s = _s(m.kind, dose, p["b"], p["e"], p.get("f", 1.0) if m.kind == "LL" else 1.0)
    if m.kind == "BC":
        return c + (d - c + p["f"] * np.asarray(dose, dtype=float)) * s
    return c + (d - c) * s


def numpy_impl(name: str) -> Any:
    return lambda dose, *args: mean(name, dose, *args)


# ---------------------------------------------------------------- data-driven defaults
@dataclass(frozen=True)
class Defaults:
    """What a dose-response call implies when the user does not say: each parameter's bound and
    default prior (centre, scale, group-SD scale) on the scale it is sampled on."""

    bounds: dict[str, tuple[float | None, float | None]]
    roles: dict[str, tuple[float, float, float]]
    decreasing: bool


def defaults(model: DoseModel, names: dict[str, str], dose: np.ndarray, y: np.ndarray) -> Defaults:
    """Bounds and priors of a dose-response model's parameters, from the data.

    ``names`` maps drc roles (b, c, d, e, f) to the user's parameter names. The direction of the
    curve is read from the data (mean response at the lowest vs the highest doses): b's sign
    follows drc's convention for that direction (b > 0 decreasing for LL/W1/BC, b < 0 for W2/LN),
    so the parameters are identified (LL.4 is otherwise symmetric under (b, c, d, e) ->
    (-b, d, c, e)). b is sampled as log|b| (normal(0, 1): slopes between 0.14 and 7 a priori),
    e as log e (normal(the middle of the log doses, half their range): the ED50 lies within the
    tested doses, or not far beyond, a priori; positive doses only), f (LL5) as log f
    (normal(0, 1)); c and d, the lower and upper limits, are centred on the mean response of the
    lowest and highest tenth of the doses, whichever is lower or higher, with scale 2.5 sd(y);
    BC5's f (the hormetic rise per unit dose) is normal(0, 2.5 sd(y) / sd(dose)). Group-level
    SDs: sd(y) for c and d, a quarter of the log-dose range for log e, 0.5 for log|b| and log f.
    """
    dose = np.asarray(dose, dtype=float)
    y = np.asarray(y, dtype=float)
    pos = dose[dose > 0]
    logd = np.log(pos) if pos.size else np.zeros(1)
    sd_y = float(np.std(y)) or 1.0
    log_lo, log_hi = float(np.min(logd)), float(np.max(logd))
    half_range = max((log_hi - log_lo) / 2, 1.0)
    lo, hi = np.quantile(dose, [0.1, 0.9])
    y_low_dose = float(np.mean(y[dose <= lo])) if (dose <= lo).any() else float(np.mean(y))
    y_high_dose = float(np.mean(y[dose >= hi])) if (dose >= hi).any() else float(np.mean(y))
    decreasing = y_low_dose >= y_high_dose
    upper, lower = max(y_low_dose, y_high_dose), min(y_low_dose, y_high_dose)
    b_positive = decreasing == model.decreasing_b_positive
    bounds: dict[str, tuple[float | None, float | None]] = {}
    roles: dict[str, tuple[float, float, float]] = {}
    for role, name in names.items():
        if role == "b":
            bounds[name] = (0.0, None) if b_positive else (None, 0.0)
            roles[name] = (0.0, 1.0, 0.5)
        elif role == "e":
            bounds[name] = (0.0, None)
            roles[name] = ((log_lo + log_hi) / 2, half_range, half_range / 2)
        elif role == "f" and model.kind == "LL":
            bounds[name] = (0.0, None)
            roles[name] = (0.0, 1.0, 0.5)
        elif role == "f":  # BC5: the hormetic slope, on the response-per-dose scale
            sd_x = float(np.std(dose)) or 1.0
            roles[name] = (0.0, 2.5 * sd_y / sd_x, sd_y / sd_x)
        elif role == "c":
            roles[name] = (lower, 2.5 * sd_y, sd_y)
        elif role == "d":
            roles[name] = (upper, 2.5 * sd_y, sd_y)
    return Defaults(bounds, roles, decreasing)


# ---------------------------------------------------------------- effective doses
def _t_of_s(kind: str, s: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Invert the curve's fraction s(t) for t = (x / e)^b (LN: for u = b log(x / e))."""
    with np.errstate(all="ignore"):
        if kind in ("LL", "BC"):
            return s ** (-1.0 / f) - 1.0
        if kind == "W1":
            return -np.log(s)
        if kind == "W2":
            return -np.log1p(-s)
        from scipy.special import ndtri  # LN

        return ndtri(s)


def effective_dose(name: str, p: float, params: dict[str, np.ndarray], absolute: bool = False,
                   dose_range: tuple[float, float] = (1e-3, 1e3)) -> np.ndarray:
    """ED_p per draw, as drc's ``ED()`` (type relative, reference control): the dose at which the
    mean has moved p% of the way from its dose-0 level to its infinite-dose level (for either
    direction and either sign of b). ``absolute=True``: the dose at which the mean equals ``p``
    (a response level). BC5 has no closed form: the dose beyond the hormetic peak where the mean
    is d - p% (d - c), by bisection (the peak searched over ``dose_range``, as drc does)."""
    m = MODELS[name]
    full = {**{k: np.asarray(v, dtype=float) for k, v in m.fixed.items()}, **{k: np.asarray(v, dtype=float) for k, v in params.items()}}
    b, c, d, e = (np.asarray(full.get(k, 0.0), dtype=float) for k in ("b", "c", "d", "e"))
    f = np.asarray(full.get("f", 1.0), dtype=float)
    if m.kind == "BC":
        return _bc_ed(p, b, c, d, e, f, absolute, dose_range)
    with np.errstate(all="ignore"):
        if absolute:
            s = (p - c) / (d - c)  # fraction of the way from c to d at the response level
            s = np.where((s > 0) & (s < 1), s, np.nan)
        else:
            if not 0 < p < 100:
                raise ValueError("a relative effective dose needs 0 < p < 100")
            q = p / 100.0
            at_zero_is_d = (b > 0) == m.decreasing_b_positive  # s(0) = 1: the curve starts at d
            s = np.where(at_zero_is_d, 1.0 - q, q)
        t = _t_of_s(m.kind, s, f)
        if m.kind == "LN":
            return e * np.exp(t / b)
        return e * t ** (1.0 / b)


def _bc_ed(p: float, b: np.ndarray, c: np.ndarray, d: np.ndarray, e: np.ndarray, f: np.ndarray, absolute: bool,
           dose_range: tuple[float, float]) -> np.ndarray:
    n = max(np.broadcast(b, c, d, e, f).shape[0] if np.ndim(b) else 1, 1)
    b, c, d, e, f = (np.broadcast_to(v, (n,)).astype(float) for v in (b, c, d, e, f))
    target = np.full(n, float(p)) if absolute else d - p / 100.0 * (d - c)
    grid = np.exp(np.linspace(np.log(dose_range[0]), np.log(dose_range[1]), 600))
    vals = np.stack([mean("BC5", np.full(n, x), b, c, d, e, f) for x in grid], axis=1)  # (n, grid)
    peak = np.argmax(vals, axis=1)
    out = np.full(n, np.nan)
    for i in range(n):
        after = np.flatnonzero((np.arange(grid.size) >= peak[i]) & (vals[i] <= target[i]))
        if after.size == 0 or after[0] == 0:
            continue
        lo, hi = grid[after[0] - 1], grid[after[0]]
        for _ in range(60):  # bisection between the last grid point above the target and the first below
            mid = np.sqrt(lo * hi)
            if mean("BC5", mid, b[i], c[i], d[i], e[i], f[i]) > target[i]:
                lo = mid
            else:
                hi = mid
        out[i] = np.sqrt(lo * hi)
    return out
