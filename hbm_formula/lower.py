"""IR + design metadata → Python source of a NumPyro model function.

The source is the model: it is what ``compile`` executes, what ``model.code``
prints and what ``--emit-code`` writes. User text reaches it only as comments
(sanitized) and as string literals (``repr``); every identifier and number is
produced here. Lowering does not know how inference will be run.

Site names are fixed and tested (brms-like): ``Intercept``, ``b``, ``sd_<g>``,
``L_<g>``, ``z_<g>``, ``r_<g>``, ``cor_<g>``, auxiliary parameters by name, and
``y`` for the observations. Code variables are numbered per group term
(``sd_1``, ``z_1``, ``r_1``, data ``Z_1``, ``g_1``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import __version__
from .design import Design, GroupBlock, JointBlock, PredictorData
from .errors import PriorError
from .families import HELPERS, FamilySpec, Lik, family_spec, inv_link
from .ir import BinOp, Call, Expr, ModelSpec, Neg, Num, Var
from .params import ParamEntry
from .priors import prior_code, vector_prior_code


@dataclass
class Lowered:
    code: str
    data: dict[str, np.ndarray]
    dims: dict[str, list[str]]
    coords: dict[str, list[str]]
    #: site names worth summarising, in display order
    summary_vars: list[str] = field(default_factory=list)
    #: data keys with one row per observation (split by minibatching and sharding)
    obs_keys: list[str] = field(default_factory=list)


def _comment(text: str) -> str:
    """Make user text safe for a one-line comment."""
    return "".join(ch if ch.isprintable() else " " for ch in text)


def _lit(v: float) -> str:
    return repr(float(f"{v:.6g}"))


class _Emitter:
    def __init__(self, spec: ModelSpec, design: Design, table: list[ParamEntry]) -> None:
        self.spec = spec
        self.design = design
        self.table = {e.name: e for e in table}
        self.lines: list[str] = []
        self.args: list[str] = []
        self.data: dict[str, np.ndarray] = {}
        self.dims: dict[str, list[str]] = {}
        self.coords: dict[str, list[str]] = {}
        self.summary: list[str] = []
        self.helpers: list[str] = []
        self.obs_keys: list[str] = []
        self.joints_done: set[str] = set()
        self.folded: dict[int, str] = {}  # group term number -> intercept added to its Intercept column
        self.uninit: set[str] = set()  # predictors whose first term is their gathered group effects
        self.hier: dict[int, str] = {}  # group term number -> its level coefficients (intercept included)

    def emit(self, line: str = "") -> None:
        self.lines.append(f"    {line}" if line else "")

    def arg(self, name: str, value: np.ndarray, per_obs: bool = True) -> str:
        """A data argument of the model; ``per_obs`` arrays have one row per observation
        (what minibatching and data sharding split)."""
        self.args.append(name)
        self.data[name] = value
        if per_obs:
            self.obs_keys.append(name)
        return name

    # -------------------------------------------------------------- priors
    def sample_vector(self, var: str, site: str, entries: list[ParamEntry], support: str) -> None:
        """A vector site over ``entries``; one site per element if their priors differ in kind."""
        dists = [e.prior for e in entries]
        code = vector_prior_code(dists, support, site)
        if code is not None:
            self.emit(f"{var} = numpyro.sample({site!r}, {code})")
            return
        parts = []
        for i, e in enumerate(entries):
            v = f"{var}_{i + 1}"
            self.emit(f"{v} = numpyro.sample({e.name!r}, {prior_code(e.prior, support, e.name)})")
            parts.append(v)
        self.emit(f"{var} = jnp.stack([{', '.join(parts)}])")

    # -------------------------------------------------------------- predictors
    def predictor(self, p: PredictorData) -> str:
        """Emit a linear predictor; returns the name of its code variable."""
        sfx = "" if p.name == "mu" else f"_{p.name}"
        eta = f"eta{sfx}"
        lin = p.linear
        self.emit(f"# ---- population-level effects of {p.name}: {_comment(lin.population_text())}")
        X = self.arg(f"X{sfx}", p.X)
        terms: list[str] = []
        if p.coef_names:
            self.coords[f"b{sfx}_coef"] = list(p.coef_names)
            self.dims[f"b{sfx}"] = [f"b{sfx}_coef"]
            entries = [self.table[f"b{sfx}_{c}"] for c in p.coef_names]
        fam = family_spec(self.spec.family.name)
        if fam.kind == "ordinal" and p.name == "mu":
            self.thresholds()
            if p.coef_names:
                self.sample_vector(f"b{sfx}", f"b{sfx}", entries, "real")
                terms.append(f"{X} @ b{sfx}")
        elif p.intercept:
            ie = self.table[f"Intercept{sfx}"]
            if p.coef_names:
                self.emit("# predictors are centered (X = X_raw - X_mean); Intercept_c is the intercept at their mean")
                self.emit(
                    f"Intercept_c{sfx} = numpyro.sample({'Intercept_c' + sfx!r}, {prior_code(ie.prior, 'real', ie.name)})"
                )
                self.sample_vector(f"b{sfx}", f"b{sfx}", entries, "real")
                xm = self.arg(f"X_mean{sfx}", p.X_mean, per_obs=False)
                self.emit(f"numpyro.deterministic({'Intercept' + sfx!r}, Intercept_c{sfx} - {xm} @ b{sfx})")
                terms.append(f"Intercept_c{sfx} + {X} @ b{sfx}")
            else:
                self.emit(f"Intercept{sfx} = numpyro.sample({'Intercept' + sfx!r}, {prior_code(ie.prior, 'real', ie.name)})")
                terms.append(f"Intercept{sfx}")
        elif p.coef_names:
            self.sample_vector(f"b{sfx}", f"b{sfx}", entries, "real")
            terms.append(f"{X} @ b{sfx}")
        self.summary += [f"Intercept{sfx}"] * (p.intercept or fam.kind == "ordinal") + [f"b{sfx}"] * bool(p.coef_names)
        if p.offset is not None:
            terms.append(self.arg(f"offset{sfx}", p.offset))
        if not terms:
            terms.append(f"jnp.zeros({X}.shape[0])")
        fold = next((b for b in p.groups if "Intercept" in b.coef_names), None)
        if fold is not None and terms == [f"Intercept{sfx}"] and fam.kind != "ordinal":
            # intercept-only population part: the intercept is added to the group effects before
            # their gather, so the row-level predictor is one gathered column (as written by hand)
            self.folded[fold.number] = f"Intercept{sfx}"
            self.uninit.add(eta)
        else:
            self.emit(f"{eta} = {' + '.join(terms)}")
        for blk in p.groups:
            self.group(blk)
        return eta

    def thresholds(self) -> None:
        levels = self.design.response.levels or []
        entries = [self.table[f"Intercept_{k}"] for k in range(1, len(levels))]
        code = vector_prior_code([e.prior for e in entries], "real", "Intercept")
        if code is None or not code.endswith(".to_event(1)"):
            raise PriorError("the thresholds of an ordinal model take one prior family, e.g. Intercept ~ normal(0, 2.5)")
        base = code[: -len(".to_event(1)")]
        if ".expand(" not in base:
            base = f"{base}.expand([{len(entries)}])"
        self.use("OrderedIID")
        self.emit(f"# thresholds between the {len(levels)} ordered categories: the priors restricted to increasing values")
        self.emit(f"Intercept = numpyro.sample('Intercept', OrderedIID({base}))")
        self.coords["Intercept_dim"] = [f"{levels[k]}|{levels[k + 1]}" for k in range(len(levels) - 1)]
        self.dims["Intercept"] = ["Intercept_dim"]

    def use(self, helper: str) -> None:
        needs = {"Censored": ["cdf"], "Truncated": ["cdf"]}
        for h in [*needs.get(helper, []), helper]:
            if h not in self.helpers:
                self.helpers.append(h)

    def group(self, blk: GroupBlock) -> None:
        """Emit the parameters of one group term (or of the joint block it belongs to) as ``r_<k>``."""
        if blk.joint is not None:
            self.joint(blk.joint)
            return
        k = blk.number
        gt = blk.term
        kind = ("correlated" if gt.correlated else "uncorrelated") if blk.n_coef > 1 else "one coefficient"
        sd_entries = [self.table[f"sd_{blk.label}__{c}"] for c in blk.coef_names]
        loc = None
        if k in self.folded:  # the predictor's intercept, at the term's Intercept column
            cols = ["0.0"] * blk.n_coef
            cols[blk.coef_names.index("Intercept")] = self.folded[k]
            loc = cols[0] if blk.n_coef == 1 else f"jnp.stack([{', '.join(cols)}])"
        self.group_effects(
            str(k), blk.label, f"group-level effects {k}: {_comment(str(gt))}", kind, blk.levels, blk.coef_names,
            gt.correlated and blk.n_coef > 1, blk.centered_levels(), gt.param, blk.auto_reason,
            lambda: self.sample_vector(f"sd_{k}", f"sd_{blk.label}", sd_entries, "positive"), loc=loc,
        )

    def joint(self, j: JointBlock) -> None:
        """Terms linked by an ID: one SD vector, one LKJ matrix, one matrix of effects; each member a slice."""
        if j.label in self.joints_done:
            return
        self.joints_done.add(j.label)
        k = f"j{j.number}"
        members = ", ".join(f"{_comment(str(m.term))} in {m.predictor}" for m in j.members)

        def sds() -> None:
            parts = []
            for m in j.members:
                entries = [self.table[f"sd_{m.label}__{c}"] for c in m.coef_names]
                self.sample_vector(f"sd_{m.number}", f"sd_{m.label}", entries, "positive")
                self.summary.append(f"sd_{m.label}")
                self.dims[f"sd_{m.label}"] = [f"{m.label}__coef"]
                self.coords[f"{m.label}__coef"] = list(m.coef_names)
                parts.append(f"sd_{m.number}")
            self.emit(f"sd_{k} = jnp.concatenate([{', '.join(parts)}])")

        self.group_effects(
            k, j.label, f"group-level effects {k}: terms linked by ID '{_comment(j.id)}': {members}", "correlated",
            j.levels, j.coef_names, True, j.centered_levels(), j.param, j.members[0].auto_reason, sds,
            site_r=False,
        )
        for m, a in zip(j.members, j.offsets(), strict=True):
            self.dims[f"r_{m.label}"] = [j.label, f"{m.label}__coef"]
            self.emit(f"r_{m.number} = numpyro.deterministic({'r_' + m.label!r}, r_{k}[:, {a}:{a + m.n_coef}])")

    def group_effects(
        self, k: str, lab: str, title: str, kind: str, levels: list[str], coef_names: list[str], cor: bool,
        centered: np.ndarray, requested: str, auto_reason: str, sds, site_r: bool = True, loc: str | None = None,
    ) -> None:
        """SDs, (LKJ), and the (J, K) matrix ``r_<k>`` of group effects, in the chosen parameterization."""
        K, J = len(coef_names), len(levels)
        n_c = int(centered.sum())
        param = "centered" if n_c == J else "noncentered" if n_c == 0 else "partially centered"
        self.emit("")
        self.emit(f"# ---- {title}, {J} levels, {kind}, {param}")
        if requested == "auto":
            self.emit(f"# auto: {_comment(auto_reason)}")
        coef_dim, lvl_dim = f"{lab}__coef", lab
        self.coords[coef_dim] = list(coef_names)
        self.coords[lvl_dim] = list(levels)
        if site_r:
            self.dims[f"sd_{lab}"] = [coef_dim]
            self.dims[f"r_{lab}"] = [lvl_dim, coef_dim]
            self.summary.append(f"sd_{lab}")
        sds()
        if cor:
            eta_lkj = prior_code(self.table[f"cor_{lab}"].prior, "corr", f"cor_{lab}")
            self.emit(f"L_{k} = numpyro.sample({'L_' + lab!r}, dist.LKJCholesky({K}, {eta_lkj}))")
            pairs = [f"{coef_names[j]},{coef_names[i]}" for i, j in zip(*np.tril_indices(K, -1), strict=True)]
            self.coords[f"{lab}__cor"] = pairs
            self.dims[f"cor_{lab}"] = [f"{lab}__cor"]
            self.emit(f"numpyro.deterministic({'cor_' + lab!r}, (L_{k} @ L_{k}.T)[jnp.tril_indices({K}, -1)])")
            self.summary.append(f"cor_{lab}")
            centered_dist = f"dist.MultivariateNormal({{loc}}, scale_tril=sd_{k}[:, None] * L_{k}).expand([{{n}}]).to_event(1)"
            # z @ L.T written as a broadcast sum: small matmuls do not fuse on CPU, this does
            scaled = f"(z_{k}[:, None, :] * L_{k}).sum(-1) * sd_{k}"
        else:
            centered_dist = f"dist.Normal({{loc}}, sd_{k}).expand([{{n}}, {K}]).to_event(2)"
            scaled = f"z_{k} * sd_{k}"
        how = "scaled by the SDs and correlated by L" if cor else "scaled by the SDs"
        r_site = f"r_{lab}" if site_r else None

        def r_value(code: str) -> None:
            self.emit(f"r_{k} = numpyro.deterministic({r_site!r}, {code})" if r_site else f"r_{k} = {code}")

        zero = f"jnp.zeros({K})" if cor else "0.0"
        if param == "centered" and loc is not None:
            # hierarchical centering: with an intercept-only population part, the level coefficients are
            # sampled around the population intercept, which then enters the likelihood only through them
            self.emit("# centered around the population intercept: level coefficients b = Intercept + r with their SDs")
            self.dims[f"coef_{lab}"] = [lvl_dim, coef_dim]
            self.emit(f"b_{k} = numpyro.sample({'coef_' + lab!r}, {centered_dist.format(n=J, loc=loc)})")
            r_value(f"b_{k} - {loc}")
            self.hier[int(k)] = f"b_{k}"
        elif param == "centered":
            self.emit("# centered: group effects sampled directly around zero with their SDs")
            site = r_site or f"r_{lab}"
            self.dims[site] = [lvl_dim, coef_dim]
            self.emit(f"r_{k} = numpyro.sample({site!r}, {centered_dist.format(n=J, loc=zero)})")
        elif param == "noncentered":
            self.dims[f"z_{lab}"] = [lvl_dim, coef_dim]
            self.emit(f"# non-centered: standard-normal offsets z, {how}")
            self.emit(f"z_{k} = numpyro.sample({'z_' + lab!r}, dist.Normal(0.0, 1.0).expand([{J}, {K}]).to_event(2))")
            r_value(scaled)
        else:
            # partially centered: well-informed levels centered, the rest non-centered
            c_lv = [lv for lv, c in zip(levels, centered, strict=True) if c]
            nc_lv = [lv for lv, c in zip(levels, centered, strict=True) if not c]
            self.coords[f"{lab}__centered"], self.coords[f"{lab}__noncentered"] = c_lv, nc_lv
            self.dims[f"rc_{lab}"] = [f"{lab}__centered", coef_dim]
            self.dims[f"z_{lab}"] = [f"{lab}__noncentered", coef_dim]
            ci = self.arg(f"centered_{k}", np.flatnonzero(centered).astype(np.int32), per_obs=False)
            nci = self.arg(f"noncentered_{k}", np.flatnonzero(~centered).astype(np.int32), per_obs=False)
            self.emit(f"# partially centered: {n_c} levels centered (rc), {J - n_c} non-centered (z, {how})")
            self.emit(f"rc_{k} = numpyro.sample({'rc_' + lab!r}, {centered_dist.format(n=n_c, loc=zero)})")
            self.emit(f"z_{k} = numpyro.sample({'z_' + lab!r}, dist.Normal(0.0, 1.0).expand([{J - n_c}, {K}]).to_event(2))")
            r_value(f"jnp.zeros(({J}, {K})).at[{ci}].set(rc_{k}).at[{nci}].set({scaled})")

    def gathers(self, etas: dict[str, str]) -> None:
        """Add the group effects to the predictors: one gather per grouping factor.

        Terms on the same grouping factor (in any predictor) share one index
        array; their effect matrices are concatenated and gathered once, as a
        hand-written model would, instead of one gather per term."""
        by_factor: dict[tuple[str, ...], list[GroupBlock]] = {}
        for blk in self.design.groups:
            by_factor.setdefault(blk.term.group, []).append(blk)
        for blocks in by_factor.values():
            sources: list[str] = []  # code variables of effect matrices, in column order
            col: dict[int, int] = {}  # block number -> first column in the gathered matrix
            width = 0
            for blk in blocks:
                if blk.joint is not None:
                    src = f"r_j{blk.joint.number}"
                    if src in sources:
                        continue
                    for m, a in zip(blk.joint.members, blk.joint.offsets(), strict=True):
                        col[m.number] = width + a
                    sources.append(src)
                    width += len(blk.joint.coef_names)
                else:
                    sources.append(self.hier.get(blk.number, f"r_{blk.number}"))
                    col[blk.number] = width
                    width += blk.n_coef
            first = blocks[0]
            self.emit("")
            g = self.arg(f"g_{first.number}", first.g)
            intercepts = ["0.0"] * width  # population intercepts folded into their group Intercept column
            for blk in blocks:
                if blk.number in self.folded and blk.number not in self.hier:
                    intercepts[col[blk.number] + blk.coef_names.index("Intercept")] = self.folded[blk.number]
            folded = any(c != "0.0" for c in intercepts)
            if len(sources) == 1 and len(blocks) == 1 and not folded and first.number not in self.hier:
                rg = None
            else:
                rg = f"rg_{first.number}"
                what = ", ".join(f"{_comment(str(b.term))} in {b.predictor}" for b in blocks)
                self.emit(f"# one gather of the effects of {what}" + (", intercepts included" if folded else ""))
                table = sources[0] if len(sources) == 1 else f"jnp.concatenate([{', '.join(sources)}], axis=1)"
                if folded:
                    add = intercepts[0] if width == 1 else f"jnp.stack([{', '.join(intercepts)}])"
                    table = f"({table} + {add})"
                self.emit(f"{rg} = {table}[{g}]")
            for blk in blocks:
                eta = etas[blk.predictor]
                a = col[blk.number]
                # the term's rows of effects: gathered alone (r_k[g]) or its columns of the shared gather
                rows = f"r_{blk.number}[{g}]" if rg is None else f"{rg}[:, {a}:{a + blk.n_coef}]"
                if blk.Z is None:  # intercept only: its one column
                    eff = f"r_{blk.number}[{g}, 0]" if rg is None else f"{rg}[:, {a}]"
                else:
                    eff = f"jnp.sum({rows} * {self.arg(f'Z_{blk.number}', blk.Z)}, axis=-1)"
                if eta in self.uninit:
                    self.uninit.discard(eta)
                    self.emit(f"{eta} = {eff}")
                else:
                    self.emit(f"{eta} = {eta} + {eff}")

    # -------------------------------------------------------------- whole model
    def aux_params(self, fam: FamilySpec, etas: dict[str, str]) -> dict[str, str]:
        """Code of each auxiliary parameter: a sampled scalar, or the inverse link of its own predictor."""
        resp = self.design.response
        codes: dict[str, str] = {}
        lines: list[str] = []
        for aux in fam.aux:
            if aux.name in etas:
                lines.append(f"{aux.name} = {inv_link(aux.link, etas[aux.name])}  # {aux.link} link")
            elif aux.name == "sigma" and resp.se is not None and not resp.se_sigma:
                continue  # se(s): the known SEs are the whole residual SD
            else:
                e = self.table[aux.name]
                lines.append(f"{aux.name} = numpyro.sample({aux.name!r}, {prior_code(e.prior, aux.support, aux.name)})")
                self.summary.append(aux.name)
            codes[aux.name] = aux.name
        if resp.se is not None:
            se = self.arg("se", resp.se)
            if "sigma" in codes:
                lines.append(f"sigma = jnp.sqrt(jnp.square(sigma) + jnp.square({se}))  # residual SD and known SEs")
            codes["sigma"] = "sigma" if "sigma" in codes else se
        if lines:
            self.emit("")
            self.emit("# ---- auxiliary parameters")
            for ln in lines:
                self.emit(ln)
        return codes

    def likelihood(self, fam: FamilySpec, etas: dict[str, str], aux: dict[str, str]) -> str:
        spec, resp = self.spec, self.design.response
        if fam.kind == "categorical":
            levels = resp.levels or []
            self.emit("")
            self.emit(f"# categories: {_comment(', '.join(f'{i + 1} = {lv}' for i, lv in enumerate(levels)))}; 1 is the reference")
            cats = ", ".join(etas[f"mu{k}"] for k in range(2, len(levels) + 1))
            self.emit(f"eta = jnp.stack([jnp.zeros_like({etas['mu2']}), {cats}], axis=-1)")
            eta = "eta"
        else:
            eta = etas["mu"]
        # integer trials: NumPyro's binomial sampler (prior predictive) indexes with them
        trials = self.arg("trials", resp.trials.astype(np.int32)) if resp.trials is not None else None
        code = fam.likelihood(Lik(spec.family.link, eta, aux, trials))
        for helper in HELPERS:  # a template may call a helper defined in the generated code
            if f"{helper}(" in code:
                self.use(helper)
        discrete = "True" if fam.discrete else "False"
        if resp.trunc_lb is not None or resp.trunc_ub is not None:
            self.use("Truncated")
            lo = self.arg("trunc_lb", resp.trunc_lb) if resp.trunc_lb is not None else "None"
            hi = self.arg("trunc_ub", resp.trunc_ub) if resp.trunc_ub is not None else "None"
            code = f"Truncated({code}, {lo}, {hi}, discrete={discrete})"
        if resp.cens is not None:
            self.use("Censored")
            cens = self.arg("cens", resp.cens)
            upper = self.arg("cens_upper", resp.cens_upper)
            code = f"Censored({code}, {cens}, {upper}, discrete={discrete})"
        return code

    def nonlinear(self, etas: dict[str, str]) -> str:
        """Emit the non-linear mean: each parameter (with its bounds) and the expression."""
        spec = self.spec
        self.emit("")
        self.emit("# ---- non-linear parameters and the mean")
        names: dict[str, str] = {}
        for name, _ in spec.nlpars:
            lo, hi = spec.bounds(name)
            eta = etas[name]
            if lo is not None and hi is not None:
                code, note = f"{_lit(lo)} + {_lit(hi - lo)} * jax.nn.sigmoid({eta})", f"between {lo:g} and {hi:g}"
            elif lo is not None:
                code, note = f"{_lit(lo)} + jnp.exp({eta})", f"above {lo:g} (log scale)"
            elif hi is not None:
                code, note = f"{_lit(hi)} - jnp.exp({eta})", f"below {hi:g} (log scale)"
            else:
                code, note = eta, ""
            names[name] = f"nl_{name}"
            self.emit(f"nl_{name} = {code}" + (f"  # {note}" if note else ""))
        for i, (col, values) in enumerate(self.design.columns.items(), start=1):
            var = f"d_{col}" if col.isidentifier() else f"col_{i}"
            names[col] = self.arg(var, values)
        self.emit(f"mu = {expr_code(spec.formula.rhs, names)}")  # type: ignore[arg-type]
        return "mu"

    def model(self) -> str:
        spec, design = self.spec, self.design
        fam = family_spec(spec.family.name)
        etas = {name: self.predictor(p) for name, p in design.predictors.items()}
        self.gathers(etas)
        if spec.formula.is_nonlinear:
            etas["mu"] = self.nonlinear(etas)
        aux = self.aux_params(fam, etas)
        lik = self.likelihood(fam, etas, aux)
        self.emit("")
        self.emit(f"# ---- likelihood: {spec.family.name}({spec.family.link})")
        first_x = next(a for a in self.args if a.startswith("X"))
        plate = f"numpyro.plate('obs', {first_x}.shape[0])"
        if design.response.weights is not None:
            w = self.arg("weights", design.response.weights)
            plate += f", numpyro.handlers.scale(scale={w})"
        self.emit(f"with {plate}:")
        self.emit(f"    numpyro.sample('y', {lik}, obs=y)")
        self.dims["y"] = ["obs"]
        self.data["y"] = design.y
        self.obs_keys.append("y")
        body = "\n".join(self.lines)
        header = [
            f"# generated by hbm_formula {__version__} from:",
            *[f"#   {_comment(line)}" for line in str(spec).splitlines()],
            f"# family: {spec.family}; {design.n} observations",
            "import jax",
            "import jax.numpy as jnp",
            "import numpyro",
            "import numpyro.distributions as dist",
            "",
        ]
        for h in self.helpers:
            header.append(HELPERS[h].rstrip("\n"))
            header.append("")
        header += [
            "",
            f"def model({', '.join(self.args)}, y=None):",
            '    """NumPyro model; call with the arrays of CompiledModel.data (y=None to sample it)."""',
        ]
        return "\n".join(header) + "\n" + body + "\n"


#: jax.numpy code of the functions a non-linear expression may call
NL_CODE = {
    "exp": "jnp.exp", "log": "jnp.log", "log1p": "jnp.log1p", "expm1": "jnp.expm1", "sqrt": "jnp.sqrt",
    "inv_logit": "jax.nn.sigmoid", "logistic": "jax.nn.sigmoid", "Phi": "jax.scipy.stats.norm.cdf",
    "pow": "jnp.power", "abs": "jnp.abs", "min": "jnp.minimum", "max": "jnp.maximum",
}
_PREC = {"+": 1, "-": 1, "*": 2, "/": 2, "**": 4}


def expr_code(e: Expr, names: dict[str, str]) -> str:
    """jax.numpy code of a checked non-linear expression; names map parameters/columns to code variables."""
    if isinstance(e, Num):
        return _lit(e.value)
    if isinstance(e, Var):
        return names[e.name]
    if isinstance(e, Neg):
        return f"-({expr_code(e.operand, names)})"
    if isinstance(e, Call):
        return f"{NL_CODE[e.fn]}({', '.join(expr_code(a, names) for a in e.args)})"
    if isinstance(e, BinOp):
        p = _PREC[e.op]

        def side(x: Expr, right: bool) -> str:
            code = expr_code(x, names)
            q = _PREC[x.op] if isinstance(x, BinOp) else 5
            return f"({code})" if q < p or (q == p and (right != (e.op == "**"))) else code

        return f"{side(e.left, False)} {e.op} {side(e.right, True)}"
    raise TypeError(f"cannot lower {e!r}")  # pragma: no cover - the parser admits nothing else


def lower(spec: ModelSpec, design: Design, table: list[ParamEntry]) -> Lowered:
    em = _Emitter(spec, design, table)
    code = em.model()
    return Lowered(code, em.data, em.dims, em.coords, em.summary, em.obs_keys)

