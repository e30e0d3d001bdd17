"""Minnesota radon: varying intercepts and floor slopes by county (Gelman & Hill 2007).

    python examples/radon.py
"""

import pandas as pd
from _common import DATA, sampler_args

import hbm_formula as hf

if __name__ == "__main__":
    df = pd.read_csv(DATA / "radon.csv")
    fit = hf.fit("log_radon ~ floor + (1 + floor | county)", df, **sampler_args())
    print(fit.summary().round(3).to_string())
    # county-level intercepts, named by county
    r = fit.idata.posterior["r_county"].sel(county__coef="Intercept").mean(("chain", "draw"))
    print("highest-radon counties:", ", ".join(r.sortby(r, ascending=False).county.values[:5]))
