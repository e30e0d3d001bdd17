#!/usr/bin/env python
"""Control experiment for bench_core.py (a): is a gap in min bulk ESS between
the generated and the hand-written model a property of the model, or of the
random numbers each run happens to draw?

The generated and the hand-written models have the same log density (checked
by bench_core.py) but lay their latent variables out differently: the
generated one samples the group offsets as one (levels, 2) site ``z_<g>`` and
the SDs as one vector site, the hand-written one as two vectors ``z_a``,
``z_b`` and two scalars. NUTS draws its initial point and momenta for the
flattened vector of all latents, so the same seed gives the two models
different random streams: different, equally likely, chains.

This script adds a third model, the hand-written one with the generated
model's layout (same site names, shapes and flattening; its own arithmetic),
and runs all three on the same seeds. Min bulk ESS and step counts depend only
on the seed and the model, not on machine load, so nothing is timed. Even the
same layout does not give the same chains seed by seed (rounding differences
in the arithmetic grow along NUTS trajectories), so the comparison is between
the distributions over seeds: if the three codings of one model scatter over
the same range, a gap between two medians of a few seeds is seed noise.

    python benchmarks/layout_control.py --seeds 10 [--datasets radon sleepstudy]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_core as bc  # noqa: E402


def genlayout_model(prior):
    """The hand-written model with the generated model's latent layout (site
    names, shapes): written directly, prior numbers from the generated model."""
    numpyro, dist, jnp = bc.numpyro, bc.dist, bc.jnp

    def model(x, g, n_groups, y=None):
        x_bar = x.mean()
        intercept_c = numpyro.sample("Intercept_c", dist.Normal(*prior["Intercept"]))
        b = numpyro.sample("b", dist.Normal(*prior["b"]).expand([1]).to_event(1))
        numpyro.deterministic("Intercept", intercept_c - b[0] * x_bar)
        sd = numpyro.sample("sd_g", dist.HalfNormal(jnp.array([prior["sd_Intercept"], prior["sd_x"]])).to_event(1))
        L = numpyro.sample("L_g", dist.LKJCholesky(2, prior["lkj"]))
        z = numpyro.sample("z_g", dist.Normal(0.0, 1.0).expand([n_groups, 2]).to_event(2))
        a = sd[0] * z[:, 0]
        slope = sd[1] * (L[1, 0] * z[:, 0] + L[1, 1] * z[:, 1])
        sigma = numpyro.sample("sigma", dist.Exponential(prior["sigma_rate"]))
        mu = intercept_c + b[0] * (x - x_bar) + a[g] + slope[g] * x
        with numpyro.plate("obs", x.shape[0]):
            numpyro.sample("y", dist.Normal(mu, sigma), obs=y)

    return model


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=["radon"], choices=list(bc.DATASETS))
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--warmup", type=int, default=1000)
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--out", type=Path, default=bc.HERE / "results" / "layout_control.json")
    a = p.parse_args(argv)

    import jax

    import hbm_formula as hf

    bc._import_numpyro()
    bc._quiet_warnings()
    jax.config.update("jax_compilation_cache_dir", tempfile.mkdtemp(prefix="hbm_bench_layout_"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    clock = bc.CompileClock()
    out = {}
    for name in a.datasets:
        ds = bc.DATASETS[name]
        df = bc.load_df(name)
        cm = hf.compile(ds["formula"], df)
        prior = bc.priors_from_table(cm, ds)
        hdata, hlevels = bc.hand_data(name, df)
        assert [str(v) for v in cm.coords[ds["g"]]] == hlevels, "level order differs: layouts would not match"
        xa, ga, n, ya = hdata.values()
        gl_data = {"x": xa, "g": ga, "n_groups": n, "y": ya}
        models = {
            "generated": (cm.model, cm.data, lambda s: bc.main_params_generated(s, ds)),
            "hand-written": (bc.HAND_MODELS[name], hdata, lambda s: bc.main_params_hand(s, ds)),
            "hand-written, generated layout": (
                genlayout_model(prior), gl_data, lambda s: {k: s[k] for k in ("Intercept", "b", "sd_g", "sigma")}),
        }
        runs = {k: [] for k in models}
        for seed in range(1, a.seeds + 1):
            line = []
            for label, (model, data, pick) in models.items():
                samples, t = bc.run_nuts_timed(model, data, seed, a.warmup, a.draws, clock)
                ess, worst, _ = bc.min_bulk_ess(pick(samples))
                del samples
                bc.release_executables()
                runs[label].append({"seed": seed, "min_bulk_ess": ess, "min_ess_param": worst,
                                    "steps_per_draw": t["leapfrog_steps"] / (bc.CHAINS * a.draws),
                                    "warmup_steps": t["warmup_leapfrog_steps"], "divergences": t["divergences"]})
                line.append(f"{label} {ess:5.0f} ({t['leapfrog_steps'] / (bc.CHAINS * a.draws):.1f} steps/draw)")
            print(f"{time.strftime('%H:%M:%S')} [{name}] seed {seed}: " + " | ".join(line), flush=True)
        med = {k: statistics.median(r["min_bulk_ess"] for r in rs) for k, rs in runs.items()}
        out[name] = {"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "seeds": a.seeds, "warmup": a.warmup, "draws": a.draws,
                     "runs": runs, "median_min_bulk_ess": med}
        print(f"[{name}] median min bulk ESS over {a.seeds} seeds: " + ", ".join(f"{k} {v:.0f}" for k, v in med.items()))
        # written after each dataset, merged into what earlier invocations wrote
        a.out.parent.mkdir(parents=True, exist_ok=True)
        old = json.loads(a.out.read_text()) if a.out.exists() else {}
        old.update(out)
        tmp = a.out.with_name(a.out.name + ".tmp")
        tmp.write_text(json.dumps(old, indent=1))
        os.replace(tmp, a.out)
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
