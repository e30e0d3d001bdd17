"""The functions a formula may call: one table per place, each entry next to its implementations.

A name is allowed somewhere only if it is implemented there: the parser reads
the names (and argument shapes) from these tables, the design stage calls the
numpy implementations (terms, responses, offsets), and the lowering stage
prints the jax.numpy code of non-linear expressions. Nothing here is handed to
an evaluator: implementations are Python callables bound to names, and the
jax.numpy side is code text chosen from this table, never from user input.

This module imports no backend at import time (numpy and formulaic are
imported by the implementations when they run).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import doseresponse as _dr

#: R's logical constants as names (TRUE/FALSE, T/F) and Python's
LOGICAL_NAMES: dict[str, bool] = {"TRUE": True, "True": True, "T": True, "FALSE": False, "False": False, "F": False}


@dataclass(frozen=True)
class Fn:
    """A function of the formula language.

    ``arity``: the numbers of positional arguments it takes; ``keywords``: its
    keyword arguments and what each holds ("number" or "logical"); ``usage``:
    how it is written, for error messages. Exactly one implementation family
    applies per table: ``numpy`` (elementwise on data), ``transform`` (a
    stateful term transform: ``transform(values, state, **keywords)``, where
    ``state`` is filled on the training data and reused on new data), ``code``
    (jax.numpy code for non-linear expressions, with ``helper`` naming a
    function defined in the generated module).
    """

    name: str
    arity: tuple[int, ...]
    usage: str
    keywords: dict[str, str] = field(default_factory=dict)
    numpy: Callable[..., Any] | None = None
    transform: Callable[..., Any] | None = None
    code: str | None = None
    helper: str | None = None


def _np(name: str) -> Callable[..., Any]:
    """An elementwise numpy function, looked up when called (numpy imports lazily)."""

    def call(*args: Any) -> Any:
        import numpy as np

        with np.errstate(all="ignore"):
            return getattr(np, name)(*args)

    call.__name__ = name
    return call


def _identity(x: Any) -> Any:
    return x


# ---------------------------------------------------------------- stateful term transforms
# Each runs formulaic's own transform on values our interpreter computed, with a
# state dict we keep (so new data get the training mean/SD, knots, ...).
def _scale(x: Any, state: dict[str, Any], center: bool = True, scale: bool = True) -> Any:
    from formulaic.transforms import scale as f

    return f(x, center=center, scale=scale, _state=state)


def _center(x: Any, state: dict[str, Any]) -> Any:
    from formulaic.transforms import center as f

    return f(x, _state=state)


def _standardize(x: Any, state: dict[str, Any], center: bool = True, rescale: bool = True) -> Any:
    from formulaic.transforms.patsy_compat import standardize as f

    return f(x, center=center, rescale=rescale, _state=state)


def _poly(x: Any, state: dict[str, Any], degree: float = 1, raw: bool = False) -> Any:
    from formulaic.transforms import poly as f

    return f(x, int(degree), raw=raw, _state=state)


def _bs(
    x: Any,
    state: dict[str, Any],
    df: float | None = None,
    degree: float = 3,
    include_intercept: bool = False,
    lower_bound: float | None = None,
    upper_bound: float | None = None,
) -> Any:
    from formulaic.transforms import basis_spline as f

    return f(x, df=None if df is None else int(df), degree=int(degree), include_intercept=include_intercept,
             lower_bound=lower_bound, upper_bound=upper_bound, extrapolation="extend", _state=state)


_ELEMENTWISE = ("log", "log2", "log10", "log1p", "exp", "expm1", "sqrt", "abs")

#: functions allowed in population and group terms (``C`` and ``offset`` are handled by the design stage itself)
TERM_FUNCTIONS: dict[str, Fn] = {
    **{n: Fn(n, (1,), f"{n}(x)", numpy=_np("absolute" if n == "abs" else n)) for n in _ELEMENTWISE},
    "I": Fn("I", (1,), "I(expression)", numpy=_identity),
    "scale": Fn("scale", (1,), "scale(x)", {"center": "logical", "scale": "logical"}, transform=_scale),
    "center": Fn("center", (1,), "center(x)", transform=_center),
    "standardize": Fn("standardize", (1,), "standardize(x)", {"center": "logical", "rescale": "logical"},
                      transform=_standardize),
    "poly": Fn("poly", (1, 2), "poly(x, degree)", {"degree": "number", "raw": "logical"}, transform=_poly),
    "bs": Fn("bs", (1,), "bs(x, df = 4)", {"df": "number", "degree": "number", "include_intercept": "logical",
                                           "lower_bound": "number", "upper_bound": "number"}, transform=_bs),
    "C": Fn("C", (1, 2), "C(x) or C(x, Treatment('level'))"),
    "offset": Fn("offset", (1,), "offset(x)"),
}


def _contrast(kind: str) -> Callable[..., Any]:
    def make(*args: Any) -> Any:
        from formulaic.transforms import contrasts as c

        if kind == "Treatment":
            return c.TreatmentContrasts(base=args[0]) if args else c.TreatmentContrasts()
        return {"Sum": c.SumContrasts, "Helmert": c.HelmertContrasts, "Diff": c.DiffContrasts,
                "Poly": c.PolyContrasts}[kind]()

    return make


#: contrast codings, the second argument of ``C()``: the only calls that take a string (a level)
CONTRASTS: dict[str, Fn] = {
    "Treatment": Fn("Treatment", (0, 1), "Treatment('reference level')", transform=_contrast("Treatment")),
    **{k: Fn(k, (0,), f"{k} or {k}()", transform=_contrast(k)) for k in ("Sum", "Helmert", "Diff", "Poly")},
}

#: functions allowed in a response expression (``cbind`` is the binomial response itself)
RESPONSE_FUNCTIONS: dict[str, Fn] = {
    **{n: TERM_FUNCTIONS[n] for n in (*_ELEMENTWISE, "I")},
    "cbind": Fn("cbind", (2,), "cbind(successes, failures)"),
}

#: brms-style response addition terms, ``y | trials(n)``: positional counts, keywords, usage
ADDTERMS: dict[str, Fn] = {
    "trials": Fn("trials", (1,), "trials(n)"),
    "weights": Fn("weights", (1,), "weights(w)"),
    "se": Fn("se", (1,), "se(s) or se(s, sigma = TRUE)", {"sigma": "logical"}),
    "cens": Fn("cens", (1, 2), "cens(censored) or cens(censored, upper)"),
    "trunc": Fn("trunc", (0,), "trunc(lb = 0) or trunc(lb = 0, ub = 10)", {"lb": "value", "ub": "value"}),
}


# ---------------------------------------------------------------- non-linear expressions
# Their jax.numpy code. Functions with a boundary where the value is finite but the
# derivative is not (pow(0, b) with b < 1, sqrt(0)) call helpers defined in the
# generated module that use the "double where": the derivative at the boundary is the
# limit of the expression's, so a dose of 0 never gives a NaN gradient.
NL_HELPERS: dict[str, str] = {
    "safe_pow": '''
def safe_pow(x, b):
    """x ** b with exact values and finite gradients at x = 0: 0 for b > 0, 1 for b = 0
    (the double where keeps inf * 0 out of the derivative)."""
    zero = x == 0
    at_zero = jnp.where(b > 0, 0.0, jnp.where(b == 0, 1.0, jnp.inf))
    return jnp.where(zero, at_zero, jnp.power(jnp.where(zero, 1.0, x), b))
''',
    "safe_sqrt": '''
def safe_sqrt(x):
    """sqrt(x) whose gradient at x = 0 is 0 rather than inf (double where)."""
    pos = x > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, x, 1.0)), jnp.where(x == 0, 0.0, jnp.nan))
''',
    "safe_log": '''
def safe_log(x):
    """log(x): -inf at x = 0 with a zero (not inf or NaN) gradient there (double where)."""
    pos = x > 0
    return jnp.where(pos, jnp.log(jnp.where(pos, x, 1.0)), jnp.where(x == 0, -jnp.inf, jnp.nan))
''',
    "safe_log1p": '''
def safe_log1p(x):
    """log1p(x): -inf at x = -1 with a zero gradient there (double where)."""
    ok = x > -1
    return jnp.where(ok, jnp.log1p(jnp.where(ok, x, 0.0)), jnp.where(x == -1, -jnp.inf, jnp.nan))
''',
}


def _np_pow(x: Any, b: Any) -> Any:
    import numpy as np

    with np.errstate(all="ignore"):
        x, b = np.asarray(x, float), np.asarray(b, float)
        return np.where(x == 0, np.where(b > 0, 0.0, np.where(b == 0, 1.0, np.inf)), np.power(np.where(x == 0, 1.0, x), b))


def _np_sigmoid(x: Any) -> Any:
    import numpy as np

    with np.errstate(all="ignore"):
        return 1.0 / (1.0 + np.exp(-np.asarray(x, float)))


def _np_phi(x: Any) -> Any:
    import math

    import numpy as np

    erf = np.vectorize(math.erf, otypes=[float])
    return 0.5 * (1.0 + erf(np.asarray(x, float) / math.sqrt(2.0)))


NL_FUNCTIONS: dict[str, Fn] = {
    "exp": Fn("exp", (1,), "exp(x)", numpy=_np("exp"), code="jnp.exp"),
    "expm1": Fn("expm1", (1,), "expm1(x)", numpy=_np("expm1"), code="jnp.expm1"),
    "log": Fn("log", (1,), "log(x)", numpy=_np("log"), code="safe_log", helper="safe_log"),
    "log1p": Fn("log1p", (1,), "log1p(x)", numpy=_np("log1p"), code="safe_log1p", helper="safe_log1p"),
    "sqrt": Fn("sqrt", (1,), "sqrt(x)", numpy=_np("sqrt"), code="safe_sqrt", helper="safe_sqrt"),
    "inv_logit": Fn("inv_logit", (1,), "inv_logit(x)", numpy=_np_sigmoid, code="jax.nn.sigmoid"),
    "logistic": Fn("logistic", (1,), "logistic(x)", numpy=_np_sigmoid, code="jax.nn.sigmoid"),
    "Phi": Fn("Phi", (1,), "Phi(x)", numpy=_np_phi, code="jax.scipy.stats.norm.cdf"),
    "pow": Fn("pow", (2,), "pow(x, b)", numpy=_np_pow, code="safe_pow", helper="safe_pow"),
    "abs": Fn("abs", (1,), "abs(x)", numpy=_np("absolute"), code="jnp.abs"),
    "min": Fn("min", (2,), "min(a, b)", numpy=_np("minimum"), code="jnp.minimum"),
    "max": Fn("max", (2,), "max(a, b)", numpy=_np("maximum"), code="jnp.maximum"),
}
# the drc model library (LL4, LL3, LL5, W1_4, W2_4, LN4, BC5): dose first, then drc's parameters
for _m in _dr.MODELS.values():
    NL_FUNCTIONS[_m.name] = Fn(_m.name, (1 + len(_m.params),), _m.usage, numpy=_dr.numpy_impl(_m.name),
                               code=_m.name, helper=_m.name)
NL_HELPERS.update(_dr.HELPERS)
#: helpers a helper calls (emitted with it)
NL_NEEDS: dict[str, tuple[str, ...]] = dict(_dr.NEEDS)
#: the dose-response models, by function name
DOSE_MODELS = _dr.MODELS

#: the power operators ``^`` and ``**`` in a non-linear expression lower to this function
NL_POWER = NL_FUNCTIONS["pow"]
