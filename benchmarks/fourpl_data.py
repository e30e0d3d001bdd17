"""Synthetic hierarchical 4-parameter-logistic (4PL) dose-response data.

G compounds x D doses; per compound bottom, top, log_ec50 and log(hill) are
drawn around the population values; resp = 4PL(log_dose) + N(0, 0.05).

    python benchmarks/fourpl_data.py [--quick]     # prints sizes/head, writes results/fourpl_data.json
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np
import pandas as pd

FORMULA = """resp ~ bottom + (top - bottom) / (1 + exp(hill * (log_ec50 - log_dose)))
bottom ~ 1 + (1 | compound)
top ~ 1 + (1 | compound)
log_ec50 ~ 1 + (1 | compound)
hill ~ 1 + (1 | compound), lb = 0"""

TRUTH = {"bottom": 0.1, "top": 1.0, "log_ec50": 0.5, "hill": 1.5}
GROUP_SD = {"bottom": 0.1, "top": 0.1, "log_ec50": 0.3, "log_hill": 0.2}
NOISE_SD = 0.05
SIZES = {"20k": (20_000, 100), "400k": (400_000, 3000)}


def make_4pl(n_rows: int, n_groups: int, seed: int = 0) -> pd.DataFrame:
    """``n_rows`` rows over ``n_groups`` compounds (doses spread evenly on [-3, 3] log units)."""
    rng = np.random.default_rng(seed)
    bottom = TRUTH["bottom"] + rng.normal(0, GROUP_SD["bottom"], n_groups)
    top = TRUTH["top"] + rng.normal(0, GROUP_SD["top"], n_groups)
    le = TRUTH["log_ec50"] + rng.normal(0, GROUP_SD["log_ec50"], n_groups)
    hill = np.exp(np.log(TRUTH["hill"]) + rng.normal(0, GROUP_SD["log_hill"], n_groups))
    g = np.arange(n_rows) % n_groups                      # ~n_rows/n_groups rows per compound
    d_per = np.bincount(g, minlength=n_groups)
    rank = np.arange(n_rows) // n_groups                   # position of the row within its compound
    cnt = d_per[g]
    pos = np.where(cnt > 1, -3 + 6 * rank / np.maximum(cnt - 1, 1), 0.0)   # doses evenly spaced on [-3, 3]
    log_dose = pos + rng.normal(0, 0.01, n_rows)
    mu = bottom[g] + (top[g] - bottom[g]) / (1 + np.exp(hill[g] * (le[g] - log_dose)))
    resp = mu + rng.normal(0, NOISE_SD, n_rows)
    df = pd.DataFrame({"compound": pd.Series([f"c{j:04d}" for j in g]), "log_dose": log_dose, "resp": resp})
    df.attrs["doses_per_group"] = float(d_per.mean())
    return df


def make_size(name: str, seed: int = 0) -> pd.DataFrame:
    return make_4pl(*SIZES[name], seed=seed)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    out = {}
    for name in (["20k"] if a.quick else list(SIZES)):
        df = make_size(name)
        out[name] = {"rows": len(df), "groups": int(df.compound.nunique()),
                     "doses_per_group": df.attrs["doses_per_group"], "resp_mean": float(df.resp.mean())}
        print(name, out[name])
    print(make_size("20k").head())
    os.makedirs(os.path.join(os.path.dirname(__file__), "results"), exist_ok=True)
    with open(os.path.join(os.path.dirname(__file__), "results", "fourpl_data.json"), "w") as f:
        json.dump({"truth": TRUTH, "group_sd": GROUP_SD, "noise_sd": NOISE_SD, "sizes": out}, f, indent=1)
