"""Where NUTS starts, and its first mass matrix: the ``auto`` measurement's quick mode (``init="pilot"``).

NumPyro (like Stan) starts each chain at a uniform(-2, 2) draw on the unconstrained scale with the identity
mass matrix, which it keeps until its first adaptation window ends (iteration 100 of the default warmup).
On a large model that is most of the fit's gradients: InstEval's residual SD has a posterior SD of 0.003 on
the log scale and its 4,100 effects one near 1, so the step size follows the first and the trees the second
(250-300 leapfrog steps per iteration there). The ``auto`` measurement (``pilot.measure``) has already found
a quick mode of the group effects, their SDs and the scalar distributional parameters, with the data's
information per level; this module writes that point in the sampled model's own coordinates (whatever its
parameterization) and takes each coordinate's approximate posterior variance as the first (diagonal) inverse
mass matrix:

- a non-centered offset z of a level with information I (the data's precision of its effect) and group SD
  s: 1 / (1 + I s^2); a centered level coefficient: 1 / (I + 1 / s^2) (the normal-normal posterior);
- the log of a group SD: the square of the measurement's standard error of it;
- the log of a scalar distributional parameter (sigma, shape, ...): minus the inverse of its curvature (from
  the measurement's secant steps);
- a population-level scalar: minus the inverse of the log-likelihood's curvature in it with the effects held
  (``pilot.measure(population=True)``), plus, for an intercept or coefficient that also varies by a group
  term, the normal-normal variance of the levels' mean, 1 / sum_j 1 / (s^2 + 1 / I_j);
- anything else (correlation factors, thresholds, ...) 1, NumPyro's identity.

A start alone does not help (the identity matrix still sets the step size), nor does the matrix alone: from
a uniform draw far from the mode, a matrix scaled to the posterior pins the chains where they start (both
measured on InstEval). Each chain starts at the point plus ``JITTER`` of these SDs of normal noise where they
were measured, ``UNMEASURED`` unconstrained units elsewhere.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: each chain's start: the quick mode plus this many (approximate) posterior SDs of normal noise per coordinate
JITTER = 2.0
#: a group SD the measurement could not pin (the standard error of its log above this, or not finite) starts at
#: no less than ``SD_FLOOR`` times its prior median, with the identity's variance (a nested factor beside its
#: parent: InstEval's 14 departments read 6e-5 while the posterior's is 0.09)
SD_RELIABLE = 1.0
SD_FLOOR = 0.1
#: ... and where no variance was measured (correlation factors, thresholds, a group SD not pinned, its offsets),
#: this SD on the unconstrained scale
UNMEASURED = 0.5
#: a population coefficient's variance counts as measured where the data's curvature is at least this share of
#: its prior's precision (``_population_var``)
MEASURED_SHARE = 0.1
#: bounds of a coordinate's variance in the first mass matrix
VAR_MIN, VAR_MAX = 1e-24, 1e12

_ROLES = ("z_mean_", "z_", "rot_", "coef_", "rc_", "r_")


def pilot_start(cm: Any, info: Any, chains: int, seed: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Each chain's starting point (unconstrained, one row per chain: the quick mode plus ``JITTER``
    approximate posterior SDs of noise) and the first diagonal inverse mass matrix (per latent site) of ``cm``'s
    model, from ``info`` (a ``pilot.Information`` of the same design)."""
    import jax

    point, mass, spread = pilot_point(cm, info)
    dtype = jax.dtypes.canonicalize_dtype(np.float64)  # float32, or float64 under x64
    gen = np.random.default_rng([seed, 11])
    starts = {k: (point[k][None] + spread[k][None] * gen.standard_normal((chains, *point[k].shape))).astype(dtype)
              for k in point}
    return starts, {k: np.asarray(v, dtype) for k, v in mass.items()}  # (in the dtype of the starts)


