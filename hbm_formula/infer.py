"""Inference: NUTS with chains sharded over devices.

Knows nothing of formulas: takes a NumPyro model function and the arrays it
takes. Functions take an explicit seed and settings and return NumPyro's own
objects.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import HBMError

_DEVICE_FLAG = "--xla_force_host_platform_device_count"


def default_device_count() -> int:
    """Host devices to ask for on CPU: one per chain for 4 chains (measured fastest on 2 cores)."""
    env = os.environ.get("HBM_FORMULA_DEVICES")
    if env:
        return int(env)
    return max(4, os.cpu_count() or 1)


def set_host_devices(n: int | None = None) -> bool:
    """Ask XLA for ``n`` CPU devices. Only possible before JAX starts its
    backend; returns whether the request can still take effect."""
    n = n or default_device_count()
    if n < 1:
        raise HBMError(f"devices must be at least 1, got {n}")
    flags = os.environ.get("XLA_FLAGS", "")
    if "jax" in sys.modules:
        try:
            from jax._src import xla_bridge

            if xla_bridge.backends_are_initialized():
                return False
        except (ImportError, AttributeError):
            return False
    parts = [f for f in flags.split() if not f.startswith(_DEVICE_FLAG)]
    parts.append(f"{_DEVICE_FLAG}={n}")
    os.environ["XLA_FLAGS"] = " ".join(parts)
    return True


def enable_compilation_cache() -> None:
    """JAX's persistent compilation cache: a refit of the same model structure
    skips XLA compilation. ``HBM_FORMULA_CACHE=0`` turns it off."""
    import jax

    where = os.environ.get("HBM_FORMULA_CACHE")
    if where == "0":
        return
    if jax.config.jax_compilation_cache_dir:
        return  # the user configured one
    path = Path(where) if where else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hbm_formula" / "jax"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


@dataclass(frozen=True)
class NUTSConfig:
    chains: int = 4
    warmup: int = 1000
    draws: int = 1000
    seed: int = 0
    target_accept: float = 0.8
    max_tree_depth: int = 10
    chain_method: str = "auto"  # "auto" | "parallel" | "vectorized" | "sequential"
    progress: bool = True

    def check(self) -> None:
        if self.chains < 1:
            raise HBMError(f"chains must be at least 1, got {self.chains}")
        if self.draws < 1:
            raise HBMError(f"draws must be at least 1, got {self.draws}")
        if self.warmup < 0:
            raise HBMError(f"warmup must be non-negative, got {self.warmup}")
        if not 0 < self.target_accept < 1:
            raise HBMError(f"target_accept must be between 0 and 1, got {self.target_accept}")
        if self.chain_method not in ("auto", "parallel", "vectorized", "sequential"):
            raise HBMError(f"unknown chain_method '{self.chain_method}'")


def chain_method_for(chains: int, requested: str = "auto") -> str:
    """Parallel (one chain per device) where there are enough devices, else vectorized."""
    import jax

    if requested != "auto":
        if requested == "parallel" and jax.local_device_count() < chains:
            raise HBMError(
                f"chain_method='parallel' needs {chains} devices, only {jax.local_device_count()} available; "
                "set devices= (--devices) before the first fit or use 'vectorized'"
            )
        return requested
    if chains == 1:
        return "sequential"
    return "parallel" if jax.local_device_count() >= chains else "vectorized"


def run_nuts(model: Any, data: dict[str, Any], cfg: NUTSConfig, init_params: dict[str, Any] | None = None) -> Any:
    """Run NUTS; returns the ``numpyro.infer.MCMC`` object after sampling."""
    cfg.check()
    enable_compilation_cache()
    import jax
    from numpyro.infer import MCMC, NUTS

    method = chain_method_for(cfg.chains, cfg.chain_method)
    kernel = NUTS(model, target_accept_prob=cfg.target_accept, max_tree_depth=cfg.max_tree_depth)
    mcmc = MCMC(
        kernel,
        num_warmup=cfg.warmup,
        num_samples=cfg.draws,
        num_chains=cfg.chains,
        chain_method=method,
        progress_bar=cfg.progress,
    )
    mcmc.run(
        jax.random.PRNGKey(cfg.seed),
        **data,
        init_params=init_params,
        extra_fields=("diverging", "accept_prob", "num_steps", "energy", "potential_energy"),
    )
    return mcmc
