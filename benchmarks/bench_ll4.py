"""The drc library's LL4 against the same curve written out, and against a hand-written NumPyro 4PL (issue 12).

Time per jitted value_and_grad of the potential energy, the three timed round-robin in one process
(medians of `repeats` rounds of `calls` calls), on the synthetic hierarchical 4PL data of
fourpl_data.py (doses exp(log_dose); every parameter varies by compound, non-centered):

  LL4         resp ~ LL4(dose, b, c, d, e); b, c, d, e ~ 1 + (1 | compound)     (the library: dose-0 safe)
  expression  resp ~ c + (d - c) / (1 + exp(b * (log_dose - log(e))))          (the user's algebra, same
              parameters: b (bounded to drc's sign) and e (lb = 0) on the log scale, as LL4 samples them)
  hand        common.make_hand_4pl: hand-written NumPyro, one gather of a (G, 4) table

    python benchmarks/bench_ll4.py [--sizes 20k,400k] [--calls 30] [--repeats 7]    # results/bench_ll4.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import hbm_formula as hf  # noqa: E402
from hbm_formula import infer  # noqa: E402

infer.set_host_devices()

import common  # noqa: E402
import fourpl_data  # noqa: E402

LL4 = "\n".join(["resp ~ LL4(dose, b, c, d, e)"] + [f"{k} ~ 1 + (1 | compound)" for k in "bcde"])
EXPRESSION = """resp ~ c + (d - c) / (1 + exp(b * (log_dose - log(e))))
b ~ 1 + (1 | compound), {bound}
c ~ 1 + (1 | compound)
d ~ 1 + (1 | compound)
e ~ 1 + (1 | compound), lb = 0"""


def run(size: str, calls: int, repeats: int) -> dict:
    df = fourpl_data.make_size(size)
    df["dose"] = np.exp(df["log_dose"])
    lib = hf.compile(LL4, df, param="noncentered")
    # the written-out curve gets the library's default priors, by name
    table = lib.priors_table()
    pri = {name: row["prior"] for name, row in table.iterrows() if not name.startswith("cor")}
    # the sign of b as LL4 chose it from the data (drc's convention: b < 0 for a rising LL curve)
    lo, hi = np.quantile(df["dose"], [0.1, 0.9])
    rising = df.loc[df.dose >= hi, "resp"].mean() > df.loc[df.dose <= lo, "resp"].mean()
    expr = hf.compile(EXPRESSION.format(bound="ub = 0" if rising else "lb = 0"), df, priors=pri, param="noncentered")
    fourpl = hf.compile(fourpl_data.FORMULA, df, param="noncentered")
    hand = common.make_hand_4pl(common.prior_objects(fourpl))
    t = common.time_grads_interleaved({"LL4": (lib.model, dict(lib.data)), "expression": (expr.model, dict(expr.data)),
                                       "hand": (hand, common.hand_data(df))}, calls, repeats)
    out = {"rows": len(df), "groups": int(df.compound.nunique()),
           **{f"{k}_ms": v["ms_median"] for k, v in t.items()},
           **{f"{k}_ms_all": v["ms_all"] for k, v in t.items()}}
    out["LL4_over_expression"] = out["LL4_ms"] / out["expression_ms"]
    out["LL4_over_hand"] = out["LL4_ms"] / out["hand_ms"]
    print(f"{size:>5}: LL4 {out['LL4_ms']:.3f} ms, expression {out['expression_ms']:.3f} ms, hand {out['hand_ms']:.3f} ms;"
          f" LL4/expression {out['LL4_over_expression']:.3f}, LL4/hand {out['LL4_over_hand']:.3f}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="20k,400k")
    ap.add_argument("--calls", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", default=os.path.join(common.RESULTS, "bench_ll4.json"))
    a = ap.parse_args()
    res = {"machine": common.machine(), "sizes": {s: run(s, a.calls, a.repeats) for s in a.sizes.split(",")}}
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