def pilot_point(cm: Any, info: Any) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The quick mode of ``info`` in ``cm``'s latent sites (unconstrained), each coordinate's approximate
    posterior variance there (see the module doc), and the SD of the noise between the chains' starts."""

    from . import infer, pilot

    design, table = cm.design, cm.params
    by_label = {b.label: b for b in design.groups}
    shapes = infer.latent_shapes(cm.model, cm.data)
    prior = pilot.prior_point(shapes, table, design)
    prior_sd = pilot.population_prior_sd(shapes, table)

    # the targets per term: the quick mode's effects (levels x coefficients), SDs and each level's information
    T: dict[str, np.ndarray] = {}
    sd: dict[str, np.ndarray] = {}
    sd_var: dict[str, np.ndarray] = {}
    pinned: dict[str, np.ndarray] = {}  # per term and coefficient: the measurement pinned its SD
    info_of: dict[str, np.ndarray] = {}
    for b in design.groups:
        if b.number not in info.tables:
            continue
        T[b.label] = np.asarray(info.tables[b.number], float).reshape(len(b.levels), b.n_coef).copy()
        info_of[b.label] = np.nan_to_num(np.asarray(info.info[b.number], float).reshape(len(b.levels), b.n_coef))
        est, se = np.asarray(info.sd[b.number], float), np.asarray(info.se_log_sd[b.number], float)
        medians = np.asarray(prior.get(f"sd_{b.label}", np.ones(b.n_coef)), float).reshape(-1)
        medians = np.broadcast_to(medians, est.shape)
        reliable = np.isfinite(est) & (est > 0) & np.isfinite(se) & (se <= SD_RELIABLE)
        sd[b.label] = np.where(reliable, est, np.maximum(np.nan_to_num(est), SD_FLOOR * medians))
        sd_var[b.label] = np.where(reliable, np.square(np.nan_to_num(se, nan=1.0)), 1.0)
        pinned[b.label] = reliable

    # the levels' means of intercept columns go to their predictor's intercept (a constant shift of the rows'
    # predictor: exact), so that the offsets start centred as their prior is
    pop = {k: np.asarray(v, float) for k, v in prior.items() if pilot.population_site(k) and k not in info.log_aux}
    pop |= {k: np.asarray(v, float) for k, v in info.population_point.items() if k in pop}
    for b in design.groups:
        site = _intercept_site(b.predictor, shapes)
        # (a term linked by an ID starts at its prior's centre, effects 0: its mean stays with its effects)
        if b.label in T and b.joint is None and "Intercept" in b.coef_names and site is not None:
            c = b.coef_names.index("Intercept")
            mean = float(T[b.label][:, c].mean())
            T[b.label][:, c] -= mean
            pop[site] = pop[site] + mean

    def role(name: str) -> tuple[str, Any] | tuple[None, None]:
        for prefix in _ROLES:
            if name.startswith(prefix) and name[len(prefix):] in by_label and name[len(prefix):] in T:
                return prefix, by_label[name[len(prefix):]]
        return None, None

    def target(blk: Any) -> np.ndarray:
        return T[blk.label] if blk.n_coef > 1 else T[blk.label][:, 0]

    def split(blk: Any) -> bool:
        return f"z_mean_{blk.label}" in shapes

    def rotated(t: np.ndarray) -> np.ndarray:
        """w = H t for the generated model's own ``mean_split`` (H, a reflection, is its own inverse)."""
        return np.asarray(cm.model.__globals__["mean_split"](t[0], t[1:]), dtype=float)

    def centered_index(blk: Any) -> np.ndarray:
        return np.asarray(cm.centering.of(blk), bool)

    def direct(name: str) -> np.ndarray:
        """A latent site's constrained value at the point; for a centered term's level coefficients, their
        offset from their distribution's centre (the population value plus split means, known in the model)."""
        shape = tuple(shapes[name].shape)
        prefix, blk = role(name)
        if name in pop:
            out = pop[name]
        elif name in info.log_aux:
            out = np.exp(info.log_aux[name])
        elif name.startswith("sd_") and name[3:] in sd:
            out = sd[name[3:]] if shape else sd[name[3:]][0]
        elif blk is not None:
            s = sd[blk.label] if blk.n_coef > 1 else sd[blk.label][0]
            t = target(blk)
            if prefix == "z_mean_":
                out = rotated(t)[0] / s
            elif prefix == "rot_":
                out = rotated(t)[1:]
            elif prefix == "z_":
                out = (rotated(t)[1:] if split(blk) else
                       t[~centered_index(blk)] if shape[0] != t.shape[0] else t) / s
            elif prefix == "rc_":
                out = t[centered_index(blk)]
            else:  # coef_ (offset), or a centered term's effects sampled directly
                out = t
        else:
            out = prior[name]
        out = np.asarray(out, dtype=shapes[name].dtype)
        return np.broadcast_to(out, shape).copy() if out.shape != shape else out

    values = {k: infer.on_device(direct(k)) for k in shapes}
    around = tuple(sorted(k for k in shapes if role(k)[0] in ("coef_", "rc_")))
    # one row: the latent sites' values do not depend on the rows; one compiled program (op by op, the model's
    # ~80 operations each compiled apart, took 1.4 s on InstEval), kept on disk with the model's others
    one_row = {k: infer.on_device(v[:1] if k in cm.obs_keys else v) for k, v in cm.data.items()}
    to_unconstrained = _unconstrained(cm.model, around)
    point = {k: np.asarray(v, np.float64) for k, v in to_unconstrained(values, one_row).items()}

    # a population site's variance is measured on its own value; on the sampled coordinate (a logit for an
    # interval prior, a log for a positive one) it is that times the square of du/dq, taken by a secant of one
    # approximate posterior SD (the same compiled program again)
    pop_var = {k: _population_var(k, point[k], info, design, sd, info_of, prior_sd.get(k)) for k in pop if k in point}
    if pop_var:
        step = {k: np.sqrt(v) for k, (v, _) in pop_var.items()}
        moved = to_unconstrained(values | {k: infer.on_device((np.asarray(values[k]) + step[k]).astype(values[k].dtype))
                                           for k in step}, one_row)
        for k, (v, known) in pop_var.items():
            with np.errstate(divide="ignore", invalid="ignore"):
                jac = (np.asarray(moved[k], np.float64) - point[k]) / step[k]
            # a step within a thousand float32 spacings of the value is no secant (a response near 1e9 with an SD
            # of 100): there the coordinate is the value itself (an interval's or a log's values are not so large)
            coarse = step[k] < 1e3 * np.spacing(np.abs(np.asarray(values[k], np.float32)))
            jac = np.where(coarse, 1.0, jac)
            ok = np.isfinite(jac) & (jac != 0)
            pop_var[k] = (np.where(ok, v * np.square(np.where(ok, jac, 1.0)), 1.0), known & ok)

    # the first inverse mass matrix, coordinate by coordinate on the unconstrained scale
    def mass_of(name: str, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The coordinates' variances, and where they were measured (elsewhere the identity's 1 or a prior's)."""
        prefix, blk = role(name)
        if name in pop:
            return pop_var[name]
        if name in info.log_aux:
            c = info.aux_curvature.get(name)
            return np.asarray(-1.0 / c if c is not None and c < 0 else 1.0), np.asarray(c is not None and c < 0)
        if name.startswith("sd_") and name[3:] in sd_var:
            if z.ndim:
                return sd_var[name[3:]].reshape(z.shape), pinned[name[3:]].reshape(z.shape)
            return sd_var[name[3:]][0], pinned[name[3:]][0]
        if blk is None:
            return np.ones_like(z), np.zeros(z.shape, bool)
        s2 = np.square(sd[blk.label])[None, :]
        info_j = info_of[blk.label]
        rows = {"z_": split(blk) and 1, "rot_": 1}.get(prefix)
        if rows:  # the rotated rows: each level's value beside the next (H moves only the mean's direction)
            info_j = info_j[1:]
        elif prefix in ("z_", "rc_") and z.shape[0] != info_j.shape[0]:
            info_j = info_j[centered_index(blk) if prefix == "rc_" else ~centered_index(blk)]
        # where the SD is not pinned, neither is the offsets' scale: the prior's variance (1 for z, the SD's
        # square for a centered level)
        known = np.broadcast_to(pinned[blk.label][None, :], info_j.shape)
        if prefix in ("z_", "z_mean_"):
            var = np.where(known, 1.0 / (1.0 + info_j * s2), 1.0)
            if prefix == "z_mean_":
                var, known = var.mean(axis=0), known.all(axis=0)
        else:
            var = np.where(known, 1.0 / (info_j + 1.0 / s2), s2)
        if var.size == z.size:
            return var.reshape(z.shape), known.reshape(z.shape)
        return np.broadcast_to(var.mean(), z.shape), np.zeros(z.shape, bool)

    mass, spread = {}, {}
    for k, v in point.items():
        var, known = mass_of(k, v)
        mass[k] = np.clip(np.nan_to_num(np.broadcast_to(var, v.shape), nan=1.0, posinf=VAR_MAX), VAR_MIN, VAR_MAX)
        # a measured coordinate's chains start JITTER of its SDs apart; elsewhere UNMEASURED apart (2 unconstrained
        # units would start a correlation factor at tanh(4) and pin a chain there: sleepstudy, 1 seed of 9)
        spread[k] = np.where(np.broadcast_to(known, v.shape), JITTER * np.sqrt(mass[k]), UNMEASURED)
    # a value outside its support (e.g. a measured Student-t nu below its bound) maps to no finite coordinate:
    # there, NumPyro's centre and identity
    for k, v in point.items():
        bad = ~np.isfinite(v)
        if bad.any():
            point[k], mass[k] = np.where(bad, 0.0, v), np.where(bad, 1.0, mass[k])
            spread[k] = np.where(bad, UNMEASURED, spread[k])
    return point, mass, spread


def _unconstrained(model: Any, around: tuple[str, ...]) -> Any:
    """A compiled function (values, data) -> every latent site's unconstrained value, where ``values`` gives
    each site's constrained value, except the sites in ``around``, whose value is their distribution's centre
    (as the model computes it) plus the given offset."""
    import jax.numpy as jnp
    from numpyro import handlers
    from numpyro.distributions.transforms import biject_to

    from . import progcache
    from .infer import jit

    def run(values: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        def value(msg: dict[str, Any]) -> Any:
            name = msg["name"]
            if msg.get("is_observed") or name not in values:
                return None
            if name in around:
                fn = msg["fn"]
                try:
                    centre = fn.mean
                except (AttributeError, NotImplementedError):
                    centre = getattr(fn, "loc", 0.0)
                return jnp.broadcast_to(centre, values[name].shape) + values[name]
            return values[name]

        tr = handlers.trace(handlers.substitute(handlers.seed(model, 0), substitute_fn=value)).get_trace(**data)
        return {k: biject_to(s["fn"].support).inv(s["value"]) for k, s in tr.items()
                if s["type"] == "sample" and not s["is_observed"]}

    key = progcache.key_of(model)
    return progcache.cached("nuts-start", None if key is None else (*key, around), jit(run, once=True), once=True)


def _intercept_site(predictor: str, shapes: dict[str, Any]) -> str | None:
    sfx = "" if predictor == "mu" else f"_{predictor}"
    for site in (f"Intercept_c{sfx}", f"Intercept{sfx}"):
        if site in shapes and np.ndim(np.zeros(shapes[site].shape)) == 0:
            return site
    return None


def _population_var(name: str, z: np.ndarray, info: Any, design: Any, sd: dict[str, np.ndarray],
                    info_of: dict[str, np.ndarray], prior_sd: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """A population-level site's approximate posterior variance per scalar, and where it was measured: the
    inverse of the log-likelihood's curvature with the effects held plus its prior's precision, plus the
    variance of the mean of the levels of each group term whose column it is (the intercept's for an intercept).
    The prior's precision counts where the prior is a location-scale one (``prior_sd``). Measured only where the
    data's curvature is at least ``MEASURED_SHARE`` of that precision: the curvature is taken at the prior
    medians, where a non-linear parameter can look
    uninformed (``a * exp(-k t)`` at ``a = 0`` says nothing of k), and 2 prior SDs there started a chain at
    log k = 42. Elsewhere the identity's 1, and chains ``UNMEASURED`` apart."""
    curv = info.population_curvature.get(name)
    var, known = np.ones(z.shape, float), np.zeros(z.shape, bool)
    if curv is not None:
        data_prec = np.broadcast_to(np.maximum(-np.asarray(curv, float), 0.0), z.shape)
        with np.errstate(divide="ignore"):
            prior_prec = (np.zeros(z.shape) if prior_sd is None
                          else 1.0 / np.square(np.broadcast_to(np.asarray(prior_sd, float), z.shape)))
            known = (data_prec > 0) & (data_prec >= MEASURED_SHARE * prior_prec)
            var = np.where(known, 1.0 / np.maximum(data_prec + prior_prec, 1e-300), 1.0)
    for b in design.groups:
        if b.label not in sd:
            continue
        sfx = "" if b.predictor == "mu" else f"_{b.predictor}"
        for c, col in enumerate(b.coef_names):
            k = None
            if col == "Intercept" and name in (f"Intercept_c{sfx}", f"Intercept{sfx}") and z.ndim == 0:
                k = ()
            elif name == f"b{sfx}" and col in _coef_names(design, b.predictor):
                names = _coef_names(design, b.predictor)
                k = () if z.ndim == 0 else (names.index(col),)
            if k is None:
                continue
            with np.errstate(divide="ignore"):
                level_var = np.square(sd[b.label][c]) + 1.0 / info_of[b.label][:, c]
            var[k] = var[k] + 1.0 / np.sum(1.0 / level_var)
    return var, known


def _coef_names(design: Any, predictor: str) -> list[str]:
    p = design.predictors.get(predictor)
    return list(p.coef_names) if p is not None else []
