"""cbpp (lme4): contagious bovine pleuropneumonia incidence by herd and period, binomial GLMM.

    python examples/cbpp.py

lme4's glmer fit for comparison: (Intercept) -1.40, period2 -0.99,
period3 -1.13, period4 -1.58, herd SD 0.64.
"""

import pandas as pd
from _common import DATA, sampler_args

import hbm_formula as hf

if __name__ == "__main__":
    df = pd.read_csv(DATA / "cbpp.csv")
    fit = hf.fit("cbind(incidence, size - incidence) ~ C(period) + (1 | herd)", df, family="binomial",
                 **sampler_args())
    print(fit.summary().round(3).to_string())
