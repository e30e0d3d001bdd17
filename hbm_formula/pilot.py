"""How informative each level's data are: the measurement behind ``param="auto"``.

For a group effect r_jc (level j, coefficient c) the data's precision I_jc is the
curvature of the log-likelihood in r_jc: -d²ℓ/dr_jc². It is computed exactly with
automatic differentiation of the generated model itself: the model's ``r_<g>``
sites are substituted by a variable table, the population parameters by their
prior medians (the default priors are centred on the data), and forward-mode
derivatives of each row's log-likelihood, first and second order, along the
term's coefficient columns of ones, summed by level, give each level's gradient
and block of the Hessian (levels of one term share no rows: a row's derivative
along a column is its derivative in its own level's coefficient). No reverse pass,
so no scatter into the effect tables: about half the time and compilation of a
Hessian-vector product of the summed log-likelihood. It is taken at a quick
mode, not at the starting point: up to ``ITERATIONS`` sweeps of Newton steps (until the SDs settle), term by
term (Gauss-Seidel), one level's coefficients jointly, each level's estimate
shrunk toward the mean of the levels as the normal-normal model does (empirical
Bayes), with secant (quasi-Newton) steps on the log of the scalar distributional parameters
(sigma, shape, ...) in between. The spread of the levels' estimates beyond their
own noise gives the group SD and the standard error of its log (DerSimonian &
Laird 1986's moment estimator). That is all the ``auto`` rule needs
(Papaspiliopoulos, Roberts & Sköld 2007): a level's posterior variance of z is
1 / (1 + I_jc sd²).

It replaces a pilot SVI fit: no optimisation, two compiled passes over the rows
(one computes a term's gradient and Hessian blocks, one the scalar parameters' gradient),
the rows looped on the device ``batch_size`` at a time when minibatches are asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

#: rounds of the quick mode at most (each one pass over the rows per group term, no recompilation); it stops
#: earlier once every group SD and mean settles (Gaussian models: 3-4 rounds; a Poisson with 3 rows per level
#: needs about 7, its Newton steps overshoot from a far start, and 4 left its SD estimate at twice the truth)
ITERATIONS = 12
#: ... settled: each SD moved by less than this fraction, each mean by less than this fraction of its SD
SETTLED = 0.01
#: ... or, with a ``decide`` rule given, once its decision stayed the same over this many sweeps in a row while
#: every SD and mean moved by less than STABLE_MOVED in the last (the 4PL's four coupled curve parameters settle
#: slowly, 12 sweeps, while the choice is plain from the fourth)
STABLE_SWEEPS = 3
STABLE_MOVED = 0.1
#: secant steps on the log of each scalar distributional parameter per sweep (a residual SD that starts far
#: off, at its prior median, needs two to follow the effects; with one it lags a sweep behind)
AUX_STEPS = 2


@dataclass(frozen=True)
class Information:
    """Per group term (by number): I (levels, coefficients), one-step effects, the SD estimate and
    the standard error of log(SD)."""

    info: dict[int, np.ndarray]
    effects: dict[int, np.ndarray]
    sd: dict[int, np.ndarray]
    se_log_sd: dict[int, np.ndarray]
    rows_seen: int
    #: rows per pass (batch_size when minibatches are asked for, else all rows)
    chunk_rows: int
    #: the quick mode itself: each term's shrunk level effects (by number; (levels,) or (levels, coefficients))
    #: and the log of each scalar distributional parameter (sigma, shape, ...), with the curvature of the
    #: log-likelihood in it where the secant steps measured one (negative: a maximum)
    tables: dict[int, np.ndarray] = field(default_factory=dict)
    log_aux: dict[str, float] = field(default_factory=dict)
    aux_curvature: dict[str, float] = field(default_factory=dict)
    #: with ``population=True``: each population-level site's value at the quick mode (its prior median, held)
    #: and the curvature of the log-likelihood in each of its scalars there (negative at a maximum)
    population_point: dict[str, np.ndarray] = field(default_factory=dict)
    population_curvature: dict[str, np.ndarray] = field(default_factory=dict)


def measure(model: Any, data: dict[str, Any], obs_keys: list[str], design: Any, table: list[Any],
            batch_size: int | None = None, obs: str = "y", decide: Any = None, population: bool = False
            ) -> Information:
    """The information of every group term's levels, from the non-centered ``model`` (see module doc).
    ``decide`` (Information -> a Centering) lets the sweeps stop once its decision is stable (STABLE_SWEEPS).
    ``population``: also the curvature of the log-likelihood in each population-level scalar (intercepts,
    coefficients) at the quick mode, with the effects held there (one more compiled pass; for NUTS's start).
    A generated model's two traced passes are kept on disk (progcache)."""
    import jax
    import jax.numpy as jnp
    from numpyro import handlers

    from .infer import compiled_behind, jit, latent_shapes, on_device, scale_observed

    blocks = design.groups
    sites = {b.number: f"r_{b.label}" for b in blocks}
    n = int(np.shape(data[obs_keys[0]])[0])
    chunk = n if batch_size is None or batch_size >= n else int(batch_size)

    def row_loglik(tables: dict[str, Any], aux: dict[str, Any], point: dict[str, Any], arrays: dict[str, Any],
                   mask: Any) -> Any:
        """Each row's log-likelihood (padded rows 0)."""
        values = point | tables | {k: jnp.exp(v) for k, v in aux.items()}
        tr = handlers.trace(handlers.substitute(scale_observed(model, mask), data=values)).get_trace(**arrays)
        site = tr[obs]
        lp = site["fn"].log_prob(site["value"])
        return lp * (site["scale"] if site["scale"] is not None else 1.0)

    shapes = {sites[b.number]: (len(b.levels),) if b.n_coef == 1 else (len(b.levels), b.n_coef) for b in blocks}
    # per term, one tangent per coefficient (ones in that coefficient's column of that term, zeros elsewhere),
    # padded with zero tangents to the most coefficients of any term: one compiled pass serves every term
    width = max((b.n_coef for b in blocks), default=1)
    tangents: dict[int, dict[str, Any]] = {}
    for b in blocks:
        t = {s: np.zeros((width, *shape), dtype=np.float32) for s, shape in shapes.items()}
        for c in range(b.n_coef):
            if t[sites[b.number]].ndim == 2:
                t[sites[b.number]][c] = 1.0
            else:
                t[sites[b.number]][c, :, c] = 1.0
        tangents[b.number] = jax.device_put(t)

    # the rows in passes of ``chunk`` (the last one padded and masked), stacked so that one compiled program
    # loops over the passes on the device: no round trip to Python per pass
    passes = -(-n // chunk)
    fixed = {k: v for k, v in data.items() if k not in obs_keys}
    stacked_rows = jax.device_put({k: _pad(np.asarray(data[k]), passes * chunk).reshape(passes, chunk, *np.shape(data[k])[1:])
                                   for k in obs_keys})
    masks = jax.device_put((np.arange(passes * chunk) < n).astype(np.float32).reshape(passes, chunk))

    # each term's level per row, stacked like the rows; the per-level sums padded to the most levels of any term
    most = max((len(b.levels) for b in blocks), default=1)
    level_of = {b.number: jax.device_put(_pad(np.asarray(b.g, dtype=np.int32), passes * chunk).reshape(passes, chunk))
                for b in blocks}

    @jit
    def block_pass(tab: dict[str, Any], aux: dict[str, Any], point: dict[str, Any], fixed_arrays: dict[str, Any],
                   rows_: dict[str, Any], masks_: Any, levels_: Any, tangent: dict[str, Any]) -> tuple[Any, Any]:
        """Per level of one term, the gradient and Hessian block of the log-likelihood in its coefficients: a row
        depends on one level of the term, so the forward-mode derivatives of each row's log-likelihood along the
        term's tangents (first and second order, no reverse pass), summed by level, are exactly those."""
        def per_pass(arrays: dict[str, Any], extra: tuple[Any, Any]) -> tuple[Any, Any]:
            mask, level = extra
            f = lambda tb: row_loglik(tb, aux, point, arrays, mask)  # noqa: E731
            def second(va: Any, vb: Any) -> tuple[Any, Any]:
                return jax.jvp(lambda tb: jax.jvp(f, (tb,), (va,))[1], (tab,), (vb,))
            first, both = jax.vmap(lambda va: jax.vmap(lambda vb: second(va, vb))(tangent))(tangent)  # (w, w, rows)
            by_level = lambda x: jax.ops.segment_sum(jnp.moveaxis(x, -1, 0), level, num_segments=most)  # noqa: E731
            return by_level(first[:, 0]).astype(jnp.float32), by_level(both).astype(jnp.float32)
        zeros = (jnp.zeros((most, width), jnp.float32), jnp.zeros((most, width, width), jnp.float32))
        return _scan_sum(per_pass, zeros, fixed_arrays, rows_, (masks_, levels_))

    @jit
    def aux_pass(tab: dict[str, Any], aux: dict[str, Any], point: dict[str, Any], fixed_arrays: dict[str, Any],
                 rows_: dict[str, Any], masks_: Any) -> dict[str, Any]:
        """The derivative of the log-likelihood in the log of each scalar distributional parameter
        (forward mode; the secant steps need no second derivative)."""
        def per_pass(arrays: dict[str, Any], mask: Any) -> dict[str, Any]:
            fa = lambda a: jnp.sum(row_loglik(tab, a, point, arrays, mask))  # noqa: E731
            grad = {}
            for key in aux:
                e = {k: jnp.asarray(1.0 if k == key else 0.0, dtype=v.dtype) for k, v in aux.items()}
                grad[key] = jax.jvp(fa, (aux,), (e,))[1]  # noqa: B023
            return jax.tree.map(lambda v: v.astype(jnp.float32), grad)
        return _scan_sum(per_pass, {k: jnp.zeros((), jnp.float32) for k in aux}, fixed_arrays, rows_, masks_)

    def pop_pass(names: tuple[str, ...], tab: dict[str, Any], aux: dict[str, Any], point: dict[str, Any],
                 fixed_arrays: dict[str, Any], rows_: dict[str, Any], masks_: Any) -> Any:
        """The second derivative of the log-likelihood in each population-level scalar (forward over forward,
        one unit tangent per scalar, effects and distributional parameters held)."""
        from jax.flatten_util import ravel_pytree

        flat, unravel = ravel_pytree({k: point[k] for k in names})
        basis = jnp.eye(flat.shape[0], dtype=flat.dtype)

        def per_pass(arrays: dict[str, Any], mask: Any) -> Any:
            f = lambda v: jnp.sum(row_loglik(tab, aux, point | unravel(v), arrays, mask))  # noqa: E731
            second = lambda e: jax.jvp(lambda v: jax.jvp(f, (v,), (e,))[1], (flat,), (e,))[1]  # noqa: E731
            return jax.vmap(second)(basis).astype(jnp.float32)
        return _scan_sum(per_pass, jnp.zeros(flat.shape[0], jnp.float32), fixed_arrays, rows_, masks_)

    def host(out: Any) -> Any:
        return jax.tree.map(lambda v: np.asarray(v, dtype=float), out)

    from . import progcache

    key = progcache.key_of(model)
    named = None if key is None else (*key, obs)
    block_pass = progcache.cached("auto-block", named, block_pass)
    aux_pass = progcache.cached("auto-aux", named, aux_pass)

    # the sites' shapes by tracing alone (nothing compiled), then each at its prior's median
    shapes_of = latent_shapes(model, {k: v[:chunk] if k in obs_keys else v for k, v in data.items()})
    point = {k: on_device(v) for k, v in prior_point(shapes_of, table, design).items()}
    tab = {s: np.zeros(shape, dtype=np.float32) for s, shape in shapes.items()}
    # scalar distributional parameters (sigma, shape, phi, ...) move with the effects: at its prior median a
    # residual SD also holds the group-to-group variation, which would understate every level's information
    positive = {e.name for e in table if e.support == "positive" and e.cls == e.name}
    aux = {k: np.log(np.asarray(point[k], dtype=np.float32)) for k in positive if k in point and np.ndim(point[k]) == 0}
    fixed_dev = jax.device_put(fixed)
    info: dict[int, np.ndarray] = {}
    effects: dict[int, np.ndarray] = {}
    sds: dict[int, np.ndarray] = {}
    ses: dict[int, np.ndarray] = {}
    prev: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    def result() -> Information:
        out = dict(info)
        if aux:  # a level with one row: its effect and the residual scale are one number to the data (the quick
            # mode puts the row's whole deviation in the effect, the curvature then reads sharp where nothing is known)
            for blk in blocks:
                one_row = np.bincount(blk.g, minlength=len(blk.levels)) <= 1
                if one_row.any() and blk.number in out:
                    out[blk.number] = np.where(one_row[:, None], 0.0, out[blk.number])
        tables = {b.number: np.asarray(tab[sites[b.number]], dtype=float) for b in blocks}
        curv = dict(aux_curv)
        return Information(out, dict(effects), dict(sds), dict(ses), n, chunk, tables,
                           {k: float(v) for k, v in aux.items()}, curv)

    reach = {b.number: _reach([prior_scale(e.prior) for e in group_sds(table, b.label)], b.n_coef) for b in blocks}
    chosen, same = None, 0
    aux_last: dict[str, tuple[float, float]] = {}
    aux_prev: dict[str, tuple[float, float]] = {}  # the secant's previous point
    # each parameter's last secant curvature (for the start's mass matrix): kept from the last step that moved,
    # since a parameter that has settled (in float32) no longer gives one (Chem97's residual SD: none, and a
    # first variance 60,000 times its posterior's, which held warmup's first 100 iterations at ~800 steps each)
    aux_curv: dict[str, float] = {}
    # the passes are traced here and compiled on threads meanwhile (XLA's compiles are one core's work and
    # release the GIL; cold, the measurement of radon 0.66 -> 0.58 s, grouseticks 0.59 -> 0.50: bench_threads.py)
    if aux:
        aux_pass = compiled_behind(aux_pass, tab, aux, point, fixed_dev, stacked_rows, masks)
    if blocks:
        first_block = blocks[0].number
        block_pass = compiled_behind(block_pass, tab, aux, point, fixed_dev, stacked_rows, masks, level_of[first_block],
                                     tangents[first_block])
    names = tuple(sorted(k for k in point if population_site(k) and k not in aux))
    pop_fn = None
    if population and names and sum(int(np.size(point[k])) for k in names) <= MAX_POPULATION:
        import functools

        try:  # (only NUTS's start reads it: a failure here must not cost the decision)
            pop_fn = compiled_behind(progcache.cached("auto-pop", None if named is None else (*named, names),
                                                      jit(functools.partial(pop_pass, names))),
                                     tab, aux, point, fixed_dev, stacked_rows, masks)
        except Exception:  # noqa: BLE001
            pop_fn = None
    for sweep in range(ITERATIONS):
        moved = 0.0
        # a quick mode: Newton steps level by level, each level's estimate shrunk toward the mean of
        # the levels as the normal-normal model does (empirical Bayes), so the information is taken
        # where the effects are, not at the prior medians (a Poisson intercept prior sits at 0). One
        # term at a time (Gauss-Seidel): nested or crossed terms must not both claim the same deviations.
        for _ in range(AUX_STEPS if aux else 0):
            ga = host(aux_pass(tab, aux, point, fixed_dev, stacked_rows, masks))
            aux_prev = aux_last
            aux, aux_last = _secant_step(aux, ga, aux_last), {k: (float(aux[k]), float(ga[k])) for k in aux}
            _keep_curvature(aux_curv, aux_prev, aux_last)
        for blk in blocks:
            grad_sum, hess_sum = host(block_pass(tab, aux, point, fixed_dev, stacked_rows, masks, level_of[blk.number],
                                                 tangents[blk.number]))
            site = sites[blk.number]
            k = blk.n_coef
            # each level's gradient and k x k block of the Hessian (a row belongs to one level of a term, so
            # levels do not mix)
            levels = len(blk.levels)
            hess, g = hess_sum[:levels, :k, :k], grad_sum[:levels, :k]
            cur = tab[site].reshape(len(blk.levels), k).astype(float)
            # |curvature|: away from the mode (a non-linear curve at its starting values) the Hessian can
            # be indefinite; its magnitude still measures how sharply the data pin the effect, and
            # g / |h| steps uphill (saddle-free Newton, Dauphin et al. 2014)
            prec_b = np.abs(np.diagonal(hess, axis1=1, axis2=2)).copy()
            step = np.divide(g, prec_b, out=np.zeros_like(g), where=prec_b > 0)
            marg = prec_b.copy()  # each coefficient's precision with the level's other coefficients unknown
            if k > 1:
                # a joint Newton step per level where its block is negative definite: with correlated
                # coefficients (a slope on an uncentred covariate) coordinate steps crawl; the joint one
                # lands on the level's conditional mode at once for a Gaussian, and the marginal precision
                # 1 / (H^-1)_cc is what the moment estimate of the SD needs
                neg = -0.5 * (hess + np.swapaxes(hess, 1, 2))
                ok = np.all(np.linalg.eigvalsh(neg) > 1e-12, axis=1)
                if ok.any():
                    inv = np.linalg.inv(neg[ok])
                    step[ok] = np.einsum("jab,jb->ja", inv, g[ok])
                    marg[ok] = 1.0 / np.diagonal(inv, axis1=1, axis2=2)
            # a trust region: no level moves by more than 2 prior scales of its group SD in one step (where the
            # curvature is nearly flat, e.g. a beta-binomial far from its dispersion, g / |h| is huge and the
            # sweeps ran off to non-finite values)
            step = np.clip(step, -reach[blk.number], reach[blk.number])
            est_b = cur + step
            sd, se, means = zip(*(_moments(est_b[:, c], marg[:, c]) for c in range(k)), strict=True)
            info[blk.number], effects[blk.number] = prec_b, est_b
            sds[blk.number], ses[blk.number] = np.array(sd), np.array(se)
            sd2 = np.square(np.nan_to_num(sds[blk.number]))
            # no shrinkage on the first sweep: from a poor start the spread of the estimates is not yet
            # known, and shrinking by a too-small SD would hold the effects at zero for good
            shrink = marg * sd2 / (1.0 + marg * sd2) if sweep else np.ones_like(marg)
            new = np.array(means)[None, :] + shrink * (est_b - np.array(means)[None, :])
            tab[site] = (new[:, 0] if blk.n_coef == 1 else new).astype(np.float32)
            moved = max(moved, _moved(prev.get(blk.number), (sds[blk.number], np.array(means))))
            prev[blk.number] = (sds[blk.number], np.array(means))
        if sweep and moved < SETTLED:
            break
        if decide is not None:
            choice = decide(result())
            same = same + 1 if chosen is not None and _same_choice(choice, chosen) else 0
            chosen = choice
            if same >= STABLE_SWEEPS - 1 and moved < STABLE_MOVED:
                break
    out = result()
    if pop_fn is not None:
        try:  # (only NUTS's start reads it: a failure here must not cost the decision)
            curv = host(pop_fn(tab, aux, point, fixed_dev, stacked_rows, masks))
        except Exception:  # noqa: BLE001
            return out
        # (on the host, in ravel_pytree's order, the sorted names: JAX's unravel compiles a program per op)
        cuts = np.cumsum([int(np.size(point[k])) for k in names])[:-1]
        split = dict(zip(names, np.split(np.asarray(curv, float), cuts), strict=True))
        out = replace(out, population_curvature={k: split[k].reshape(np.shape(point[k])) for k in names},
                      population_point={k: np.asarray(point[k], float) for k in names})
    return out


#: the population-level scalars whose curvature ``measure(population=True)`` takes at most (one tangent each)
MAX_POPULATION = 512
#: latent sites of the group terms (their effects and SDs): not population-level
_GROUP_PREFIXES = ("sd_", "z_", "L_", "r_", "coef_", "rot_", "rc_")


def population_site(name: str) -> bool:
    """A population-level latent site of a generated model (intercepts, coefficients, non-linear parameters'
    coefficients, thresholds), as opposed to a group term's."""
    return not name.startswith(_GROUP_PREFIXES)


def _keep_curvature(curv: dict[str, float], prev: dict[str, tuple[float, float]],
                    last: dict[str, tuple[float, float]]) -> None:
    """Each parameter's secant curvature between its ``prev`` and ``last`` (value, gradient), into ``curv``
    where the value moved (a step that did not leaves the last one there)."""
    for k, (a0, g0) in prev.items():
        a1, g1 = last.get(k, (a0, g0))
        if abs(a1 - a0) > 1e-6 and np.isfinite((g1 - g0) / (a1 - a0)):
            curv[k] = (g1 - g0) / (a1 - a0)


def _secant_step(aux: dict[str, Any], grad: dict[str, float], last: dict[str, tuple[float, float]]
                 ) -> dict[str, np.ndarray]:
    """A quasi-Newton step on the log of each scalar distributional parameter: the curvature from the change of
    the gradient since the last step (secant), where it is negative; else a step of 0.5 uphill. At most 2. (Its
    exact second derivative, for a Student-t's nu or a negative binomial's phi, costs a compilation of about
    0.5 s through the log-gamma function; the secant needs the first derivative only.)"""
    out = {}
    for k, v in aux.items():
        a, g = float(v), float(grad[k])
        step = 0.5 * np.sign(g)
        if k in last and abs(a - last[k][0]) > 1e-6:
            h = (g - last[k][1]) / (a - last[k][0])
            if h < 0:
                step = g / -h
        out[k] = np.float32(a + np.clip(step, -2.0, 2.0))
    return out


def group_sds(table: list[Any], label: str) -> list[Any]:
    """The parameter-table entries of a group term's SDs (``sd_<label>__<coefficient>``), in table order."""
    return [e for e in table if e.cls == "sd" and e.name.startswith(f"sd_{label}__")]


def _reach(scales: list[float], k: int) -> np.ndarray:
    """The largest Newton step of a level's k coefficients: 2 prior scales of their group SDs (one per
    coefficient, or the widest for all where the table does not give one each; unbounded without any)."""
    if len(scales) == k:
        return 2.0 * np.asarray(scales, dtype=float)
    return np.full(k, 2.0 * max(scales) if scales else np.inf)


def _same_choice(a: Any, b: Any) -> bool:
    """Two Centerings choose the same levels of every term."""
    return a.levels.keys() == b.levels.keys() and all(np.array_equal(a.levels[k], b.levels[k]) for k in a.levels)


def _scan_sum(per_pass: Any, zeros: Any, fixed: dict[str, Any], rows: dict[str, Any], extra: Any) -> Any:
    """The sum over the stacked passes (leading axis of ``rows`` and of ``extra``'s arrays, e.g. the masks) of
    ``per_pass(arrays, extra)``, a pytree like ``zeros``: one pass directly, several in a scan that starts at
    ``zeros`` (the pass is traced and compiled once, in the scan's body)."""
    import jax
    import jax.numpy as jnp

    def body(acc: Any, xs: Any) -> tuple[Any, None]:
        part, extra = xs
        return jax.tree.map(jnp.add, acc, per_pass(fixed | part, extra)), None

    if jax.tree.leaves(extra)[0].shape[0] == 1:
        first, extra0 = jax.tree.map(lambda a: a[0], (rows, extra))
        return per_pass(fixed | first, extra0)
    acc, _ = jax.lax.scan(body, zeros, (rows, extra))
    return acc


#: the real-line priors that become their half (truncated at zero) versions on a positive parameter, by scipy name
_HALVES = {"normal": "norm", "cauchy": "cauchy", "student_t": "t", "laplace": "laplace", "logistic": "logistic"}


def prior_median(d: Any, support: str = "real") -> float:
    """A central value of a prior (its median, or its mean where the median has no closed form). On a
    ``positive`` parameter a real-line prior stands for its half at zero (normal(0, 1) for a sigma is a
    half-normal): the median of that, not the location 0, which is no value of a positive parameter."""
    import math

    a = d.args
    name = d.name
    if support == "positive" and name in _HALVES:
        from scipy import stats

        base = (stats.t(float(a[0]), float(a[1]), float(a[2])) if name == "student_t"
                else getattr(stats, _HALVES[name])(float(a[0]), float(a[1])))
        below = float(base.cdf(0.0))
        return float(base.ppf(below + (1.0 - below) / 2.0))
    if name in ("normal", "cauchy", "laplace", "logistic"):
        return float(a[0])
    if name == "student_t":
        return float(a[1])
    if name == "half_normal":
        return 0.6745 * float(a[0])
    if name == "half_cauchy":
        return float(a[0])
    if name == "exponential":
        return math.log(2.0) / float(a[0])
    if name == "gamma":
        return float(a[0]) / float(a[1])
    if name == "inv_gamma":
        return float(a[1]) / (float(a[0]) - 1.0) if a[0] > 1 else float(a[1]) / float(a[0])
    if name == "lognormal":
        return math.exp(float(a[0]))
    if name == "weibull":
        return float(a[0]) * math.log(2.0) ** (1.0 / float(a[1]))
    if name == "beta":
        return float(a[0]) / (float(a[0]) + float(a[1]))
    if name == "uniform":
        return (float(a[0]) + float(a[1])) / 2.0
    return 0.0


def prior_scale(d: Any) -> float:
    """The scale of a prior (its SD-like argument; 1 where it has none): the data's own units, since the
    default priors are scaled by the data (normal(mean, 2.5 sd(y)), half_normal(2.5 sd(y)), ...)."""
    a, name = d.args, d.name
    if name in ("normal", "cauchy", "laplace", "logistic"):
        return abs(float(a[1]))
    if name == "student_t":
        return abs(float(a[2]))
    if name in ("half_normal", "half_cauchy"):
        return abs(float(a[0]))
    if name == "exponential":
        return 1.0 / abs(float(a[0]))
    if name == "uniform":
        return abs(float(a[1]) - float(a[0])) / 4.0
    return 1.0


def population_priors(shapes: dict[str, Any], table: list[Any]) -> dict[str, list[Any]]:
    """Per population-level latent site of real support (an intercept, sampled as ``Intercept_c`` at the
    predictors' means, a vector of coefficients ``b``, a non-linear parameter's), the parameter table's entries
    of its elements, in order (one entry for a scalar site)."""
    by_name = {e.name: e for e in table}
    b_sites = sorted((k for k in shapes if k == "b" or k.startswith("b_")), key=len, reverse=True)
    out: dict[str, list[Any]] = {}
    for site in shapes:
        if site.startswith(("sd_", "z_", "L_")):
            continue
        if site in by_name:
            if by_name[site].support == "real":
                out[site] = [by_name[site]]
        elif site.startswith("Intercept_c") and ("Intercept" + site[len("Intercept_c"):]) in by_name:
            out[site] = [by_name["Intercept" + site[len("Intercept_c"):]]]
        elif site in b_sites:
            out[site] = [e for e in table if e.cls == "b" and e.name.startswith(site + "_")
                         and next(b for b in b_sites if e.name.startswith(b + "_")) == site]
    return out


#: priors whose scale argument bounds a coefficient's plausible spread (``prior_scale``'s other cases are SDs'
#: and distributional parameters' priors, or none)
_LOCATION_SCALE = ("normal", "cauchy", "laplace", "logistic", "student_t")


def population_prior_sd(shapes: dict[str, Any], table: list[Any]) -> dict[str, np.ndarray]:
    """Per population-level site, each element's prior scale (see ``population_priors``), where every element's
    prior is a location-scale one; other sites are left out."""
    out = {}
    for site, entries in population_priors(shapes, table).items():
        if entries and all(e.prior.name in _LOCATION_SCALE for e in entries):
            scales = [prior_scale(e.prior) for e in entries]
            out[site] = np.asarray(scales if len(scales) > 1 else scales[0], dtype=float)
    return out


def step_units(shapes: dict[str, Any], table: list[Any], positive: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Per latent site (broadcastable to its shape), the unit of its unconstrained value in which SVI's Adam
    takes its steps: the data's scale d (the prior's scale / 2.5) where it exceeds 1, 1 for d in [0.1, 1]
    (the scales Adam's default rate suits), 10 d below (continuous). Adam moves a
    parameter by about the learning rate per step in its raw units, so a coefficient of 33,000 (a salary in
    dollars) would need millions of steps, and a convergence test at a small rate cannot tell its slow travel
    from rest, while on data in thousandths each step jumps over the answer; in these units it is one course
    for every scale of data. Positive sites (SDs, sigma) live on
    the log scale (1); offsets z and correlation factors are unit-free (1); centered group coefficients take
    their SD prior's scale, population coefficients their own prior's (one per element of a vector site)."""
    def one(e: Any) -> float:
        d = prior_scale(e.prior) / 2.5  # the data's scale
        return d if d > 1.0 else (1.0 if d >= 0.1 else 10.0 * d)  # continuous; 1 over the decade below 1

    def unit(entries: list[Any], size: int) -> np.ndarray:
        vals = [one(e) for e in entries]
        if len(vals) == size and size > 1:
            return np.asarray(vals, dtype=np.float32)
        return np.asarray(max(vals, default=1.0), dtype=np.float32)

    population = population_priors(shapes, table)
    out: dict[str, np.ndarray] = {}
    for site, sds in shapes.items():
        shape = tuple(sds.shape)
        size = int(np.prod(shape)) if shape else 1
        if site in positive or site.startswith(("sd_", "z_", "L_")):
            continue
        if site in population:
            out[site] = unit(population[site], size if len(population[site]) > 1 else 1)
        elif site.startswith(("coef_", "rc_", "rot_")):
            label = site.split("_", 1)[1]
            k = shape[-1] if len(shape) == 2 else 1
            mine = group_sds(table, label)
            out[site] = unit(mine, k)
    return {k: v for k, v in out.items() if np.any(v != 1.0)}


def prior_point(shapes: dict[str, Any], table: list[Any], design: Any) -> dict[str, np.ndarray]:
    """Every latent site at a central value of its prior: intercepts and distributional parameters at
    the (data-centred) prior medians, coefficients at 0, SDs at their prior medians, correlation
    factors at the identity, standard-normal offsets at 0, ordered thresholds evenly spread."""
    by_name = {e.name: e for e in table}
    out: dict[str, np.ndarray] = {}
    for site, sds in shapes.items():
        shape = tuple(sds.shape)
        if site in by_name:
            out[site] = np.full(shape, prior_median(by_name[site].prior, by_name[site].support), dtype=np.float32)
        elif site.startswith("Intercept_c") and ("Intercept" + site[len("Intercept_c"):]) in by_name:
            out[site] = np.full(shape, prior_median(by_name["Intercept" + site[len("Intercept_c"):]].prior), np.float32)
        elif site.startswith("L_") and len(shape) == 2:
            out[site] = np.eye(shape[0], dtype=np.float32)
        elif site == "Intercept" and len(shape) == 1:  # ordinal thresholds: increasing
            out[site] = np.linspace(-1.0, 1.0, shape[0]).astype(np.float32)
        elif site.startswith("sd_"):  # one SD per coefficient, named sd_<g>__<coef> in the table
            entries = group_sds(table, site[len("sd_"):])
            size = int(np.prod(shape)) if shape else 1
            vals = [prior_median(e.prior, "positive") for e in entries] if len(entries) == size else [1.0] * size
            out[site] = np.asarray(vals, dtype=np.float32).reshape(shape)
        elif site in ("sigma", "shape", "phi", "nu") or getattr(by_name.get(site), "support", "") == "positive":
            out[site] = np.ones(shape, dtype=np.float32)  # pragma: no cover - positive sites are in the table
        else:  # coefficient vectors, z, r, coefficient tables: 0
            out[site] = np.zeros(shape, dtype=np.float32)
    return out


def _moved(before: tuple[np.ndarray, np.ndarray] | None, after: tuple[np.ndarray, np.ndarray]) -> float:
    """How far a term's SDs (relative) and means (in SDs) moved in one sweep; inf on the first."""
    if before is None:
        return float("inf")
    sd0, m0 = before
    sd1, m1 = after
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.abs(sd1 - sd0) / np.maximum(sd0, 1e-12)
        shift = np.abs(m1 - m0) / np.maximum(sd1, 1e-12)
    out = np.nan_to_num(np.concatenate([rel, shift]), nan=np.inf)
    return float(out.max()) if out.size else 0.0


def _pad(a: np.ndarray, size: int) -> np.ndarray:
    if a.shape[0] == size:
        return a
    return np.concatenate([a, np.repeat(a[-1:], size - a.shape[0], axis=0)], axis=0)


def _moments(est: np.ndarray, info: np.ndarray) -> tuple[float, float, float]:
    """DerSimonian-Laird estimate of the SD of level effects from estimates with variances 1/I, the
    standard error of its log from the normal-normal model's Fisher information, and their mean."""
    ok = np.isfinite(est) & (info > 0)
    if ok.sum() < 2:
        return float("nan"), float("inf"), 0.0
    w = info[ok]
    x = est[ok]
    mean = np.sum(w * x) / np.sum(w)
    q = np.sum(w * (x - mean) ** 2)
    denom = np.sum(w) - np.sum(w**2) / np.sum(w)
    tau2 = max((q - (ok.sum() - 1)) / denom, 0.0) if denom > 0 else 0.0
    # a floor: a moment estimate of 0 says "small", not "exactly zero" (1% of the spread of the estimates)
    tau2 = max(tau2, (0.01 * np.std(x)) ** 2, 1e-12)
    kappa = info[ok] * tau2 / (1.0 + info[ok] * tau2)
    se = 1.0 / np.sqrt(2.0 * np.sum(kappa**2) + 1e-12)
    return float(np.sqrt(tau2)), float(se), float(mean)
