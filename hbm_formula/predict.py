"""Predictions from a fit: the generated model itself, run with posterior draws substituted.

What is printed is what predicts: ``fit.predict`` runs the very model of
``fit.model.code`` on the new rows, with every latent site replaced by its
posterior draws (``numpyro.handlers.substitute``) and ``predict=True``, which
makes the model record each row's linear predictors. Group effects enter the
model through their ``r_<g>`` sites; prediction replaces those tables, which is
how new levels get effects (appended rows) and how ``re_formula`` leaves terms
out (zero columns). The draws are processed in chunks of rows and draws, by one
jit-compiled, vmapped function, so 1M rows × 4000 draws never exist as one
array unless asked for.

``new_levels`` (brms semantics): ``"error"`` (default) refuses unseen levels
and names them; ``"gaussian"`` draws each new level's effects from N(0, Σ) per
posterior draw, with the fitted SDs and correlations (seeded); ``"uncertainty"``
gives each new level, in each draw, the effects of a random fitted level;
``"old_levels"`` one random fitted level per new level for all draws;
``"population"`` zero effects (lme4's ``allow.new.levels``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .design import GroupBlock, NewRows, new_rows
from .errors import DataError, HBMError, whole_number
from .lower import PREDICT_PREFIX
from .results import model_shapes

NEW_LEVELS = ("error", "gaussian", "uncertainty", "old_levels", "population")
#: rows and draws per compiled call (the last chunk is padded, so one program serves them all)
ROW_CHUNK = 65536
DRAW_CHUNK = 200


@dataclass(frozen=True)
class Request:
    kind: str
    re_keep: Mapping[int, np.ndarray] | None  # group number -> columns kept; None: every term
    new_levels: str
    seed: int


def _draw_arrays(idata: Any, ndraws: int | None, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Posterior draws flattened over chains (and a seeded subset of ``ndraws``), and their indices."""
    post = idata.posterior
    total = post.sizes["chain"] * post.sizes["draw"]
    idx = np.arange(total)
    whole_number("seed", seed, 0)
    if ndraws is not None:
        whole_number("ndraws", ndraws, 1)
        if ndraws < total:
            idx = np.sort(np.random.default_rng(seed).choice(total, ndraws, replace=False))
    out = {}
    for name, var in post.data_vars.items():
        arr = np.asarray(var.values)
        out[str(name)] = arr.reshape((total,) + arr.shape[2:])[idx]
    return out, idx


def parse_re_formula(cm: Any, re_formula: str | None) -> dict[int, np.ndarray] | None:
    """Which columns of which group terms to keep: brms's ``re_formula`` (None: all; ``~0``: none)."""
    if re_formula is None:
        return None
    text = str(re_formula).strip()
    blocks = cm.design.groups
    if text.replace(" ", "") in ("~0", "~1", "NA", "0", "~-1"):
        return {b.number: np.zeros(b.n_coef, dtype=bool) for b in blocks}
    from .parse import parse_param_formula

    _, lin = parse_param_formula(text if "~" in text else f"~ {text}")
    if lin.terms:
        raise HBMError(f"re_formula lists group terms only, e.g. '~ (1 | county)'; got {text!r}")
    keep: dict[int, np.ndarray] = {b.number: np.zeros(b.n_coef, dtype=bool) for b in blocks}
    for gt in lin.group_terms:
        matched = [b for b in blocks if b.term.group == gt.group]
        if not matched:
            known = sorted({b.term.group_label for b in blocks})
            raise HBMError(f"re_formula names grouping factor '{gt.group_label}', which the model does not have; "
                           f"its grouping factors: {', '.join(known) or 'none'}")
        wanted = [str(t) for t in gt.terms]
        for b in matched:
            for i, c in enumerate(b.coef_names):
                if (c == "Intercept" and gt.intercept) or any(c == t or c.startswith(f"{t}[") for t in wanted):
                    keep[b.number][i] = True
    return keep


def _members(design: Any, blk: GroupBlock) -> list[GroupBlock]:
    """The terms sampled with ``blk``: the members of its ID block, or itself."""
    return list(design.joint(blk.joint).members) if blk.joint is not None else [blk]


def _left_out(req: Request, members: list[GroupBlock]) -> bool:
    """re_formula leaves every one of these terms out (their new levels need no effects)."""
    return req.re_keep is not None and not any(req.re_keep[m.number].any() for m in members)


