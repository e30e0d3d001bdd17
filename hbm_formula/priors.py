"""Prior distributions: the table of names a prior string may use, and their
lowering to NumPyro distribution code.

A prior string is parsed by the grammar (``parse.parse_prior``) into a
``PriorDist`` of a name and numbers; here the name is looked up in a fixed
table; the numbers become a data argument of the generated model (``prior_<site>``,
shown in a comment beside the site), or are printed as literals for display.
Nothing is evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import PriorError
from .ir import PriorDist


@dataclass(frozen=True)
class DistInfo:
    numpyro: str
    params: tuple[str, ...]
    #: "real", "positive", "unit", "corr" (only for correlation matrices)
    support: str
    #: index of the location parameter (for half-versions on positive parameters)
    loc: int | None = None
    #: which parameters must be positive
    positive: tuple[str, ...] = ()


DISTRIBUTIONS: dict[str, DistInfo] = {
    "normal": DistInfo("Normal", ("mu", "sigma"), "real", 0, ("sigma",)),
    "student_t": DistInfo("StudentT", ("df", "mu", "sigma"), "real", 1, ("df", "sigma")),
    "cauchy": DistInfo("Cauchy", ("mu", "sigma"), "real", 0, ("sigma",)),
    "laplace": DistInfo("Laplace", ("mu", "sigma"), "real", 0, ("sigma",)),
    "logistic": DistInfo("Logistic", ("mu", "sigma"), "real", 0, ("sigma",)),
    "half_normal": DistInfo("HalfNormal", ("sigma",), "positive", None, ("sigma",)),
    "half_cauchy": DistInfo("HalfCauchy", ("sigma",), "positive", None, ("sigma",)),
    "exponential": DistInfo("Exponential", ("rate",), "positive", None, ("rate",)),
    "gamma": DistInfo("Gamma", ("shape", "rate"), "positive", None, ("shape", "rate")),
    "inv_gamma": DistInfo("InverseGamma", ("shape", "scale"), "positive", None, ("shape", "scale")),
    "lognormal": DistInfo("LogNormal", ("mu", "sigma"), "positive", None, ("sigma",)),
    "weibull": DistInfo("Weibull", ("scale", "shape"), "positive", None, ("scale", "shape")),
    "beta": DistInfo("Beta", ("alpha", "beta"), "unit", None, ("alpha", "beta")),
    "uniform": DistInfo("Uniform", ("lower", "upper"), "real"),
    "lkj": DistInfo("LKJCholesky", ("eta",), "corr", None, ("eta",)),
}
_ALIASES = {"student": "student_t", "halfnormal": "half_normal", "halfcauchy": "half_cauchy", "invgamma": "inv_gamma"}
#: every name a prior's distribution is known by
NAMES: tuple[str, ...] = (*DISTRIBUTIONS, *_ALIASES)


def check_prior(d: PriorDist, target: str, text: str | None = None) -> PriorDist:
    """Validate names, arity and values of a prior; returns it with its name canonical."""
    span = d.span or (0, len(text or ""))
    name = _ALIASES.get(d.name, d.name)
    if name not in DISTRIBUTIONS:
        lower = f" (names are lower case: {d.name.lower()})" if d.name.lower() in NAMES else ""
        raise PriorError(
            f"unknown prior distribution '{d.name}' for {target}{lower}; known: {', '.join(DISTRIBUTIONS)}",
            text, span[0], span[0] + len(d.name),
        )
    info = DISTRIBUTIONS[name]
    at = f"prior for {target!r}: "
    values = dict(zip(info.params, d.args, strict=False))
    for k, v in d.kwargs:
        if k not in info.params:
            raise PriorError(f"{at}{name}() has no argument '{k}'; its arguments: {', '.join(info.params)}", text, *span)
        if k in values:
            raise PriorError(f"{at}{name}() got '{k}' twice", text, *span)
        values[k] = v
    if len(d.args) > len(info.params) or set(values) != set(info.params):
        raise PriorError(f"{at}{name}() takes {len(info.params)} arguments: {name}({', '.join(info.params)})", text, *span)
    for k in info.positive:
        if values[k] <= 0:
            raise PriorError(f"{at}{name}(): '{k}' must be positive, got {values[k]:g}", text, *span)
    if name == "uniform" and values["lower"] >= values["upper"]:
        raise PriorError(f"{at}uniform(): lower must be below upper", text, *span)
    return PriorDist(name, tuple(values[k] for k in info.params), (), span=d.span)


def _lit(v: float) -> str:
    return repr(float(f"{v:.6g}"))


def _parts(d: PriorDist, support: str, target: str) -> tuple[str, tuple[float, ...], str]:
    """(constructor, numeric arguments, code suffix) of a checked scalar prior on a
    parameter of the given support. A real-support prior on a positive parameter
    becomes its half (truncated at zero) version, as brms does for sd and sigma."""
    info = DISTRIBUTIONS[d.name]
    if support == "corr":
        if info.support != "corr":
            raise PriorError(f"{target} is a correlation matrix: its prior must be lkj(eta), not {d}")
        return "", d.args, ""
    if info.support == "corr":
        raise PriorError(f"lkj() is a prior for correlations (cor), not for {target}")
    if support == "positive" and info.support == "real":
        loc = d.args[info.loc] if info.loc is not None else None
        if d.name == "normal" and loc == 0:
            return "dist.HalfNormal", (d.args[1],), ""
        if d.name == "cauchy" and loc == 0:
            return "dist.HalfCauchy", (d.args[1],), ""
        if d.name == "uniform":
            if d.args[1] <= 0:
                raise PriorError(f"{target} is positive, but {d} puts no mass above zero")
            return "dist.Uniform", (max(d.args[0], 0.0), d.args[1]), ""
        if d.name == "student_t":
            # NumPyro draws a truncated Student-t through the inverse incomplete beta function, which it takes
            # from tensorflow_probability; at location 0 the half is the folded distribution, drawn as |t|
            if loc != 0:
                raise PriorError(f"{target} is positive: {d} would be truncated at zero, which this version cannot "
                                 f"draw from; use a half Student-t (location 0, as brms's default "
                                 f"student_t(3, 0, 2.5)) or e.g. normal({_lit(loc)}, {_lit(d.args[2])})")
            return "dist.FoldedDistribution(dist.StudentT", d.args, ")"
        return f"dist.TruncatedDistribution(dist.{info.numpyro}", d.args, ", low=0.0)"
    if support == "unit" and info.support != "unit" and d.name != "uniform":
        raise PriorError(f"{target} lies between 0 and 1: give it a prior on (0, 1) such as beta(1, 1), not {d}")
    if support == "unit" and d.name == "uniform" and (d.args[0] < 0 or d.args[1] > 1):
        raise PriorError(f"{target} lies between 0 and 1, but {d} reaches outside")
    if support == "real" and info.support in ("positive", "unit"):
        raise PriorError(f"{target} can be negative, but {d} only covers {info.support} values; use e.g. normal(0, 1)")
    if support == "positive" and info.support == "unit":
        raise PriorError(f"{target} is positive and unbounded, but {d} only covers (0, 1)")
    return f"dist.{info.numpyro}", d.args, ""


def prior_code(d: PriorDist, support: str, target: str) -> str:
    """NumPyro code for a checked scalar prior (for ``corr``: the LKJ eta)."""
    ctor, args, suffix = _parts(d, support, target)
    if support == "corr":
        return _lit(args[0])
    return f"{ctor}({', '.join(_lit(a) for a in args)}){suffix}"


def prior_parts(d: PriorDist, support: str, target: str) -> tuple[str, tuple[float, ...], str]:
    """A checked scalar prior as (constructor, numeric arguments rounded as they would be printed, code
    suffix): the generated model takes the numbers as a data argument, so that a model whose priors change
    only in value (default priors scaled by other data, a prior sensitivity check) is the same program."""
    ctor, args, suffix = _parts(d, support, target)
    return ctor, tuple(float(_lit(a)) for a in args), suffix


def vector_prior_parts(dists: list[PriorDist], support: str, target: str
                       ) -> tuple[str, list[tuple[float, ...]], str] | None:
    """(constructor, each parameter's numeric arguments, suffix) for one vector site over parameters whose priors
    share a constructor (numbers may differ); None when the constructors differ, or when they carry a suffix
    (a truncation) and their numbers differ."""
    parts = [prior_parts(d, support, target) for d in dists]
    if len({(c, sfx) for c, _, sfx in parts}) != 1:
        return None
    if parts[0][2] and len({a for _, a, _ in parts}) != 1:
        return None
    return parts[0][0], [a for _, a, _ in parts], parts[0][2]


def vector_prior_code(parts: tuple[str, list[tuple[float, ...]], str]) -> str:
    """The literal code (shown beside the site, whose numbers are a data argument) of a vector site's prior, from
    ``vector_prior_parts``: one distribution expanded when every element's numbers are equal, else a column of
    numbers per argument that differs."""
    ctor, values, suffix = parts
    if len(set(values)) == 1:
        return f"{ctor}({', '.join(_lit(a) for a in values[0])}){suffix}.expand([{len(values)}]).to_event(1)"
    cols = [_lit(col[0]) if len(set(col)) == 1 else "jnp.array([" + ", ".join(_lit(v) for v in col) + "])"
            for col in zip(*values, strict=True)]
    return f"{ctor}({', '.join(cols)}).to_event(1)"
