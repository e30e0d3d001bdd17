"""IR + design + parameterization → Python source of a NumPyro model function.

The source is the model: it is what ``compile`` executes, what ``model.code``
prints and what ``--emit-code`` writes, and it runs standalone with numpyro
and jax only. User text reaches it only as comments (sanitized) and as string
literals (``repr``); every identifier is made here by ``Namer`` (ASCII,
never a keyword, a builtin or a name the code uses, never twice), every
number is printed here. Lowering does not know how inference will be run.

Site names are fixed and tested (brms-like): ``Intercept``, ``b``, ``sd_<g>``,
``L_<g>``, ``z_<g>``, ``r_<g>``, ``cor_<g>``, distributional parameters by
name, and ``y`` for the observations. Code variables are named after the
grouping factor (``sd_county``, ``z_county``, ``r_county``, data
``g_county``), so the printed model reads as one would write it by hand.

Sections, in reading order: population-level effects of each predictor,
group-level effects, the linear predictors (one gather per grouping factor),
the non-linear mean, distributional parameters, the likelihood.
"""

from __future__ import annotations

import builtins
import keyword
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._version import __version__
from .design import Design, GroupBlock, JointBlock, PredictorData, nested_folds
from .errors import PriorError
from .families import family_spec
from .functions import NL_FUNCTIONS, NL_HELPERS, NL_NEEDS, NL_POWER
from .ir import Call, Expr, ModelSpec, Num, Var, render
from .likelihoods import HELPERS, LIKELIHOODS, Lik, inv_link
from .parameterize import Centering, absorb_key, nested_centering
from .params import ParamEntry
from .priors import prior_code, prior_parts, vector_prior_code, vector_prior_parts

#: the observation site of every generated model
OBS_SITE = "y"
#: prefix of the sites a model records only when called with ``predict=True``
PREDICT_PREFIX = "linpred:"

Source = tuple[Any, ...]


@dataclass(frozen=True)
class Lowered:
    code: str
    data: dict[str, np.ndarray]
    dims: dict[str, list[str]]
    coords: dict[str, list[str]]
    #: site names worth summarising, in display order
    summary_vars: list[str] = field(default_factory=list)
    #: data keys with one row per observation (split by minibatching and sharding)
    obs_keys: list[str] = field(default_factory=list)
    #: where each data argument comes from in a design (``("X", "mu")``, ``("g", ("county",))``, ...)
    sources: dict[str, Source] = field(default_factory=dict)
    #: the observation site
    obs_site: str = OBS_SITE
    #: scalar sites (a single coefficient ``b``) that a fit stores with their one-element coefficient axis
    squeezed: tuple[str, ...] = ()


def _take(var: str, idx: list[int], n: int) -> str:
    """``var`` restricted to positions ``idx`` of its ``n``: the whole, a slice, or an index array."""
    if idx == list(range(n)):
        return var
    if idx == list(range(idx[0], idx[-1] + 1)):
        return f"{var}[{idx[0]}:{idx[-1] + 1}]"
    return f"{var}[jnp.array({idx})]"


def _shown(code: str) -> str:
    """A prior's code with its numbers, for the comment beside a site that takes them as an argument."""
    return code.replace("dist.", "")


def _comment(text: str) -> str:
    """Make user text safe for a one-line comment."""
    return "".join(ch if ch.isprintable() else " " for ch in text)


def _lit(v: float) -> str:
    return repr(float(f"{v:.6g}"))


#: correlated blocks of up to this many coefficients get the LKJ helper (NumPyro's LKJCholesky, its transform
#: written out element by element: O(K^2) small operations, so larger blocks keep NumPyro's vectorized form)
LKJ_UNROLLED = 6

# names the generated module defines or imports, and Python's own
_RESERVED = frozenset(
    {"jax", "jnp", "numpyro", "dist", "model", "y", "predict", *dir(builtins), *NL_HELPERS, *HELPERS,
     # and every module-level name a helper defines
     *(m for code in (*NL_HELPERS.values(), *HELPERS.values())
       for m in re.findall(r"^(?:class |def )?([A-Za-z_]\w*)\b", code, flags=re.M) if not keyword.iskeyword(m))}
)


class Namer:
    """Valid, unique Python identifiers for code variables, whatever the user's names:
    ASCII only (Python normalizes non-ASCII identifiers, which breaks keyword
    arguments), never a keyword, a builtin or a name the module uses."""

    def __init__(self) -> None:
        self.taken: set[str] = set(_RESERVED)

    def __call__(self, preferred: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_]", "_", preferred) or "v"
        if base[0].isdigit():
            base = f"v_{base}"
        if keyword.iskeyword(base) or base in self.taken:
            base = f"{base}_"
        name, k = base, 2
        while name in self.taken or keyword.iskeyword(name):
            name, k = f"{base}{k}", k + 1
        self.taken.add(name)
        return name


@dataclass
class _Group:
    """What the group section emits for one group term or one joint block."""

    key: str  # code-name stem ("county", "compound__p")
    label: str  # site label
    title: str
    levels: tuple[str, ...]
    coef_names: list[str]
    correlated: bool
    centered: np.ndarray
    requested: str
    reason: str
    loc: str | None = None  # hierarchical centering: the population intercepts the level coefficients centre on
    loc_words: str = "the population values"  # ... in words, and in the code, for the code's comment
    loc_shown: str = "population"
    site_r: bool = True
    #: a term beside a centered one that absorbs a shared population column: its mean sampled apart
    #: (see _Emitter.split_terms); the variable that receives the mean
    mean_var: str | None = None
    number: int | None = None  # the group term's number (None for a joint block)