def _block_sd_L(cm: Any, draws: dict[str, np.ndarray], blk: GroupBlock) -> tuple[np.ndarray, np.ndarray | None, list[GroupBlock]]:
    """SDs (S, K) and Cholesky factor (S, K, K) or None of a term, or of the ID block holding it."""
    design = cm.design
    members = _members(design, blk)
    sds = []
    for m in members:
        sd = draws[f"sd_{m.label}"]
        sds.append(sd.reshape(sd.shape[0], -1))
    sd = np.concatenate(sds, axis=1)
    label = design.joint(blk.joint).label if blk.joint is not None else blk.label
    L = draws.get(f"L_{label}")
    return sd, L, members


def effect_tables(cm: Any, draws: dict[str, np.ndarray], rows: NewRows | None, req: Request,
                  repeats: Mapping[tuple[str, ...], np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Each group term's ``r_<g>`` draws for prediction: new levels appended, then the repeated levels of
    ``renest`` (per factor, the levels they repeat), left-out columns zeroed."""
    rng = np.random.default_rng(req.seed + 17)
    out: dict[str, np.ndarray] = {}
    new_levels = dict(rows.new_levels) if rows is not None else {}
    if req.new_levels == "error":  # one message naming every factor with new levels (not only the first)
        found = []
        for blk in cm.design.groups:
            lv = new_levels.get(blk.number, ())
            if lv and not _left_out(req, _members(cm.design, blk)):
                shown = ", ".join(lv[:10]) + (", ..." if len(lv) > 10 else "")
                found.append(f"{len(lv)} level(s) of '{blk.term.group_label}' ({shown})")
        found = list(dict.fromkeys(found))  # a factor's terms share its new levels
        if found:
            raise DataError(
                f"newdata has {'; '.join(found)} the model was not fitted with; "
                "choose new_levels='gaussian' (new effects drawn from the fitted distribution), 'uncertainty', "
                "'old_levels' or 'population' (zero effects)"
            )
    done: set[int] = set()
    for blk in cm.design.groups:
        if blk.number in done:
            continue
        members = _members(cm.design, blk)
        done.update(m.number for m in members)
        M = len(new_levels.get(blk.number, ()))
        tables = [np.asarray(draws[f"r_{m.label}"]) for m in members]
        tables = [t.reshape(t.shape[0], t.shape[1], -1) for t in tables]  # (S, J, K_m)
        S, J = tables[0].shape[:2]
        unused = _left_out(req, members)
        if M:
            # left out by re_formula: no effects needed ("error" has raised above for every other term)
            policy = "population" if unused else req.new_levels
            widths = [t.shape[2] for t in tables]
            if policy == "gaussian":
                sd, L, _ = _block_sd_L(cm, draws, blk)
                z = rng.standard_normal((S, M, sd.shape[1]))
                eff = np.einsum("sij,smj->smi", L, z) if L is not None else z
                eff = eff * sd[:, None, :]
            elif policy == "uncertainty":
                pick = rng.integers(0, J, size=(S, M))
                joint = np.concatenate(tables, axis=2)
                eff = np.take_along_axis(joint, pick[:, :, None], axis=1)
            elif policy == "old_levels":
                pick = rng.integers(0, J, size=M)
                eff = np.concatenate(tables, axis=2)[:, pick, :]
            else:  # population
                eff = np.zeros((S, M, sum(widths)))
            splits = np.cumsum(widths)[:-1]
            tables = [np.concatenate([t, e], axis=1) for t, e in zip(tables, np.split(eff, splits, axis=2), strict=True)]
        if repeats and blk.factor in repeats:
            tables = [np.concatenate([t, t[:, repeats[blk.factor]]], axis=1) for t in tables]
        for m, t in zip(members, tables, strict=True):
            if req.re_keep is not None:
                t = t * req.re_keep[m.number][None, None, :]
            out[f"r_{m.label}"] = t[:, :, 0] if m.n_coef == 1 else t
    return out


def model_data(cm: Any, rows: NewRows | None) -> dict[str, np.ndarray]:
    """The model's keyword arguments for the rows (training rows when ``rows`` is None), without y."""
    obs = cm.lowered.obs_site
    if rows is None:
        return {k: v for k, v in cm.data.items() if k != obs}
    out = {}
    for arg, src in cm.lowered.sources.items():
        if arg == obs:
            continue
        if src[0] in ("centered", "noncentered", "prior", "nested_prior"):  # (the fitted levels' own)
            out[arg] = cm.data[arg]
        elif src[0] == "Xcols":  # the population columns that do not vary by a group term
            X = np.asarray(rows.arrays[("X", src[1])])
            out[arg] = (X if len(src[2]) == X.shape[1] else X[:, list(src[2])]).astype(np.asarray(cm.data[arg]).dtype)
        elif src[0] == "Xcol":  # a single population column, as a vector
            out[arg] = np.asarray(rows.arrays[("X", src[1])])[:, src[2]].astype(np.asarray(cm.data[arg]).dtype)
        elif src[0] == "X_mean1":  # ... and its mean, a number
            out[arg] = np.asarray(rows.arrays[("X_mean", src[1])]).reshape(()).astype(np.asarray(cm.data[arg]).dtype)
        elif src[0] == "nested":  # each level of the finer factor -> its level of the coarse one (``renest``)
            out[arg] = rows.arrays[("nested", arg)]
        elif src in rows.arrays:
            out[arg] = np.asarray(rows.arrays[src]).astype(np.asarray(cm.data[arg]).dtype)
        else:  # pragma: no cover - every source is built by new_rows
            raise HBMError(f"cannot build {arg} for new data")
    return out


def renest(cm: Any, rows: NewRows | None) -> tuple[NewRows | None, dict[tuple[str, ...], np.ndarray]]:
    """New rows for a model that gathers a coarse factor's effects through a finer factor's levels
    (``lower.nested_folds``: classes within schools, from the fitted data). A row whose class sits in
    another school than the fitted data put it in (or a new class in two schools) gets a level of its own
    that repeats that class's effects, mapped to its school: predictions add the effects of both factors
    as the model does, whatever the nesting of the new rows. Returns the rows (their finer level indices
    and each fold's map, ``("nested", data argument)``, in ``arrays``) and, per finer factor, the level each
    such extra level repeats (``effect_tables`` appends their effects)."""
    folds = [(arg, src[1], src[2]) for arg, src in cm.lowered.sources.items() if src[0] == "nested"]
    if rows is None or not folds:
        return rows, {}
    blocks = {b.number: b for b in cm.design.groups}
    arrays = dict(rows.arrays)
    copies: dict[tuple[str, ...], np.ndarray] = {}
    for arg, coarse, fine in folds:
        factor = blocks[fine].factor
        fitted = np.asarray(cm.data[arg])
        g_f, g_c = np.asarray(arrays[("g", fine)]), np.asarray(arrays[("g", coarse)])
        J = len(fitted) + len(rows.new_levels.get(fine, ()))  # (a finer factor takes one coarse factor at most)
        owner = np.full(J, -1, dtype=np.int64)
        owner[:len(fitted)] = fitted
        pairs, inverse = np.unique(np.stack([g_f, g_c], axis=1), axis=0, return_inverse=True)
        index = pairs[:, 0].copy()
        repeats: list[int] = []
        extra_owner: list[int] = []
        for k, (f, c) in enumerate(pairs):
            if owner[f] < 0:  # a new level, first seen here
                owner[f] = c
            elif owner[f] != c:  # in another coarse level than fitted: a level of its own, repeating f's effects
                index[k] = J + len(extra_owner)
                repeats.append(int(f))
                extra_owner.append(int(c))
        new_g = index[np.ravel(inverse)].astype(np.int32)
        for b in cm.design.groups:
            if b.factor == factor:
                arrays[("g", b.number)] = new_g
        arrays[("nested", arg)] = np.concatenate([owner, np.asarray(extra_owner, dtype=np.int64)]).astype(fitted.dtype)
        if repeats:
            copies[factor] = np.asarray(repeats, dtype=np.int64)
    return NewRows(rows.design, rows.frame, arrays, rows.new_levels), copies


def _kinds(cm: Any) -> list[str]:
    spec = cm.spec
    out = ["response", "epred", "linpred"]
    out += [a.name for a in _family(cm).aux]
    out += [n for n, _ in spec.nlpars]
    return out


def _family(cm: Any) -> Any:
    from .families import family_spec

    return family_spec(cm.spec.family.name)


def predict_draws(cm: Any, idata: Any, newdata: Any = None, kind: str = "response", re_formula: str | None = None,
                  new_levels: str = "error", ndraws: int | None = None, seed: int = 0,
                  reduce: Any = None) -> tuple[Any, NewRows | None, np.ndarray]:
    """Draws of ``kind`` for each row: an array (draws, rows[, categories]), or, with ``reduce``
    (a function of a (draws, rows) chunk returning per-row values), the reduced rows."""
    import jax
    import jax.numpy as jnp
    from numpyro import handlers

    if kind not in _kinds(cm):
        raise HBMError(f"unknown kind '{kind}'; kinds for this model: {', '.join(_kinds(cm))}")
    if new_levels not in NEW_LEVELS:
        raise HBMError(f"unknown new_levels '{new_levels}'; choose one of {', '.join(NEW_LEVELS)}")
    rows, repeats = renest(cm, None if newdata is None else new_rows(cm.design, newdata))
    req = Request(kind, parse_re_formula(cm, re_formula), new_levels, seed)
    draws, _ = _draw_arrays(idata, ndraws, seed)
    draws = model_shapes(draws, cm.lowered.squeezed)
    draws.update(effect_tables(cm, draws, rows, req, repeats))
    data = model_data(cm, rows)
    n = rows.n if rows is not None else cm.design.n
    S = next(iter(draws.values())).shape[0]
    obs = cm.lowered.obs_site
    fam = _family(cm)
    nlnames = {nm for nm, _ in cm.spec.nlpars}
    obs_keys = [k for k in cm.obs_keys if k in data]

    def one(params: dict[str, Any], chunk: dict[str, Any], key: Any) -> Any:
        model = handlers.seed(handlers.substitute(cm.model, params), key)
        tr = handlers.trace(model).get_trace(**chunk, y=None, predict=True)
        site = tr[obs]
        nrow = next(iter(chunk[k] for k in obs_keys)).shape[0] if obs_keys else n
        if kind == "response":
            return site["value"]
        if kind == "epred":
            return site["fn"].probs if fam.kind in ("ordinal", "categorical") else site["fn"].mean
        if kind == "linpred":
            if fam.kind == "categorical":
                return jnp.stack([jnp.broadcast_to(tr[f"{PREDICT_PREFIX}mu{k}"]["value"], (nrow,))
                                  for k in range(2, len(cm.design.response.levels) + 1)], axis=-1)
            return jnp.broadcast_to(tr[f"{PREDICT_PREFIX}mu"]["value"], (nrow,))
        if kind in nlnames:
            return jnp.broadcast_to(tr[f"nlpar:{kind}"]["value"], (nrow,))
        return jnp.broadcast_to(tr[f"dpar:{kind}"]["value"], (nrow,))  # a distributional parameter

    run = jax.jit(jax.vmap(one, in_axes=(0, None, 0)))
    row_chunk = min(ROW_CHUNK, n)
    draw_chunk = min(DRAW_CHUNK, S)
    key = jax.random.PRNGKey(seed)
    results = []
    for r0 in range(0, n, row_chunk):
        r1 = min(r0 + row_chunk, n)
        chunk = {k: (_pad(v[r0:r1], row_chunk) if k in obs_keys else v) for k, v in data.items()}
        parts = []
        for s0 in range(0, S, draw_chunk):
            s1 = min(s0 + draw_chunk, S)
            p = {k: _pad(v[s0:s1], draw_chunk) for k, v in draws.items()}
            keys = jax.random.split(jax.random.fold_in(key, s0 * 1_000_003 + r0), draw_chunk)
            parts.append(np.asarray(run(p, chunk, keys))[: s1 - s0, : r1 - r0])
        block = np.concatenate(parts, axis=0)
        results.append(reduce(block) if reduce is not None else block)
    from .infer import release_compiled

    release_compiled()
    if reduce is not None:
        return pd.concat(results, ignore_index=True) if isinstance(results[0], pd.DataFrame) else np.concatenate(results), rows, np.arange(S)
    return np.concatenate(results, axis=1), rows, np.arange(S)


def _pad(a: np.ndarray, size: int) -> np.ndarray:
    a = np.asarray(a)
    if a.shape[0] == size:
        return a
    pad = np.repeat(a[-1:], size - a.shape[0], axis=0)
    return np.concatenate([a, pad], axis=0)


def summarize(block: np.ndarray, prob: float = 0.95) -> pd.DataFrame:
    """Per row: mean, sd and the central ``prob`` interval of a (draws, rows) block."""
    lo, hi = (1 - prob) / 2, (1 + prob) / 2
    q = np.quantile(block, [lo, hi], axis=0)
    return pd.DataFrame({"mean": block.mean(axis=0), "sd": block.std(axis=0, ddof=1) if block.shape[0] > 1 else 0.0,
                         f"q{100 * lo:g}": q[0], f"q{100 * hi:g}": q[1]})
