#!/usr/bin/env python
"""Where does the generated model's log-density gradient spend its time?

Times one gradient of the generated model, of the hand-written model from
bench_core.py, and of the generated source with its group-level term
rewritten in a few ways (the rewrites are text substitutions on ``cm.code``,
for diagnosis only). Each gradient runs 5000 times in one jitted
``fori_loop`` on one CPU device. The models are timed in turn, 30 rounds, and
the median is reported, which holds up better than the minimum on a loaded
machine. The number of ``dot`` and ``fusion`` ops in the compiled value-and-
gradient is printed too.

    python benchmarks/grad_variants.py [--datasets radon sleepstudy] [--rounds 30]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_core as bc  # noqa: E402

DOT = "(z_1 @ L_1.T) * sd_1"
NO_DOT = "(z_1[:, None, :] * L_1[None, :, :]).sum(-1) * sd_1"
ROWS = "jnp.sum(r_1[g_1] * Z_1, axis=-1)"
COLS = "r_1[g_1, 0] * Z_1[:, 0] + r_1[g_1, 1] * Z_1[:, 1]"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=list(bc.DATASETS), choices=list(bc.DATASETS))
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--evals", type=int, default=5000)
    p.add_argument("--out", type=Path, default=bc.HERE / "results" / "grad_variants.json")
    a = p.parse_args(argv)

    import jax
    from numpyro.infer.util import initialize_model

    import hbm_formula as hf

    bc._import_numpyro()
    bc._quiet_warnings()
    out = {}
    for name in a.datasets:
        ds = bc.DATASETS[name]
        df = bc.load_df(name)
        cm = hf.compile(ds["formula"], df)
        code = cm.code
        if DOT not in code or ROWS not in code:
            raise SystemExit("the generated code changed; update the substitutions in grad_variants.py")
        sources = {
            "generated": code,
            "generated, z @ L.T as broadcast-multiply-sum": code.replace(DOT, NO_DOT),
            "generated, per-column gathers": code.replace(ROWS, COLS),
            "generated, both rewrites": code.replace(DOT, NO_DOT).replace(ROWS, COLS),
        }
        models = {}
        for label, src in sources.items():
            ns: dict = {}
            exec(compile(src, f"<{label}>", "exec"), ns)  # noqa: S102 - our own generated source
            models[label] = (ns["model"], cm.data)
        hdata, _ = bc.hand_data(name, df)
        models["hand-written"] = (bc.HAND_MODELS[name], hdata)

        fns = {}
        for label, (model, data) in models.items():
            info = initialize_model(jax.random.PRNGKey(0), model, model_kwargs=data)
            pe, p0 = info.potential_fn, info.param_info.z

            def body(_, q, pe=pe):
                g = jax.grad(pe)(q)
                return jax.tree.map(lambda x, y: x - 1e-6 * y, q, g)

            run = jax.jit(lambda q, body=body: jax.lax.fori_loop(0, a.evals, body, q))
            jax.block_until_ready(run(p0))
            hlo = jax.jit(jax.value_and_grad(pe)).lower(p0).compile().as_text()
            fns[label] = (run, p0, hlo.count(" dot("), hlo.count(" fusion("))
        times = {k: [] for k in fns}
        for _ in range(a.rounds):
            for label, (run, p0, _, _) in fns.items():
                t0 = time.perf_counter()
                jax.block_until_ready(run(p0))
                times[label].append(1e6 * (time.perf_counter() - t0) / a.evals)
        res = {}
        base = statistics.median(times["generated"])
        for label, ts in times.items():
            med = statistics.median(ts)
            res[label] = {"us_median": med, "us_min": min(ts), "dots": fns[label][2], "fusions": fns[label][3],
                          "vs_generated": med / base}
            print(f"{name:10s} {label:48s} dots {fns[label][2]}  fusions {fns[label][3]:3d}  "
                  f"median {med:6.2f} us  min {min(ts):6.2f} us  {med / base:5.2f}x generated", flush=True)
        out[name] = {"load_1m": os.getloadavg()[0], "results": res}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = a.out.with_name(a.out.name + ".tmp")
    tmp.write_text(json.dumps(out, indent=1))
    os.replace(tmp, a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
