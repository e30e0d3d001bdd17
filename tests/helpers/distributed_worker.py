"""One process of a two-process run (tests/test_distributed.py)."""

import json
import sys

import pandas as pd

import hbm_formula as hf

port, pid, data = sys.argv[1], int(sys.argv[2]), sys.argv[3]
hf.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=pid, local_devices=1)
import jax  # noqa: E402

df = pd.read_csv(data)
fit = hf.fit("log_radon ~ floor + (1 | county)", df, method="svi", shard_data=True, lr=0.02, draws=300, seed=5,
             progress=False)
nuts = hf.fit("log_radon ~ floor + (1 | county)", df, shard_data=True, chains=2, warmup=200, draws=200, seed=5,
              progress=False)
post = fit.idata.posterior
print(json.dumps({"devices": jax.device_count(), "local": jax.local_device_count(),
                  "b": float(post["b"].mean()), "sigma": float(post["sigma"].mean()),
                  "first_b": [float(v) for v in post["b"].values.ravel()[:5]], "nuts_b": float(nuts.idata.posterior["b"].mean()),
                  "nuts_first_b": [float(v) for v in nuts.idata.posterior["b"].values.ravel()[:5]]}))
