"""Non-linear formulas: generated 4PL model vs a hand-written NumPyro 4PL model.

(a) ms per jitted value_and_grad of the potential energy, generated vs hand-written, at 20K/100 and 400K/3000
    (median of `repeats` timings of `calls` calls each; ratio generated / hand-written, target <= 1.05);
(b) hf.fit NUTS wall time at 20K/100, 4 chains x (500 warmup + 500 draws), min bulk ESS of population params.

    python benchmarks/bench_4pl.py [--quick] [--skip-nuts] [--nuts-warmup 500 --nuts-draws 500]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import hbm_formula as hf  # noqa: E402
from hbm_formula import infer  # noqa: E402

infer.set_host_devices()  # as hf.fit does: 4 host devices, before JAX starts

import common  # noqa: E402
import fourpl_data  # noqa: E402


def grad_compare(size: str, calls: int, repeats: int) -> dict:
    import jax
    from numpyro.infer.util import initialize_model

    df = fourpl_data.make_size(size)
    cm = hf.compile(fourpl_data.FORMULA, df)
    hand = common.make_hand_4pl(common.prior_objects(cm))
    hdata = common.hand_data(df)
    # correctness: both potentials agree at the same unconstrained point
    gi = initialize_model(jax.random.PRNGKey(1), cm.model, model_kwargs=dict(cm.data), dynamic_args=False)
    hi = initialize_model(jax.random.PRNGKey(1), hand, model_kwargs=hdata, dynamic_args=False)
    pe_gen = float(gi.potential_fn(gi.param_info.z))
    pe_hand = float(hi.potential_fn(gi.param_info.z))
    t = common.time_grads_interleaved({"gen": (cm.model, dict(cm.data)), "hand": (hand, hdata)}, calls, repeats)
    gen, hnd = t["gen"], t["hand"]
    r = {"rows": len(df), "groups": int(df.compound.nunique()), "generated_ms": gen["ms_median"],
         "hand_ms": hnd["ms_median"], "ratio": gen["ms_median"] / hnd["ms_median"],
         "generated_min_ms": gen["ms_min"], "hand_min_ms": hnd["ms_min"], "ratio_of_min": gen["ms_min"] / hnd["ms_min"],
         "generated_all": gen["ms_all"], "hand_all": hnd["ms_all"],
         "generated_compile_s": gen["compile_s"], "hand_compile_s": hnd["compile_s"],
         "potential_generated": pe_gen, "potential_hand_same_point": pe_hand}
    print(f"{size:>5} {r['rows']:>8} {r['groups']:>6}  gen {r['generated_ms']:8.3f} ms  hand {r['hand_ms']:8.3f} ms"
          f"  ratio {r['ratio']:.3f} (of min {r['ratio_of_min']:.3f})   (potential gen {pe_gen:.4f} / hand {pe_hand:.4f})", flush=True)
    return r


def nuts_run(warmup: int, draws: int, param: str = "noncentered") -> dict:

    df = fourpl_data.make_size("20k")
    t0 = time.perf_counter()
    fit = hf.fit(fourpl_data.FORMULA, df, chains=4, warmup=warmup, draws=draws, param=param, progress=False)
    wall = time.perf_counter() - t0
    post = fit.idata.posterior
    ess, rhat = common.pop_ess_rhat(post)
    ss = fit.idata.sample_stats
    out = {"param": param, "warmup": warmup, "draws": draws, "chains": 4, "wall_s": wall, "timings": fit.timings,
           "min_bulk_ess": min(ess.values()), "ess": ess, "max_rhat": max(rhat.values()),
           "divergences": int(ss["diverging"].sum()), "mean_num_steps": float(ss["n_steps"].mean()),
           "post_means": {v: float(post[v].mean()) for v in common.POP}, "warnings": fit.warnings}
    if warmup + draws < 1000:
        f = 1000 / (warmup + draws)
        out["extrapolated_sample_s_500_500"] = fit.timings["sample"] * f
    print(f"NUTS 20k/100 4x({warmup}+{draws}) param={param}: timings {({k: round(v, 2) for k, v in fit.timings.items()})}, "
          f"wall {wall:.1f}s, min bulk ESS {out['min_bulk_ess']:.0f}, max R-hat {out['max_rhat']:.3f}, "
          f"divergences {out['divergences']}, mean leapfrog steps {out['mean_num_steps']:.1f}", flush=True)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="20K only, 20 calls x 3, NUTS 4x(100+100)")
    ap.add_argument("--skip-nuts", action="store_true")
    ap.add_argument("--skip-grad", action="store_true")
    ap.add_argument("--nuts-warmup", type=int, default=500)
    ap.add_argument("--nuts-draws", type=int, default=500)
    ap.add_argument("--nuts-param", default="noncentered,auto", help="comma-separated parameterizations to run")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--out", default=None, help="results name (default bench_4pl)")
    a = ap.parse_args()
    calls, repeats = (20, 3) if a.quick else (50, 5)
    repeats = a.repeats or repeats
    res: dict = {"machine": common.machine(), "calls": calls, "repeats": repeats, "grad": {}}
    if not a.skip_grad:
        print("(a) ms per value_and_grad of the potential energy (median)")
        for size in (["20k"] if a.quick else ["20k", "400k"]):
            res["grad"][size] = grad_compare(size, calls, repeats)
    if not a.skip_nuts:
        w, d = (100, 100) if a.quick else (a.nuts_warmup, a.nuts_draws)
        res["nuts"] = {p: nuts_run(w, d, p) for p in a.nuts_param.split(",")}
    print("wrote", common.write(a.out or ("bench_4pl" + ("_quick" if a.quick else "")), res))
