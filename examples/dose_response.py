"""Hierarchical dose-response with untreated controls (drc's spinach data): LL4 per curve.

    python examples/dose_response.py

spinach: photosynthesis (SLOPE) of spinach chloroplasts under two herbicides, bentazon and
diuron, 5 curves, with dose-0 controls in every curve. drc fits it with
drm(SLOPE ~ DOSE, CURVE, fct = LL.4()): a 4-parameter log-logistic per curve. Here the
four parameters vary by curve around population values (medrc's hierarchical LL.4), with
data-driven default priors and nothing else to set. Then the ED50 of every curve and the
population's, and the relative potency of curve 1 against curve 4 (drc EDcomp).
"""

import pandas as pd
from _common import DATA, sampler_args

import hbm_formula as hf

FORMULA = """SLOPE ~ LL4(DOSE, b, c, d, e)
b ~ 1 + (1 | CURVE)
c ~ 1 + (1 | CURVE)
d ~ 1 + (1 | CURVE)
e ~ 1 + (1 | CURVE)"""

if __name__ == "__main__":
    df = pd.read_csv(DATA / "drc_spinach.csv")
    print(f"{len(df)} rows, {int((df.DOSE == 0).sum())} of them untreated controls (dose 0)")
    fit = hf.fit(FORMULA, df, seed=1, **sampler_args())
    print(fit.summary().round(3).to_string())
    print(fit.ed([10, 50, 90]).round(4).to_string())
    print(fit.ed_ratio(50, "1", "4").round(3).to_string())
    for w in fit.warnings:
        print("warning:", w)
