"""Data-sharded likelihood on one process with 4 devices, and a two-process run
(SVI and NUTS) on 127.0.0.1 through jax.distributed (gloo collectives on CPU)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hbm_formula as hf
from hbm_formula import infer

WORKER = Path(__file__).parent / "helpers" / "distributed_worker.py"


def test_sharded_log_density_equals_unsharded(radon: pd.DataFrame) -> None:
    import jax
    import jax.numpy as jnp
    from numpyro.infer.util import log_density

    cm = hf.compile("log_radon ~ floor + (1 + floor | county)", radon)
    sharded = infer.shard_data(cm.data, cm.obs_keys)
    assert len(sharded["y"].sharding.device_set) == jax.device_count() == 4
    assert sharded["y"].shape[0] % 4 == 0  # padded; the mask zeroes the padding
    rng = np.random.default_rng(0)
    point = {"Intercept_c": jnp.array(1.3), "b": jnp.array(-0.6), "sd_county": jnp.array([0.3, 0.2]),
             "L_county": jnp.eye(2), "z_county": jnp.asarray(rng.normal(size=(85, 2))), "sigma": jnp.array(0.8)}
    plain = float(log_density(cm.model, (), cm.data, point)[0])
    split = float(jax.jit(lambda p, d: log_density(infer.with_obs_mask(cm.model), (), d, p)[0])(point, sharded))
    np.testing.assert_allclose(split, plain, rtol=1e-5)


@pytest.mark.slow  # the fast check: test_sharded_log_density_equals_unsharded
def test_sharded_nuts_and_svi_match_unsharded(radon: pd.DataFrame) -> None:
    kw = dict(chains=2, warmup=250, draws=250, seed=3, progress=False)
    plain = hf.fit("log_radon ~ floor + (1 | county)", radon, **kw)
    split = hf.fit("log_radon ~ floor + (1 | county)", radon, shard_data=True, **kw)
    for name in ("b", "sigma", "sd_county"):
        a, b = plain.idata.posterior[name], split.idata.posterior[name]
        assert abs(float(a.mean()) - float(b.mean())) < 4 * float(a.std()) / np.sqrt(125)
    assert split.idata.log_likelihood["y"].shape == (2, 250, 919)
    svi = hf.fit("log_radon ~ floor + (1 | county)", radon, method="svi", shard_data=True, lr=0.02, draws=200, progress=False)
    assert abs(float(svi.idata.posterior["b"].mean()) + 0.69) < 0.08


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # ~35 s with a warm compilation cache; minutes cold (gloo spins while the peer compiles)
def test_two_processes_form_one_run(tmp_path: Path) -> None:
    data = Path(__file__).resolve().parents[1] / "examples" / "data" / "radon.csv"
    port = str(_free_port())
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS",)}
    env["JAX_PLATFORMS"] = "cpu"
    procs = [
        subprocess.Popen([sys.executable, str(WORKER), port, str(i), str(data)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
        for i in range(2)
    ]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    assert all(o["devices"] == 2 and o["local"] == 1 for o in outs)
    # one run: both processes hold the same draws
    assert outs[0]["first_b"] == outs[1]["first_b"]
    assert abs(outs[0]["b"] + 0.69) < 0.08 and abs(outs[0]["sigma"] - 0.76) < 0.03
    # NUTS across the two processes: the same chains in both, the same posterior
    assert outs[0]["nuts_first_b"] == outs[1]["nuts_first_b"]
    assert abs(outs[0]["nuts_b"] + 0.69) < 0.05