class _Emitter:
    def __init__(self, spec: ModelSpec, design: Design, table: list[ParamEntry], centering: Centering) -> None:
        self.spec = spec
        self.design = design
        self.fam = family_spec(spec.family.name)
        self.table = {e.name: e for e in table}
        self.centering = centering
        self.names = Namer()
        self.sections: list[list[str]] = []
        self.args: list[str] = []
        self.data: dict[str, np.ndarray] = {}
        self.sources: dict[str, Source] = {}
        self.squeezed: list[str] = []
        self.dims: dict[str, list[str]] = {}
        self.coords: dict[str, list[str]] = {}
        self.summary: list[str] = []
        self.helpers: list[str] = []
        self.obs_keys: list[str] = []
        self.sites: set[str] = set()
        self.public: set[str] = {e.name for e in table} | {OBS_SITE} | {
            f"{kind}{'' if p == 'mu' else '_' + p}" for p in design.predictors for kind in ("Intercept", "b")
        } | {f"{kind}_{b.label}" for b in design.groups for kind in ("sd", "r", "cor")}
        self.var: dict[str, str] = {}  # role -> code variable ("Intercept:mu", "r:3", "eta:sigma", ...)
        self.pop_terms: dict[str, list[str]] = {}  # predictor -> code terms of its population part
        self.locs: dict[int, dict[str, str]] = {}  # group term -> population values of its columns (absorbed)
        self.loc_table: dict[int, str] = {}  # group term -> variable holding its columns' population values
        self.pending_loc: tuple[str, str] | None = None
        self.owners: dict[str, dict[str, GroupBlock]] = {}  # predictor -> column -> the term absorbing it
        self.split: dict[int, dict[str, int]] = {}  # terms whose mean is sampled apart (split_terms)
        # finer terms sampled around their coarse level's effects -> (that term, each level's coarse level)
        self.nested = nested_centering(design, centering)
        self.nest_coarse = {coarse.number for coarse, _ in self.nested.values()}
        # ... and the term of such a pair that absorbs the predictor's intercept: the coarse one if centered (its
        # coefficients around the population values, the finer ones around them), else the finer one
        self.nest_owner = {coarse.number if Centering.chosen(centering.of(coarse)) == "centered" else fine
                           for fine, (coarse, _) in self.nested.items()}
        self.coef_var: dict[int, str] = {}  # a term centered around population values -> its coefficients' variable
        # a factor's level dimension is its label, unless that is an internal dimension of another term
        # (a factor named `b__rot` beside b's rotated levels): then <label>_level
        labels = [b.label for b in design.groups] + [j.label for j in design.joints]
        internal = {f"{lab}__{k}" for lab in labels for k in ("coef", "cor", "rot", "centered", "noncentered")}
        self.level_dim = {lab: f"{lab}_level" if lab in internal else lab for lab in labels}
        self.split_means: dict[tuple[int, str], str] = {}  # (such a term, column) -> variable of its mean
        self.nl_values: dict[str, str] = {}  # non-linear parameter -> code of its value (bounds applied)

    # -------------------------------------------------------------- plumbing
    def section(self, title: str) -> list[str]:
        lines = [f"# ---- {title}"]
        self.sections.append(lines)
        return lines

    def arg(self, preferred: str, source: Source, value: np.ndarray, per_obs: bool = True) -> str:
        """A data argument of the model; ``per_obs`` arrays have one row per observation
        (what minibatching and data sharding split)."""
        name = self.names(preferred)
        self.args.append(name)
        self.data[name] = value
        self.sources[name] = source
        if per_obs:
            self.obs_keys.append(name)
        return name

    def _signature(self) -> list[str]:
        """The model's data arguments: the data first, then the priors' numbers (``prior_<site>``)."""
        priors = [a for a in self.args if self.sources[a][0] == "prior"]
        return [a for a in self.args if a not in priors] + priors

    def site(self, preferred: str, internal: bool = False) -> str:
        """A site name, unique in the model. Public names (those users set priors on or read:
        ``Intercept_k``, ``b``, ``sd_g``, ...) are kept as they are; an internal site (``Intercept_c``,
        ``z_``, ``L_``) that would repeat any of them (a parameter ``c_k`` beside ``k``) gets a suffix."""
        name = preferred
        if internal:
            while name in self.sites or name in self.public:
                name += "_"
        self.sites.add(name)
        return name

    def use(self, helper: str) -> None:
        needs = {"Censored": ("cdf",), "Truncated": ("cdf",)} | NL_NEEDS
        for h in [*needs.get(helper, ()), helper]:
            if h not in self.helpers:
                self.helpers.append(h)

    # -------------------------------------------------------------- priors
    def prior(self, site: str, ctor: str, values: Any, suffix: str) -> str:
        """Code of a prior whose numbers are the data argument ``prior_<site>``, unpacked into the constructor's
        arguments (a row per argument; for a vector site with numbers differing by element, a column per element).
        The numbers are arguments, not literals, so that priors differing only in value (default priors scaled by
        other data, a prior sensitivity check) give the same compiled program."""
        arr = np.asarray(values, dtype=float)
        name = self.arg(f"prior_{site}", ("prior", site), arr.T if arr.ndim == 2 else arr, per_obs=False)
        return f"{ctor}(*{name}){suffix}"

    def prior_vector_code(self, site: str, entries: list[ParamEntry], support: str) -> tuple[str, str] | None:
        """(code, the prior as literals for a comment) of one vector site over ``entries``, None when their priors
        differ in kind."""
        parts = vector_prior_parts([e.prior for e in entries], support, site)
        if parts is None:
            return None
        ctor, values, suffix = parts
        shown = vector_prior_code(parts)
        if len(set(values)) == 1:
            return f"{self.prior(site, ctor, values[0], suffix)}.expand([{len(entries)}]).to_event(1)", shown
        return f"{self.prior(site, ctor, values, suffix)}.to_event(1)", shown

    def prior_scalar_code(self, site: str, entry: ParamEntry, support: str) -> tuple[str, str]:
        """(code, the prior as literals for a comment) of a scalar site."""
        ctor, args, suffix = prior_parts(entry.prior, support, entry.name)
        return self.prior(site, ctor, args, suffix), prior_code(entry.prior, support, entry.name)

    def sample_vector(self, out: list[str], var: str, site: str, entries: list[ParamEntry], support: str) -> None:
        """A vector site over ``entries``; one site per element if their priors differ in kind."""
        name = self.site(site)
        vector = self.prior_vector_code(name, entries, support)
        if vector is not None:
            out.append(f"{var} = numpyro.sample({name!r}, {vector[0]})  # {_shown(vector[1])}")
            return
        parts = []
        for e in entries:
            v = self.names(e.name)
            one = self.site(e.name.replace("/", "_"))  # (netCDF, the fit file, refuses '/' in a variable's name)
            code, shown = self.prior_scalar_code(one, e, support)
            out.append(f"{v} = numpyro.sample({one!r}, {code})  # {_shown(shown)}")
            parts.append(v)
        # the vector as a site of its own too: summaries, fixef, hypothesis and predictions read it by its name
        out.append(f"{var} = numpyro.deterministic({name!r}, jnp.stack([{', '.join(parts)}]))")

    def sample_scalar(self, out: list[str], var: str, site: str, entry: ParamEntry, support: str) -> None:
        site = site if site in self.sites else self.site(site)
        code, shown = self.prior_scalar_code(site, entry, support)
        out.append(f"{var} = numpyro.sample({site!r}, {code})  # {_shown(shown)}")

    # -------------------------------------------------------------- population-level effects
    def absorbed(self, p: PredictorData) -> dict[str, GroupBlock]:
        """Population columns (``Intercept`` and slopes) that also vary by a group term: each is added to one
        such term's effects before their gather (``(r + loc)[g]``), so the row-level predictor does not
        repeat it, and a centered term samples its level coefficients around it (hierarchical centering:
        the population values then enter the likelihood only through the levels, no ridge). The term is a
        centered one before the others, then the one with most population columns, then the first."""
        if self.fam.kind == "ordinal" and p.name == "mu":
            return {}
        cols = (["Intercept"] if p.intercept else []) + list(p.coef_names)
        owner: dict[str, GroupBlock] = {}
        for c in cols:
            # a centered term before the others (a non-centered one then has its mean sampled apart, see
            # split_terms), and the term with most population columns first: it absorbs them all, and the
            # others, which share some, are split (a term that absorbs one column and shares another is not)
            # (ties to the absorbing term of a pair centered on its nesting: a split term could not centre on
            # the other's levels; nested_centering has made sure it wins them)
            blk = min((b for b in p.groups if b.joint is None and c in b.coef_names),
                      key=lambda b: (*absorb_key(b, self.centering, set(cols)), b.number not in self.nest_owner),
                      default=None)
            if blk is not None:
                owner[c] = blk
        return owner

    def population(self, p: PredictorData) -> None:
        sfx = "" if p.name == "mu" else f"_{p.name}"
        out = self.section(f"population-level effects of {p.name}: {_comment(p.linear.population_text())}")
        terms: list[str] = []
        owner = self.owners[p.name] = self.absorbed(p)
        rest = [k for k, c in enumerate(p.coef_names) if c not in owner]
        moved = [k for k, c in enumerate(p.coef_names) if c in owner]
        # one coefficient: a scalar site, a data column and a number (``X * b``, not ``X @ b`` over a vector of
        # one); the fit stores it with its coefficient axis as any ``b`` (Lowered.squeezed)
        one = len(p.coef_names) == 1
        if p.coef_names:
            self.coords[f"b{sfx}_coef"] = list(p.coef_names)
            self.dims[f"b{sfx}"] = [f"b{sfx}_coef"]
            entries = [self.table[f"b{sfx}_{c}"] for c in p.coef_names]
            if one:
                self.squeezed.append(f"b{sfx}")
            if rest:  # the columns that stay in the population part (the others vary by a group term)
                if one:
                    X = self.arg(f"X{sfx}", ("Xcol", p.name, 0), p.X[:, 0])
                else:
                    Xr = p.X if len(rest) == len(p.coef_names) else p.X[:, rest]
                    X = self.arg(f"X{sfx}", ("Xcols", p.name, tuple(rest)), Xr)
        times = " * " if one else " @ "  # the population part of the rows: X * b or X @ b
        locs: dict[str, str] = {}

        def sample_b(b: str) -> None:
            if one:
                self.sample_scalar(out, b, f"b{sfx}", entries[0], "real")
            else:
                self.sample_vector(out, b, f"b{sfx}", entries, "real")

        def coef(b: str, k: int) -> str:
            return b if one else f"{b}[{k}]"

        if self.fam.kind == "ordinal" and p.name == "mu":
            self.thresholds(out)
            if p.coef_names:
                b = self.names(f"b{sfx}")
                sample_b(b)
                terms.append(f"{X}{times}{b}")
        elif p.intercept:
            ie = self.table[f"Intercept{sfx}"]
            if p.coef_names:
                ic, b = self.names(f"Intercept_c{sfx}"), self.names(f"b{sfx}")
                out.append("# predictors are centered (X = X_raw - X_mean); Intercept_c is the intercept at their mean")
                self.sample_scalar(out, ic, self.site(f"Intercept_c{sfx}", internal=True), ie, "real")
                sample_b(b)
                if one:
                    xm = self.arg(f"X_mean{sfx}", ("X_mean1", p.name), np.asarray(p.X_mean[0]), per_obs=False)
                else:
                    xm = self.arg(f"X_mean{sfx}", ("X_mean", p.name), p.X_mean, per_obs=False)
                out.append(f"numpyro.deterministic({self.site('Intercept' + sfx)!r}, {ic} - {xm}{times}{b})")
                # the intercept once the slopes that vary by group are moved into their terms
                if one and moved:
                    at = f"{ic} - {xm} * {b}"
                elif len(moved) == 1:
                    at = f"{ic} - {xm}[{moved[0]}] * {b}[{moved[0]}]"
                else:
                    at = f"{ic} - {_take(xm, moved, len(p.coef_names))} @ {_take(b, moved, len(p.coef_names))}" if moved else ic
                if "Intercept" in owner:
                    locs["Intercept"] = at
                else:
                    terms.append(at)
                if rest:
                    terms.append(f"{X}{times}{_take(b, rest, len(p.coef_names))}")
                for k in moved:
                    locs[p.coef_names[k]] = coef(b, k)
            else:
                # a non-linear parameter that is one number: the code calls it by its own name
                alone = self.is_free_nlpar(p.name) and not p.groups and p.offset is None
                icept = self.names(p.name if alone else f"Intercept{sfx}")
                self.sample_scalar(out, icept, f"Intercept{sfx}", ie, "real")
                if "Intercept" in owner:
                    locs["Intercept"] = icept
                else:
                    terms.append(icept)
        elif p.coef_names:
            b = self.names(f"b{sfx}")
            sample_b(b)
            if rest:
                terms.append(f"{X}{times}{_take(b, rest, len(p.coef_names))}")
            for k in moved:
                locs[p.coef_names[k]] = coef(b, k)
        self.summary += [f"Intercept{sfx}"] * (p.intercept or self.fam.kind == "ordinal") + [f"b{sfx}"] * bool(p.coef_names)
        if p.offset is not None:
            terms.append(self.arg(f"offset{sfx}", ("offset", p.name), p.offset))
        if len(out) == 1:
            self.sections.remove(out)
        for c, blk in owner.items():
            self.locs.setdefault(blk.number, {})[c] = locs[c]
        self.pop_terms[p.name] = terms

    def thresholds(self, out: list[str]) -> None:
        levels = self.design.response.levels or ()
        entries = [self.table[f"Intercept_{k}"] for k in range(1, len(levels))]
        site = self.site("Intercept")
        vector = self.prior_vector_code(site, entries, "real")
        if vector is None or not vector[0].endswith(".to_event(1)"):
            raise PriorError("the thresholds of an ordinal model take one prior family, e.g. Intercept ~ normal(0, 2.5)")
        base = vector[0][: -len(".to_event(1)")]
        if ".expand(" not in base:
            base = f"{base}.expand([{len(entries)}])"
        self.use("OrderedIID")
        out.append(f"# thresholds between the {len(levels)} ordered categories: the priors restricted to increasing values")
        self.var["thresholds"] = self.names("Intercept")
        out.append(f"{self.var['thresholds']} = numpyro.sample({site!r}, OrderedIID({base}))  # {_shown(vector[1])}")
        self.coords["Intercept_dim"] = [f"{levels[k]}|{levels[k + 1]}" for k in range(len(levels) - 1)]
        self.dims["Intercept"] = ["Intercept_dim"]

    # -------------------------------------------------------------- group-level effects
    def groups(self) -> None:
        self.split = self.split_terms()
        start = len(self.summary)
        done: set[int] = set()
        # the terms whose mean is sampled apart come first, then the coarse terms a finer one is centered
        # around: the absorbing term's levels are sampled around the first, the finer term's around the second
        for blk in sorted(self.design.groups, key=lambda b: (b.number not in self.split, b.number not in self.nest_coarse)):
            if blk.joint is None:
                self.group(blk)
            elif blk.joint not in done:
                done.add(blk.joint)
                self.joint(self.design.joint(blk.joint))
        # the summary lists the terms in the formula's order, whatever order they were sampled in
        order = {b.label: b.number for b in self.design.groups} | {
            j.label: j.members[0].number for j in self.design.joints}
        self.summary[start:] = sorted(self.summary[start:], key=lambda s: order.get(s.split("_", 1)[1], -1))

    def split_terms(self) -> dict[int, dict[str, int]]:
        """Terms whose mean is sampled apart from the rest of their levels: term -> {shared column: the
        term that absorbs it}. Centered or non-centered terms that absorb no column themselves, beside a
        (partially) centered term that absorbs a column they have.

        A fully centered term around zero (``(1|b)`` beside ``(1|a)``, which absorbs the Intercept) leaves
        the split of the data's sums a_j + b_k to the priors: all b_k up by c, all a_j and the Intercept
        down by c, a ridge across every level of both factors and the Intercept that a diagonal mass matrix
        cannot follow when the levels are well informed (the review's ``(1|a) + (1|b) + (1|school/cls)``,
        all centered: Intercept bulk ESS 27, R-hat 1.12 at 4 x (500 + 500)). The term's levels are sampled
        rotated instead: w ~ N(0, Sigma) row by row, b = H w with H the Householder reflection taking the
        first axis to the direction of the mean (orthogonal, so the rows of b are exactly as before), its
        first row, sqrt(J) times b's mean, non-centered (data say nothing about it), and the absorbing term's
        levels sampled around the population value plus b's mean. The data then see a_j + b_k through
        coordinates free of the mean; what remains is a two-way trade between the Intercept and b's mean."""
        out: dict[int, dict[str, int]] = {}
        for blk in self.design.groups:
            # (nor a pair centered on its nesting: the finer levels centre on the coarse ones, and the data see
            # the finer coefficients whole)
            if (blk.joint is not None or blk.number in self.locs or len(blk.levels) < 2 or blk.number in self.nest_coarse
                    or blk.number in self.nested
                    or Centering.chosen(self.centering.of(blk)) == "partially centered"):
                continue
            # only beside an owner that samples levels around the population values: beside a non-centered
            # owner the ridge runs through the Intercept alone, and a split measured worse there (the review's
            # crossed + nested case all non-centered: min bulk ESS 31-225 split, 217-449 not)
            shared = {c: o.number for c, o in self.owners.get(blk.predictor, {}).items()
                      if c in blk.coef_names and o.number != blk.number
                      and Centering.chosen(self.centering.of(o)) != "noncentered"}
            if shared:
                out[blk.number] = shared
        return out

    def group(self, blk: GroupBlock) -> None:
        gt = blk.term
        kind = ("correlated" if gt.correlated else "uncorrelated") if blk.n_coef > 1 else "one coefficient"
        loc = None
        if blk.number in self.locs:  # population values of the term's columns (see absorbed)
            cols = [self.locs[blk.number].get(c, "0.0") for c in blk.coef_names]
            loc = cols[0] if blk.n_coef == 1 else f"jnp.stack([{', '.join(cols)}])"
            if not loc.isidentifier():  # named once, used where the levels are sampled and gathered
                name = self.names(f"pop_{blk.label}")
                self.pending_loc = (name, loc)
                loc = name
                self.locs[blk.number] = {c: f"{name}[{k}]" if blk.n_coef > 1 else name
                                         for k, c in enumerate(blk.coef_names) if c in self.locs[blk.number]}
                self.loc_table[blk.number] = name
        # the means of terms sampled apart (split_terms) that share this term's absorbed columns
        means = {c: [self.split_means[(n, c)] for n, cols in self.split.items() if cols.get(c) == blk.number]
                 for c in blk.coef_names}
        g = _Group(blk.label, blk.label, f"group-level effects of {_comment(blk.label)}: {_comment(str(gt))}",
                   blk.levels, list(blk.coef_names), gt.correlated and blk.n_coef > 1, self.centering.of(blk),
                   gt.param, self.centering.reason(blk), loc, number=blk.number)
        if blk.number in self.split:
            g.mean_var = self.names(f"mean_{blk.label}")
        out = self.group_header(g, kind)
        if self.pending_loc:
            name, code = self.pending_loc
            out.append(f"{name} = {code}  # the population values of the term's columns")
            self.pending_loc = None
        if loc is not None and any(means.values()):
            around = self.names(f"loc_{blk.label}")
            if blk.n_coef == 1:
                add = " + ".join(means[blk.coef_names[0]])
            else:
                add = "jnp.stack([" + ", ".join(" + ".join(means[c]) if means[c] else "0.0"
                                                for c in blk.coef_names) + "])"
            out.append(f"{around} = {loc} + {add}  # the levels centre on the population values plus the means of "
                       "the terms sampled apart (the data see their sums)")
            g.loc = around
        if blk.number in self.nested:
            coarse, level_map = self.nested[blk.number]
            up = self.arg(f"up_{blk.label}", ("nested_prior", coarse.number, blk.number), level_map, per_obs=False)
            around = self.names(f"loc_{blk.label}")
            # the coarse level's coefficients where it is centered around the population values, else its effects
            coarse_coef = coarse.number in self.coef_var
            at = f"{self.coef_var.get(coarse.number, self.var[f'r:{coarse.number}'])}[{up}]"
            what = f"{'coefficient' if coarse_coef else 'effect'} of its {_comment(coarse.label)}"
            out.append(f"# {_comment(blk.label)} is nested in {_comment(coarse.label)}: each level centres on "
                       f"{'its population value plus ' if g.loc else ''}the {what} ({up}; the fitted levels'), "
                       f"so the data see the {_comment(blk.label)} coefficients alone")
            out.append(f"{around} = {f'{g.loc} + ' if g.loc else ''}{at}")
            g.loc_words = (f"{'the population values plus ' if g.loc else ''}their {_comment(coarse.label)}'s "
                           f"{'coefficients' if coarse_coef else 'effects'}")
            g.loc = g.loc_shown = around
        sd = self.names(f"sd_{g.key}")
        entries = [self.table[f"sd_{blk.label}__{c}"] for c in blk.coef_names]
        if blk.n_coef == 1:
            self.sample_scalar(out, sd, f"sd_{blk.label}", entries[0], "positive")
        else:
            self.sample_vector(out, sd, f"sd_{blk.label}", entries, "positive")
            self.dims[f"sd_{blk.label}"] = [f"{blk.label}__coef"]
        self.var[f"r:{blk.number}"] = self.group_effects(out, g, sd)
        if g.mean_var is not None:
            for k, c in enumerate(g.coef_names):
                self.split_means[(blk.number, c)] = g.mean_var if blk.n_coef == 1 else f"{g.mean_var}[{k}]"

    def joint(self, j: JointBlock) -> None:
        """Terms linked by an ID: one SD vector, one LKJ matrix, one matrix of effects; each member a slice."""
        members = ", ".join(f"{_comment(str(m.term))} in {m.predictor}" for m in j.members)
        g = _Group(j.label, j.label, f"group-level effects linked by ID '{_comment(j.id)}': {members}", j.levels,
                   j.coef_names, True, self.centering.of(j.members[0]), j.param,
                   self.centering.reason(j.members[0]), site_r=False)
        out = self.group_header(g, "correlated")
        parts = []
        for m in j.members:
            entries = [self.table[f"sd_{m.label}__{c}"] for c in m.coef_names]
            v = self.names(f"sd_{m.label}")
            if m.n_coef == 1:
                self.sample_scalar(out, v, f"sd_{m.label}", entries[0], "positive")
            else:
                self.sample_vector(out, v, f"sd_{m.label}", entries, "positive")
                self.dims[f"sd_{m.label}"] = [f"{m.label}__coef"]
                self.coords[f"{m.label}__coef"] = list(m.coef_names)
            self.summary.append(f"sd_{m.label}")
            parts.append(v)
        sd = self.names(f"sd_{j.label}")
        out.append(f"{sd} = jnp.hstack([{', '.join(parts)}])")
        r = self.group_effects(out, g, sd)
        for m, a in zip(j.members, j.offsets(), strict=True):
            rm = self.names(f"r_{m.label}")
            if m.n_coef == 1:
                self.dims[f"r_{m.label}"] = [self.level_dim[j.label]]
                cols = f"{r}[:, {a}]"
            else:
                self.dims[f"r_{m.label}"] = [self.level_dim[j.label], f"{m.label}__coef"]
                cols = f"{r}[:, {a}:{a + m.n_coef}]"
            out.append(f"{rm} = numpyro.deterministic({self.site('r_' + m.label)!r}, {cols})")
            self.var[f"r:{m.number}"] = rm

    def group_header(self, g: _Group, kind: str) -> list[str]:
        J = len(g.levels)
        out = self.section(f"{g.title}, {J} levels, {kind}, {Centering.chosen(g.centered).replace('noncentered', 'non-centered')}")
        if g.requested == "auto":
            out.append(f"# auto: {_comment(g.reason)}")
        self.coords[self.level_dim[g.label]] = list(g.levels)
        if g.site_r:
            self.summary.append(f"sd_{g.label}")
        if len(g.coef_names) > 1 or not g.site_r:
            self.coords[f"{g.label}__coef"] = list(g.coef_names)
        return out

    def group_effects(self, out: list[str], g: _Group, sd: str) -> str:
        """The (J, K) matrix (or J vector for one coefficient) of group effects, in the chosen parameterization."""
        K, J = len(g.coef_names), len(g.levels)
        vec = K == 1 and g.site_r  # one coefficient: vectors over the levels, not (J, 1) matrices
        lvl, coef = self.level_dim[g.label], f"{g.label}__coef"
        shape = [lvl] if vec else [lvl, coef]
        r_site = f"r_{g.label}" if g.site_r else None
        r = self.names(f"r_{g.key}")
        if r_site:
            self.dims[r_site] = shape
        if g.correlated:
            L = self.names(f"L_{g.key}")
            eta_lkj = prior_code(self.table[f"cor_{g.label}"].prior, "corr", f"cor_{g.label}")
            lkj = "LKJ" if K <= LKJ_UNROLLED else "dist.LKJCholesky"  # (the helper: cheaper, compiled sooner)
            if lkj == "LKJ":
                self.use(lkj)
            out.append(f"{L} = numpyro.sample({self.site('L_' + g.label, internal=True)!r}, {lkj}({K}, {eta_lkj}))")
            self.coords[f"{g.label}__cor"] = [f"{g.coef_names[j]},{g.coef_names[i]}" for i, j in zip(*np.tril_indices(K, -1), strict=True)]
            self.dims[f"cor_{g.label}"] = [f"{g.label}__cor"]
            out.append(f"numpyro.deterministic({self.site('cor_' + g.label)!r}, ({L} @ {L}.T)[jnp.tril_indices({K}, -1)])")
            self.summary.append(f"cor_{g.label}")
            centered_dist = f"CorrelatedNormal({{loc}}, {sd}[:, None] * {L}, {{n}})"
            if Centering.chosen(g.centered) != "noncentered":
                self.use("CorrelatedNormal")
            scaled = f"({{z}}[:, None, :] * {L}).sum(-1) * {sd}"
            how = "scaled by the SDs and correlated by L"
        else:
            centered_dist = (f"dist.Normal({{loc}}, {sd}).expand([{{n}}]).to_event(1)" if vec
                             else f"dist.Normal({{loc}}, {sd}).expand([{{n}}, {K}]).to_event(2)")
            scaled = f"{{z}} * {sd}"
            how = "scaled by the SD" if vec else "scaled by the SDs"
        zero = f"jnp.zeros({K})" if g.correlated else "0.0"
        z_shape = "[{n}]).to_event(1)" if vec else f"[{{n}}, {K}]).to_event(2)"
        z_dist = f"dist.Normal(0.0, 1.0).expand({z_shape}"

        def r_value(code: str) -> None:
            if "[:, None, :] *" in code:
                out.append("# z @ L.T written as a broadcast sum: small matrix products do not fuse on CPU, this does")
            out.append(f"{r} = numpyro.deterministic({self.site(r_site)!r}, {code})" if r_site else f"{r} = {code}")

        param = Centering.chosen(g.centered)
        if g.mean_var is not None:
            # its mean apart (see split_terms): the levels are H w, w's first row (sqrt(J) x the mean)
            # non-centered, the other J - 1 rows centered or non-centered as the term is
            self.use("mean_split")
            zm = self.names(f"z_mean_{g.key}")
            zm_site = self.site(f"z_mean_{g.label}", internal=True)
            self.dims[zm_site] = [] if vec else [coef]
            self.coords[f"{g.label}__rot"] = list(g.levels[1:])
            rot_dims = [f"{g.label}__rot"] + ([] if vec else [coef])
            out.append(f"# {param}, the mean apart: the levels are H w, H the reflection taking the first axis to "
                       f"the mean's direction; w's first row (sqrt(J) x the mean) non-centered, the others {param}")
            out.append(f"{zm} = numpyro.sample({zm_site!r}, dist.Normal(0.0, 1.0)"
                       + (")" if vec else f".expand([{K}]).to_event(1))"))
            if param == "centered":
                w = self.names(f"rot_{g.key}")
                w_site = self.site(f"rot_{g.label}", internal=True)
                self.dims[w_site] = rot_dims
                out.append(f"{w} = numpyro.sample({w_site!r}, {centered_dist.format(n=J - 1, loc=zero)})")
            else:
                z = self.names(f"z_{g.key}")
                z_site = self.site(f"z_{g.label}", internal=True)
                self.dims[z_site] = rot_dims
                out.append(f"{z} = numpyro.sample({z_site!r}, {z_dist.format(n=J - 1)})")
                w = self.names(f"rot_{g.key}")
                out.append(f"{w} = {scaled.format(z=z)}")
            first = (f"{sd} * ({L} @ {zm})" if g.correlated else f"{zm} * {sd}")
            row = self.names(f"w1_{g.key}")
            out.append(f"{row} = {first}")
            out.append(f"{g.mean_var} = {row} / {float(np.sqrt(J))!r}  # the mean of the levels")
            r_value(f"mean_split({row}, {w})")
        elif param == "centered" and g.loc is not None:
            # hierarchical centering: the level coefficients are sampled around the population values of the
            # same columns, which then enter the likelihood only through them (no ridge between the two)
            out.append(f"# centered around {g.loc_words}: level coefficients = {g.loc_shown} + r, with their SDs")
            coef_site = self.site(f"coef_{g.label}", internal=True)
            self.dims[coef_site] = shape
            cvar = self.names(f"coef_{g.key}")
            out.append(f"{cvar} = numpyro.sample({coef_site!r}, {centered_dist.format(n=J, loc=g.loc)})")
            r_value(f"{cvar} - {g.loc}")
            if g.number is not None:
                self.coef_var[g.number] = cvar
        elif param == "centered":
            out.append("# centered: group effects sampled directly around zero with their SDs")
            site = self.site(r_site or f"r_{g.label}")
            self.dims[site] = shape
            out.append(f"{r} = numpyro.sample({site!r}, {centered_dist.format(n=J, loc=zero)})")
        elif param == "noncentered":
            z = self.names(f"z_{g.key}")
            z_site = self.site(f"z_{g.label}", internal=True)
            self.dims[z_site] = shape
            out.append(f"# non-centered: standard-normal offsets z, {how}")
            out.append(f"{z} = numpyro.sample({z_site!r}, {z_dist.format(n=J)})")
            r_value(scaled.format(z=z))
        else:
            # partially centered: well-informed levels centered, the rest non-centered
            c_lv = [lv for lv, c in zip(g.levels, g.centered, strict=True) if c]
            nc_lv = [lv for lv, c in zip(g.levels, g.centered, strict=True) if not c]
            n_c = len(c_lv)
            self.coords[f"{g.label}__centered"], self.coords[f"{g.label}__noncentered"] = c_lv, nc_lv
            rc_site, z_site = self.site(f"rc_{g.label}", internal=True), self.site(f"z_{g.label}", internal=True)
            self.dims[rc_site] = [f"{g.label}__centered"] + ([] if vec else [coef])
            self.dims[z_site] = [f"{g.label}__noncentered"] + ([] if vec else [coef])
            ci = self.arg(f"centered_{g.key}", ("centered", g.label), np.flatnonzero(g.centered).astype(np.int32), per_obs=False)
            nci = self.arg(f"noncentered_{g.key}", ("noncentered", g.label), np.flatnonzero(~g.centered).astype(np.int32),
                           per_obs=False)
            rc, z = self.names(f"rc_{g.key}"), self.names(f"z_{g.key}")
            around = g.loc or zero  # the centered levels, like a centered term, around the population values
            out.append(f"# partially centered: {n_c} levels centered (rc, their coefficients), {J - n_c} non-centered "
                       f"(z, {how})")
            out.append(f"{rc} = numpyro.sample({rc_site!r}, {centered_dist.format(n=n_c, loc=around)})")
            out.append(f"{z} = numpyro.sample({z_site!r}, {z_dist.format(n=J - n_c)})")
            zeros = f"jnp.zeros({J})" if vec else f"jnp.zeros(({J}, {K}))"
            rc_dev = rc if around == zero else f"({rc} - {around})"
            r_value(f"{zeros}.at[{ci}].set({rc_dev}).at[{nci}].set({scaled.format(z=z)})")
        return r

    # -------------------------------------------------------------- linear predictors
    def predictors(self) -> dict[str, str]:
        """Each predictor's row-level code: population part plus gathered group effects.

        Terms on the same grouping factor (in any predictor) share one index
        array; their effect tables are concatenated and gathered once, as a
        hand-written model would, instead of one gather per term."""
        out = self.section("linear predictors")
        contrib: dict[str, list[str]] = {name: list(t) for name, t in self.pop_terms.items()}
        by_factor: dict[tuple[str, ...], list[GroupBlock]] = {}
        for blk in self.design.groups:
            by_factor.setdefault(blk.term.group, []).append(blk)
        folds = nested_folds(by_factor)
        # a coarse factor folded into a finer one is gathered through the finer factor's table first
        order = sorted(by_factor, key=lambda f: f not in folds)
        through: dict[int, str] = {}  # fine intercept-only term -> the coarse term's table mapped to its levels
        for factor in order:
            blocks = by_factor[factor]
            label = ":".join(factor)
            fold = folds.get(factor)
            if fold is None:
                g = self.arg(f"g_{label}", ("g", blocks[0].number), blocks[0].g)
            else:
                fine, level_map = fold
                g = self.arg(f"in_{label}", ("nested", blocks[0].number, fine.number), level_map, per_obs=False)
            tables: list[tuple[str, int]] = []  # (code of a table, its width); width 0: a vector
            col: dict[int, int] = {}
            width = 0
            for blk in blocks:  # members of an ID block too: their slices are the sites predictions replace
                col[blk.number] = width
                r = self.var[f"r:{blk.number}"]
                if blk.number in through:
                    r = f"({r} + {through[blk.number]})"
                tables.append((r, 0 if blk.n_coef == 1 else blk.n_coef))
                width += blk.n_coef
            intercepts = ["0.0"] * width  # population values added to the columns of the terms that vary them
            for blk in blocks:
                for c, code in self.locs.get(blk.number, {}).items():
                    intercepts[col[blk.number] + blk.coef_names.index(c)] = code
            folded = any(c != "0.0" for c in intercepts)
            if len(blocks) == 1 and blocks[0].number in self.loc_table:
                intercepts = [self.loc_table[blocks[0].number]]  # the term's population values, named once
            single = len(tables) == 1
            if single:
                table = tables[0][0]
            elif all(w == 0 for _, w in tables):
                table = f"jnp.stack([{', '.join(t for t, _ in tables)}], axis=1)"
            else:
                table = f"jnp.concatenate([{', '.join(t if w else f'{t}[:, None]' for t, w in tables)}], axis=1)"
            if folded:
                add = intercepts[0] if len(intercepts) == 1 else f"jnp.stack([{', '.join(intercepts)}])"
                table = f"({table} + {add})"
            vec_table = single and tables[0][1] == 0
            what = ", ".join(f"{_comment(str(b.term))} in {b.predictor}" for b in blocks)
            if fold is not None:  # nested: its levels' effects join the finer factor's levels before their gather
                fine = fold[0]
                through[fine.number] = f"{table}[{g}]"  # (a factor takes one coarse factor at most)
                coarse_name, fine_name = _comment(blocks[0].term.group_label), _comment(fine.term.group_label)
                out.append(f"# {fine_name} is nested in {coarse_name}: the effects of {coarse_name} are gathered "
                           f"through the levels of {fine_name} ({g}), one gather over the rows fewer")
                continue
            if len(blocks) == 1:  # used once: gathered where it is used
                rows = f"{table}[{g}]"
            else:
                rows = self.names(f"rg_{label}")
                out.append(f"# one gather of the effects of {what}" + (", population values included" if folded else ""))
                out.append(f"{rows} = {table}[{g}]")
            for blk in blocks:
                a = col[blk.number]
                if vec_table or (single and width == blk.n_coef):
                    cols = rows
                elif blk.n_coef == 1:
                    cols = f"{rows}[:, {a}]"
                else:
                    cols = f"{rows}[:, {a}:{a + blk.n_coef}]"
                if blk.Z is None:  # intercept only: its one column
                    eff = cols
                elif blk.n_coef == 1:
                    eff = f"{cols} * {self.arg(f'Z_{blk.label}', ('Z1', blk.number), blk.Z[:, 0])}"
                else:
                    eff = f"jnp.sum({cols} * {self.arg(f'Z_{blk.label}', ('Z', blk.number), blk.Z)}, axis=-1)"
                contrib[blk.predictor].append(eff)
        etas: dict[str, str] = {}
        for name, parts in contrib.items():
            if len(parts) == 1 and parts[0].isidentifier():  # e.g. an intercept alone: no new name for it
                etas[name] = parts[0]
                continue
            preferred = "eta" if name == "mu" else (name if self.is_free_nlpar(name) else f"eta_{name}")
            eta = self.names(preferred)
            out.append(f"{eta} = {' + '.join(parts) if parts else '0.0'}")
            etas[name] = eta
        if len(out) == 1:
            self.sections.remove(out)
        return etas

    def is_free_nlpar(self, name: str) -> bool:
        """A non-linear parameter without bounds: its predictor is the parameter itself."""
        return name in dict(self.spec.nlpars) and self.spec.bounds(name) == (None, None)

    # -------------------------------------------------------------- non-linear mean
    def nonlinear(self, etas: dict[str, str]) -> str:
        """The non-linear mean: each bounded parameter transformed, then the expression."""
        spec = self.spec
        out = self.section("non-linear parameters and the mean")
        names: dict[str, str] = {}
        for name, _ in spec.nlpars:
            lo, hi = spec.bounds(name)
            eta = etas[name]
            if lo is None and hi is None:
                names[name] = eta
                continue
            if lo is not None and hi is not None:
                code, note = f"{_lit(lo)} + {_lit(hi - lo)} * jax.nn.sigmoid({eta})", f"between {lo:g} and {hi:g}"
            elif lo is not None:
                code = f"jnp.exp({eta})" if lo == 0 else f"{_lit(lo)} + jnp.exp({eta})"
                note = f"above {lo:g} (log scale)"
            else:
                code = f"-jnp.exp({eta})" if hi == 0 else f"{_lit(hi)} - jnp.exp({eta})"  # type: ignore[arg-type]
                note = f"below {hi:g} (log scale)"
            names[name] = self.names(name)
            out.append(f"{names[name]} = {code}  # {note}")
        for col, values in self.design.columns.items():
            names[col] = self.arg(col, ("column", col), values)
        mu = self.names("mu")
        out.append(f"{mu} = {self.expr(spec.formula.rhs, names)}")  # type: ignore[arg-type]
        self.nl_values = {name: names[name] for name, _ in spec.nlpars}
        return mu

    def expr(self, e: Expr, names: dict[str, str]) -> str:
        """jax.numpy code of a checked non-linear expression (the IR's one printer, with code leaves)."""

        def leaf(x: Expr) -> str:
            if isinstance(x, Num):
                return _lit(x.value)
            if isinstance(x, Var):
                return names[x.name]
            raise TypeError(f"cannot lower {x!r}")  # pragma: no cover - the parser admits nothing else

        def call(c: Call, args: list[str]) -> str:
            fn = NL_FUNCTIONS[c.fn]
            if fn.helper:
                self.use(fn.helper)
            return f"{fn.code}({', '.join(args)})"

        def power(a: str, b: str) -> str:
            self.use(NL_POWER.helper)  # type: ignore[arg-type]
            return f"{NL_POWER.code}({a}, {b})"

        return render(e, leaf, call, power)

    # -------------------------------------------------------------- distributional parameters
    def aux_params(self, etas: dict[str, str]) -> dict[str, str]:
        """Code of each distributional parameter: a sampled scalar, or the inverse link of its own predictor."""
        resp = self.design.response
        codes: dict[str, str] = {}
        lines: list[str] = []
        for aux in self.fam.aux:
            v = self.names(aux.name)
            if aux.name in etas:
                lines.append(f"{v} = {inv_link(aux.link, etas[aux.name])}  # {aux.link} link")
            elif aux.name == "sigma" and resp.se is not None and not resp.se_sigma:
                continue  # se(s): the known SEs are the whole residual SD
            else:
                e = self.table[aux.name]
                site = self.site(aux.name)
                code, shown = self.prior_scalar_code(site, e, aux.support)
                lines.append(f"{v} = numpyro.sample({site!r}, {code})  # {_shown(shown)}")
                self.summary.append(aux.name)
            codes[aux.name] = v
        if resp.se is not None:
            se = self.arg("se", ("se",), resp.se)
            if "sigma" in codes:
                lines.append(f"{codes['sigma']} = jnp.sqrt(jnp.square({codes['sigma']}) + jnp.square({se}))"
                             "  # residual SD and known SEs")
            else:
                codes["sigma"] = se
        if lines:
            self.section("distributional parameters").extend(lines)
        return codes

    # -------------------------------------------------------------- likelihood
    def likelihood(self, etas: dict[str, str], aux: dict[str, str]) -> None:
        spec, resp, fam = self.spec, self.design.response, self.fam
        out = self.section(f"likelihood: {spec.family.name}({spec.family.link})")
        if fam.kind == "categorical":
            levels = resp.levels or ()
            out.append(f"# categories: {_comment(', '.join(f'{i + 1} = {lv}' for i, lv in enumerate(levels)))}; "
                       "1 is the reference")
            cats = ", ".join(etas[f"mu{k}"] for k in range(2, len(levels) + 1))
            eta = self.names("eta")
            out.append(f"{eta} = jnp.stack([jnp.zeros_like({etas['mu2']}), {cats}], axis=-1)")
        else:
            eta = etas["mu"]
        # integer trials: NumPyro's binomial sampler (prior predictive) indexes with them
        trials = self.arg("trials", ("trials",), resp.trials.astype(np.int32)) if resp.trials is not None else None
        aux = dict(aux)
        if "Intercept" in self.dims and fam.kind == "ordinal":
            aux["thresholds"] = self.var["thresholds"]
        code = LIKELIHOODS[fam.name](Lik(spec.family.link, eta, aux, trials))
        for helper in HELPERS:  # a template may call a helper defined in the generated code
            if f"{helper}(" in code:
                self.use(helper)
        discrete = "True" if fam.discrete else "False"
        if resp.trunc_lb is not None or resp.trunc_ub is not None:
            self.use("Truncated")
            lo = self.arg("trunc_lb", ("trunc_lb",), resp.trunc_lb) if resp.trunc_lb is not None else "None"
            hi = self.arg("trunc_ub", ("trunc_ub",), resp.trunc_ub) if resp.trunc_ub is not None else "None"
            code = f"Truncated({code}, {lo}, {hi}, discrete={discrete})"
        if resp.cens is not None:
            self.use("Censored")
            cens = self.arg("cens", ("cens",), resp.cens)
            upper = self.arg("cens_upper", ("cens_upper",), resp.cens_upper)
            code = f"Censored({code}, {cens}, {upper}, discrete={discrete})"
        n = next((a for a in self.args if a in self.obs_keys), None)
        if n is None:  # no per-observation data but y: an array of ones sets the number of observations
            n = self.arg("ones", ("ones",), np.ones(self.design.n))
        plate = f"numpyro.plate('obs', {n}.shape[0])"
        if resp.weights is not None:
            w = self.arg("weights", ("weights",), resp.weights)
            plate += f", numpyro.handlers.scale(scale={w})"
        out.append("if predict:  # fit.predict(): keep each observation's predictors (never while sampling)")
        for name, v in etas.items():
            out.append(f"    numpyro.deterministic({PREDICT_PREFIX + name!r}, {v})")
        for name, v in self.nl_values.items():
            out.append(f"    numpyro.deterministic({'nlpar:' + name!r}, {v})")
        for name, v in aux.items():
            if name != "thresholds":
                out.append(f"    numpyro.deterministic({'dpar:' + name!r}, {v})")
        out.append(f"with {plate}:")
        out.append(f"    numpyro.sample({OBS_SITE!r}, {code}, obs=y)")
        self.dims[OBS_SITE] = ["obs"]
        self.data[OBS_SITE] = self.design.y
        self.sources[OBS_SITE] = ("y",)
        self.obs_keys.append(OBS_SITE)

    # -------------------------------------------------------------- whole model
    def model(self) -> str:
        spec, design = self.spec, self.design
        for p in design.predictors.values():
            self.population(p)
        self.groups()
        etas = self.predictors()
        if spec.formula.is_nonlinear:
            etas["mu"] = self.nonlinear(etas)
        aux = self.aux_params(etas)
        self.likelihood(etas, aux)
        body = "\n\n".join("\n".join(f"    {ln}" if ln else "" for ln in sec) for sec in self.sections)
        helpers = [NL_HELPERS[h] if h in NL_HELPERS else HELPERS[h] for h in self.helpers]
        uses_jax = "jax." in body or any("jax." in h for h in helpers)
        header = [
            f"# generated by hbm_formula {__version__} from:",
            *[f"#   {_comment(line)}" for line in str(spec).splitlines()],
            f"# family: {spec.family}; {design.n} observations",
            *(["import jax"] if uses_jax else []),
            "import jax.numpy as jnp",
            "import numpyro",
            "import numpyro.distributions as dist",
            "",
        ]
        for h in helpers:
            header.append(h.rstrip("\n"))
            header.append("")
        header += [
            "",
            f"def model({', '.join(self._signature())}, y=None, predict=False):",
            '    """NumPyro model; call with the arrays of CompiledModel.data (y=None to sample it)."""',
        ]
        return "\n".join(header) + "\n" + body + "\n"


def _rename_clashing_dims(em: _Emitter) -> None:
    """A dimension named like a variable (a grouping factor ``b`` beside the coefficients ``b``, a factor
    ``sigma`` or ``obs``) cannot coexist with it in one xarray Dataset: such a dimension gets ``_level``."""
    taken = set(em.dims) | em.sites | set(em.data) | {OBS_SITE, "obs", "chain", "draw"}
    taken |= {f"{PREDICT_PREFIX}{p}" for p in em.design.predictors}
    for d in [d for d in em.coords if d in taken]:
        new = f"{d}_level"
        while new in taken or new in em.coords:
            new += "_"
        em.coords[new] = em.coords.pop(d)
        for k, ds in em.dims.items():
            em.dims[k] = [new if x == d else x for x in ds]


def lower(spec: ModelSpec, design: Design, table: list[ParamEntry], centering: Centering) -> Lowered:
    em = _Emitter(spec, design, table, centering)
    code = em.model()
    _rename_clashing_dims(em)
    return Lowered(code, em.data, em.dims, em.coords, em.summary, em.obs_keys, em.sources, squeezed=tuple(em.squeezed))
