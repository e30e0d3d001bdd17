"""Multi-process (multi-host) runs on JAX's own runtime.

Every process runs the same program (SPMD): call ``initialize`` first, read the
same data, then ``hf.fit(..., shard_data=True)``. The observations are split
over the devices of all processes and XLA sums the log-likelihood across them;
every process ends with the same draws. On CPU the collectives go over gloo.

    # on each of N hosts (process_id 0..N-1), before anything else uses JAX:
    import hbm_formula as hf
    hf.distributed.initialize("10.0.0.1:1234", num_processes=N, process_id=i)
    fit = hf.fit(formula, df, shard_data=True)
"""

from __future__ import annotations

from .errors import HBMError


def initialize(coordinator: str, num_processes: int, process_id: int, local_devices: int | None = None) -> None:
    """Join a JAX multi-process run (``jax.distributed.initialize``), with gloo
    collectives on CPU. ``local_devices`` sets this process's CPU device count."""
    from .infer import set_host_devices

    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise HBMError(f"process_id must be in 0..{num_processes - 1}, got {process_id}")
    if local_devices is not None:
        set_host_devices(local_devices)
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)
    except RuntimeError as exc:
        raise HBMError(f"could not join the multi-process run at {coordinator}: {exc}") from None
