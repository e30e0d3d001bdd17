"""sleepstudy (lme4): reaction time over days of sleep deprivation, per subject.

    python examples/sleepstudy.py

lme4's REML fit for comparison: Intercept 251.4, Days 10.47, subject SDs 24.7
and 5.92, residual SD 25.6.
"""

import pandas as pd
from _common import DATA, sampler_args

import hbm_formula as hf

if __name__ == "__main__":
    df = pd.read_csv(DATA / "sleepstudy.csv")
    fit = hf.fit("Reaction ~ Days + (Days | Subject)", df, **sampler_args())
    print(fit.summary().round(3).to_string())
