"""When NUTS cannot reach the answer, say why, naming parameters and data rows.

A log density can be finite while its gradient is not (``pow(dose / e, b)``
with a dose of 0 and b < 1: inf × 0 inside the derivative). NumPyro then
cannot find a starting point, or every transition diverges, and the
posterior it returns is silently wrong. This module evaluates the gradient
at NumPyro's own kind of starting points (uniform in (-2, 2) on the
unconstrained scale), finds which parameters have a non-finite partial
derivative and which observations cause it (one forward-mode pass over a
random direction gives each row's directional derivative), and describes
those rows by the data values they share (``DOSE = 0``).

Run only when something went wrong (no extra compilation on a healthy fit).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def gradient_report(cm: Any, tries: int = 4, seed: int = 0) -> str | None:
    """A one-paragraph cause when the gradient of the log density is not finite at starting
    points, else None (also when the search itself fails: it explains a failure, it must not become one)."""
    try:
        return _gradient_report(cm, tries, seed)
    except Exception:  # noqa: BLE001 - see above
        return None


def _gradient_report(cm: Any, tries: int, seed: int) -> str | None:
    import jax
    import jax.numpy as jnp
    from numpyro import handlers
    from numpyro.infer.util import constrain_fn, potential_energy

    from .infer import latent_shapes

    data = dict(cm.data)
    obs = cm.lowered.obs_site
    # the latent sites' unconstrained shapes by an abstract trace (a prior draw can be invalid for the likelihood:
    # gamma(0.01, 0.01) draws a shape of 0 in float32, a Weibull scale of 0, and NumPyro refuses it)
    z0 = latent_shapes(cm.model, data, unconstrained=True)

    def potential(z: dict[str, Any]) -> Any:
        return potential_energy(cm.model, (), data, z)

    def row_loglik(z: dict[str, Any]) -> Any:
        params = constrain_fn(cm.model, (), data, z)
        t = handlers.trace(handlers.substitute(cm.model, params)).get_trace(**data)
        site = t[obs]
        return site["fn"].log_prob(site["value"])

    key = jax.random.PRNGKey(seed)
    grad = jax.jit(jax.grad(potential))
    for _ in range(tries):
        key, k1, k2 = jax.random.split(key, 3)
        leaves, treedef = jax.tree.flatten(z0)
        keys = jax.random.split(k1, len(leaves))
        z = jax.tree.unflatten(treedef, [jax.random.uniform(k, jnp.shape(v), minval=-2, maxval=2)
                                         for k, v in zip(keys, leaves, strict=True)])
        g = grad(z)
        bad = [k for k, v in g.items() if not bool(jnp.all(jnp.isfinite(v)))]
        if not bad:
            continue
        tleaves, tdef = jax.tree.flatten(z)
        tangent = jax.tree.unflatten(tdef, [jax.random.normal(k, jnp.shape(v))
                                            for k, v in zip(jax.random.split(k2, len(tleaves)), tleaves, strict=True)])
        _, per_row = jax.jvp(row_loglik, (z,), (tangent,))
        rows = np.flatnonzero(~np.isfinite(np.asarray(per_row)).reshape(-1))
        return _describe(cm, bad, rows)
    return None


def _describe(cm: Any, params: list[str], rows: np.ndarray) -> str:
    shown = ", ".join(params[:6]) + (", ..." if len(params) > 6 else "")
    msg = f"the gradient of the log density is not finite (parameters {shown})"
    frame = cm.design.frame
    if rows.size and frame is not None:
        shared = []
        for col in frame.columns:
            vals = frame[col].iloc[rows]
            if vals.nunique(dropna=False) == 1 and frame[col].nunique() > 1:
                shared.append(f"{col} = {vals.iloc[0]}")
        where = f" ({', '.join(shared)} in all of them)" if shared else ""
        first = ", ".join(str(int(r)) for r in rows[:5])
        msg += f" at {rows.size} of {len(frame)} rows{where}, e.g. rows {first}"
    return (
        f"{msg}: a function's derivative is infinite or undefined there (such as pow(x, b) or exp(b * log(x)) at "
        "x = 0 with b < 1, or log(0)); the drc functions (LL4, LL3, LL5, W1_4, W2_4, LN4, BC5), pow() and ^ are "
        "exact at 0, or drop or shift those rows"
    )
