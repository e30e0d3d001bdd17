"""Prediction at scale (issue 13): 1M new rows x 4000 posterior draws, time and peak memory, beside a
hand-written jnp prediction of the same quantity.

The radon model (log_radon ~ floor + (1 + floor | county)) is fitted once with the defaults (4 x 1000 draws)
and saved. Each side then runs in its own fresh process under /usr/bin/time (peak RSS), on the same 1M rows
drawn from the radon homes (floor, county):

  ours  hf.load(fit file).predict(new, kind="epred", summary=True): per row mean, sd, 2.5% and 97.5%
  hand  the posterior read from the same file; mu = Intercept + b floor + r[county, 0] + r[county, 1] floor
        in jitted jnp, 65,536 rows at a time over all 4000 draws, the same per-row summary

Both keep only the summary of each chunk, never the 1M x 4000 array (16 GB in float32).

    python benchmarks/bench_predict.py [--rows 1000000]         # results/bench_predict.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
EXAMPLES = os.path.join(os.path.dirname(HERE), "examples", "data")
FORMULA = "log_radon ~ floor + (1 + floor | county)"


def new_rows(n: int):
    import numpy as np
    import pandas as pd

    df = pd.read_csv(os.path.join(EXAMPLES, "radon.csv"))
    rng = np.random.default_rng(11)
    pick = rng.integers(0, len(df), n)
    return pd.DataFrame({"floor": df["floor"].to_numpy()[pick], "county": df["county"].to_numpy()[pick]})


def worker(kind: str, fit_path: str, n: int) -> None:
    import numpy as np

    t0 = time.perf_counter()
    new = new_rows(n)
    if kind == "ours":
        import hbm_formula as hf

        fit = hf.load(fit_path)
        t1 = time.perf_counter()
        table = fit.predict(new, kind="epred", summary=True)
        mean, q_lo = table["mean"].to_numpy(), table["q2.5"].to_numpy()
    else:
        import jax
        import jax.numpy as jnp
        import xarray as xr

        post = xr.open_dataset(fit_path, group="posterior", engine="h5netcdf")
        S = post.sizes["chain"] * post.sizes["draw"]
        icpt = jnp.asarray(post["Intercept"].values.reshape(S))
        b = jnp.asarray(post["b"].values.reshape(S, -1)[:, 0])
        r = jnp.asarray(post["r_county"].values.reshape(S, -1, 2))
        levels = [str(v) for v in post["r_county"].coords["county"].values]
        code = {lv: i for i, lv in enumerate(levels)}
        g = new["county"].map(code).to_numpy()
        x = new["floor"].to_numpy().astype(np.float32)
        t1 = time.perf_counter()

        @jax.jit
        def mu(xc, gc):
            return icpt[:, None] + b[:, None] * xc[None, :] + r[:, gc, 0] + r[:, gc, 1] * xc[None, :]

        chunk = 65536
        means, los = [], []
        for r0 in range(0, n, chunk):
            xc, gc = x[r0:r0 + chunk], g[r0:r0 + chunk]
            pad = chunk - xc.shape[0]
            if pad:
                xc, gc = np.concatenate([xc, np.repeat(xc[-1:], pad)]), np.concatenate([gc, np.repeat(gc[-1:], pad)])
            block = np.asarray(mu(xc, gc))[:, : chunk - pad]
            means.append(block.mean(axis=0))
            block.std(axis=0, ddof=1)
            q = np.quantile(block, [0.025, 0.975], axis=0)
            los.append(q[0])
        mean, q_lo = np.concatenate(means), np.concatenate(los)
    t2 = time.perf_counter()
    print("RESULT " + json.dumps({"kind": kind, "load_s": t1 - t0, "predict_s": t2 - t1, "total_s": t2 - t0,
                                  "mean_head": [float(v) for v in mean[:5]], "q_lo_head": [float(v) for v in q_lo[:5]]}),
          flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--worker", default=None)
    ap.add_argument("--fit", default=None)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "bench_predict.json"))
    a = ap.parse_args()
    if a.worker:
        worker(a.worker, a.fit, a.rows)
        return
    import common
    import pandas as pd

    import hbm_formula as hf

    tmp = tempfile.mkdtemp(prefix="hbm_predict_")
    fit_path = os.path.join(tmp, "radon.fit.nc")
    fit = hf.fit(FORMULA, pd.read_csv(os.path.join(EXAMPLES, "radon.csv")), progress=False)
    fit.save(fit_path)
    res = {"machine": common.machine(), "rows": a.rows, "draws": 4000, "runs": []}
    for _ in range(a.rounds):  # interleaved
        for kind in ("ours", "hand"):
            rss, out = common.peak_rss_cmd([sys.executable, __file__, "--worker", kind, "--fit", fit_path,
                                            "--rows", str(a.rows)])
            r = json.loads(next(ln for ln in out.splitlines() if ln.startswith("RESULT "))[7:])
            r["peak_rss_mb"] = rss
            res["runs"].append(r)
            print(f"{kind}: predict {r['predict_s']:.1f} s (load {r['load_s']:.1f} s), peak RSS {rss:.0f} MB",
                  flush=True)
    import statistics

    for kind in ("ours", "hand"):
        rs = [r for r in res["runs"] if r["kind"] == kind]
        res[kind] = {"predict_s": statistics.median(r["predict_s"] for r in rs),
                     "total_s": statistics.median(r["total_s"] for r in rs),
                     "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in rs)}
    res["ratio_predict_s"] = res["ours"]["predict_s"] / res["hand"]["predict_s"]
    ours, hand = res["runs"][0], res["runs"][1]
    res["max_abs_diff_mean_head"] = max(abs(x - y) for x, y in zip(ours["mean_head"], hand["mean_head"], strict=True))
    print(json.dumps({k: res[k] for k in ("ours", "hand", "ratio_predict_s", "max_abs_diff_mean_head")}, indent=1))
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
