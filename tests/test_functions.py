"""Every function a non-linear formula may call: value and gradient finite at the edges of its
domain (dose 0, sqrt(0), pow(0, b) with b < 1), and equal to finite differences inside it.

Each function is run through the very code the generated model uses (its jax.numpy code and the
helpers the model module defines), in double precision."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hbm_formula.functions import NL_FUNCTIONS, NL_HELPERS, NL_NEEDS


def compiled(name: str):  # noqa: ANN201
    """The function as generated code calls it: its helpers defined in a fresh module namespace."""
    fn = NL_FUNCTIONS[name]
    ns: dict[str, object] = {"jax": jax, "jnp": jnp}
    for h in (*NL_NEEDS.get(fn.helper or "", ()), fn.helper):
        if h:
            exec(NL_HELPERS[h], ns)  # noqa: S102 - our own helper source
    module = "jax.scipy.stats.norm.cdf" if fn.code == "jax.scipy.stats.norm.cdf" else None
    if module:
        return jax.scipy.stats.norm.cdf
    return eval(fn.code, ns)  # noqa: S307 - a name from our own table


# interior points (every argument inside the domain) per function, and edge points
INSIDE: dict[str, list[tuple[float, ...]]] = {
    "exp": [(0.3,), (-1.2,)], "expm1": [(0.3,)], "log": [(0.7,), (3.0,)], "log1p": [(0.4,), (-0.5,)],
    "sqrt": [(0.5,), (4.0,)], "inv_logit": [(0.2,)], "logistic": [(-1.0,)], "Phi": [(0.3,)],
    "pow": [(2.0, 0.5), (0.3, 1.7), (1.5, -0.7)], "abs": [(-0.8,), (1.1,)], "min": [(0.3, 0.9)], "max": [(0.3, 0.9)],
    "LL4": [(2.0, 1.3, 0.1, 1.9, 1.5), (0.4, -0.6, 0.1, 1.9, 1.5)],
    "LL3": [(2.0, 0.5, 1.9, 1.5)],
    "LL5": [(2.0, 1.3, 0.1, 1.9, 1.5, 0.7)],
    "W1_4": [(2.0, 1.3, 0.1, 1.9, 1.5), (0.5, -0.8, 0.1, 1.9, 1.5)],
    "W2_4": [(2.0, -1.3, 0.1, 1.9, 1.5)],
    "LN4": [(2.0, -1.3, 0.1, 1.9, 1.5)],
    "BC5": [(2.0, 1.3, 0.1, 1.9, 1.5, 0.4)],
}
# (arguments, exact value) at the edge of the domain where the function is finite
EDGES: dict[str, list[tuple[tuple[float, ...], float]]] = {
    "pow": [((0.0, 0.4), 0.0), ((0.0, 1.0), 0.0), ((0.0, 2.5), 0.0), ((0.0, 0.0), 1.0)],
    "sqrt": [((0.0,), 0.0)],
    **{m: [((0.0, 0.5, 0.1, 1.9, 1.5), 1.9), ((0.0, -0.5, 0.1, 1.9, 1.5), 0.1)] for m in ("LL4", "W1_4")},
    **{m: [((0.0, 0.5, 0.1, 1.9, 1.5), 0.1), ((0.0, -0.5, 0.1, 1.9, 1.5), 1.9)] for m in ("W2_4", "LN4")},
    "LL3": [((0.0, 0.4, 1.9, 1.5), 1.9), ((0.0, -0.4, 1.9, 1.5), 0.0)],
    "LL5": [((0.0, 0.4, 0.1, 1.9, 1.5, 0.7), 1.9), ((0.0, -0.4, 0.1, 1.9, 1.5, 0.7), 0.1)],
    "BC5": [((0.0, 0.4, 0.1, 1.9, 1.5, 0.7), 1.9)],
}


def test_every_function_has_test_points() -> None:
    assert set(INSIDE) == set(NL_FUNCTIONS)


@pytest.mark.parametrize("name", sorted(NL_FUNCTIONS))
def test_gradient_matches_finite_differences_inside_the_domain(name: str) -> None:
    with jax.enable_x64(True):
        f = compiled(name)
        for point in INSIDE[name]:
            args = [jnp.asarray(a, dtype=jnp.float64) for a in point]
            grads = jax.grad(lambda *a: f(*a), argnums=tuple(range(len(args))))(*args)
            for i, g in enumerate(grads):
                h = 1e-6 * max(1.0, abs(point[i]))
                up = [*args[:i], args[i] + h, *args[i + 1:]]
                down = [*args[:i], args[i] - h, *args[i + 1:]]
                fd = (float(f(*up)) - float(f(*down))) / (2 * h)
                assert math.isfinite(float(g)), (name, point, i)
                np.testing.assert_allclose(float(g), fd, rtol=1e-5, atol=1e-7, err_msg=f"{name}{point} argument {i}")


@pytest.mark.parametrize("name", sorted(EDGES))
def test_value_and_gradient_are_finite_at_the_edge(name: str) -> None:
    f = compiled(name)
    for point, exact in EDGES[name]:
        args = [jnp.asarray(a, dtype=jnp.float32) for a in point]
        assert float(f(*args)) == pytest.approx(exact, abs=1e-6), (name, point)
        grads = jax.grad(lambda *a: f(*a), argnums=tuple(range(len(args))))(*args)
        assert all(bool(jnp.isfinite(g)) for g in grads), (name, point, grads)


def test_log_at_zero_is_minus_infinity_with_a_finite_gradient() -> None:
    for name, edge in (("log", 0.0), ("log1p", -1.0)):
        f = compiled(name)
        assert float(f(jnp.asarray(edge))) == -np.inf
        assert bool(jnp.isfinite(jax.grad(f)(jnp.asarray(edge))))


def test_dose_models_match_their_numpy_twins() -> None:
    """The generated helpers and the numpy implementations (default priors, effective doses) agree."""
    rng = np.random.default_rng(3)
    dose = np.concatenate([[0.0, 0.0], rng.uniform(0.01, 20, 30)])
    for name, points in INSIDE.items():
        fn = NL_FUNCTIONS[name]
        if fn.helper not in {"LL4", "LL3", "LL5", "W1_4", "W2_4", "LN4", "BC5"}:
            continue
        f = compiled(name)
        for point in points:
            with jax.enable_x64(True):
                got = np.asarray(f(jnp.asarray(dose), *[jnp.asarray(a) for a in point[1:]]))
            np.testing.assert_allclose(got, fn.numpy(dose, *point[1:]), rtol=1e-10, atol=1e-12)
