"""Dose-response curves (drc data): a 4-parameter log-logistic per herbicide.

    python examples/dose_response.py

S.alba: dry matter of white mustard under glyphosate and bentazone. As in
drc's drm(DryMatter ~ Dose, Herbicide, fct = LL.4(), pmodels = list(~Herbicide - 1,
~1, ~1, ~Herbicide - 1)): slope b and ED50 e per herbicide, common asymptotes
c (high dose) and d (control). b and e are positive (lb = 0: log scale).
"""

import numpy as np
import pandas as pd
from _common import DATA, sampler_args

import hbm_formula as hf

FORMULA = """DryMatter ~ c + (d - c) / (1 + pow(Dose / e, b))
b ~ 0 + Herbicide, lb = 0
c ~ 1
d ~ 1
e ~ 0 + Herbicide, lb = 0"""

PRIORS = {"b_b": "normal(0, 1)", "Intercept_c": "normal(0, 2)", "Intercept_d": "normal(4, 2)", "b_e": "normal(4, 2)"}

if __name__ == "__main__":
    df = pd.read_csv(DATA / "s_alba.csv")
    fit = hf.fit(FORMULA, df, priors=PRIORS, **sampler_args())
    print(fit.summary().round(3).to_string())
    post = fit.idata.posterior
    for h in ("Glyphosate", "Bentazone"):
        ed50 = np.exp(post["b_e"].sel(b_e_coef=f"Herbicide[{h}]"))
        print(f"ED50 {h}: {float(ed50.median()):.1f} (90% interval {float(ed50.quantile(0.05)):.1f}-{float(ed50.quantile(0.95)):.1f})")
