"""Inference: NUTS with chains sharded over devices.

Knows nothing of formulas: takes a NumPyro model function and the arrays it
takes. Functions take an explicit seed and settings and return NumPyro's own
objects.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import HBMError, whole_number

_DEVICE_FLAG = "--xla_force_host_platform_device_count"


def default_device_count(method: str = "nuts") -> int:
    """Host devices to ask for on CPU: one per chain for 4 chains (measured fastest on 2 cores) for NUTS;
    one for SVI, whose programs run on one device (with more devices than cores, XLA runs a one-device
    program up to twice as slowly: a 4PL minibatch step took 1.4 ms on 4 devices, 0.74 ms on one)."""
    env = os.environ.get("HBM_FORMULA_DEVICES")
    if env:
        if not env.strip().isdigit() or int(env) < 1:
            raise HBMError(f"HBM_FORMULA_DEVICES must be a whole number of devices (at least 1), got {env!r}")
        return int(env)
    return 1 if method == "svi" else max(4, os.cpu_count() or 1)


def set_host_devices(n: int | None = None, method: str = "nuts") -> bool:
    """Ask XLA for ``n`` CPU devices (None: the default for ``method``, see ``default_device_count``).
    Only possible before JAX starts its backend; returns whether the request can still take effect."""
    flags = os.environ.get("XLA_FLAGS", "")
    if n is None and _DEVICE_FLAG in flags:
        return True  # already chosen (by the user, hf.distributed.initialize or an earlier call)
    n = default_device_count(method) if n is None else n
    if n < 1:
        raise HBMError(f"devices must be at least 1, got {n}")
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


#: JAX keeps the compiled programs of a process in in-memory caches, some keyed on functions that
#: stay alive, so a finished fit's programs are never freed; each holds memory maps (about 1,000
#: per fit), and at Linux's limit (vm.max_map_count, 65,530 by default) the next compilation fails
#: ("LLVM compilation error: Cannot allocate memory"), after some 60 fits in one process. Past
#: this share of the limit, the caches are cleared (the persistent cache on disk is kept).
MAP_SHARE = 0.25


def release_compiled(force: bool = False) -> bool:
    """Clear JAX's in-memory compilation caches when the process's memory maps near the OS limit
    (after a fit or a prediction; see MAP_SHARE). Returns whether it cleared them."""
    try:
        with open("/proc/self/maps", "rb") as f:
            n = sum(1 for _ in f)
        with open("/proc/sys/vm/max_map_count") as f:
            limit = int(f.read())
    except (OSError, ValueError):  # not Linux: no such limit to meet
        return False
    if not force and n < MAP_SHARE * limit:
        return False
    import gc

    import jax

    jax.clear_caches()
    gc.collect()
    return True


def cache_dir() -> Path | None:
    """The folder of hbm_formula's caches (JAX's compiled programs, and ``exported/``: traced programs), or None
    when ``HBM_FORMULA_CACHE=0``: ``$HBM_FORMULA_CACHE``, else ``$XDG_CACHE_HOME/hbm_formula/jax`` (default
    ``~/.cache/hbm_formula/jax``)."""
    where = os.environ.get("HBM_FORMULA_CACHE")
    if where == "0":
        return None
    return Path(where) if where else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hbm_formula" / "jax"


def enable_compilation_cache() -> None:
    """JAX's persistent compilation cache: a refit of the same model structure
    skips XLA compilation. ``HBM_FORMULA_CACHE=0`` turns it off."""
    import jax

    path = cache_dir()
    if path is None:
        return
    if jax.config.jax_compilation_cache_dir:
        return  # the user configured one
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return
    jax.config.update("jax_compilation_cache_dir", str(path))
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:  # else the user's (JAX reads it itself)
        # every program: with a threshold (JAX's default 1 s, ours was 0.05), a program whose compile takes about
        # that long is written by one process and not by the next, so a refit could still compile (a review)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)


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
        whole_number("chains", self.chains, 1)
        whole_number("draws", self.draws, 1)
        whole_number("warmup", self.warmup, 0)
        whole_number("seed", self.seed, 0)
        whole_number("max_tree_depth", self.max_tree_depth, 1)
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
                "call hf.set_host_devices(n) or set HBM_FORMULA_DEVICES=n (--devices n) before the first fit, "
                "or use 'vectorized'"
            )
        return requested
    if chains == 1:
        return "sequential"
    return "parallel" if jax.local_device_count() >= chains else "vectorized"


@dataclass
class NUTSRun:
    """NUTS draws: constrained samples (deterministic sites included) and sampler statistics, both
    shaped (chains, draws, ...), as NumPy arrays."""

    samples: dict[str, Any]
    extra: dict[str, Any]
    seconds: dict[str, float]
    #: leapfrog steps each chain took in warmup's iterations (the sampling's, per draw, are ``extra["num_steps"]``;
    #: NumPyro's step-size searches at the start and at the adaptation windows' ends are not counted)
    warmup_steps: Any = None


#: rows up to which a fit's programs are compiled with XLA's classic CPU fusion emitters (``jit``)
SMALL_DATA_ROWS = 1000
#: whether the fit in progress (``compiling_for``) has small data
_SMALL: contextvars.ContextVar[bool] = contextvars.ContextVar("hbm_formula_small_data", default=False)
_CLASSIC: list[dict[str, Any]] = []  # the compile option, probed once per process ({}: this XLA has none)


@contextlib.contextmanager
def compiling_for(rows: int) -> Any:
    """Within: the programs made by ``jit`` are for a fit on ``rows`` rows."""
    token = _SMALL.set(rows <= SMALL_DATA_ROWS)
    try:
        yield
    finally:
        _SMALL.reset(token)


def _threefry_rules() -> tuple[Any, Any, Any] | None:
    """JAX's table of CPU lowering rules, its threefry primitive and the unrolled rule (the other platforms'), or
    None if this JAX has them elsewhere (the swap below is then skipped: only speed is at stake)."""
    try:
        from jax._src.interpreters import mlir
        from jax._src.random import threefry2x32 as threefry

        return (mlir._platform_specific_lowerings["cpu"], threefry.threefry2x32_p,
                mlir.LoweringRuleEntry(threefry._threefry2x32_lowering_rule, True))
    except Exception:  # noqa: BLE001 - another JAX layout
        return None


@contextlib.contextmanager
def unrolled_threefry() -> Any:
    """Within: programs lowered for CPU compute JAX's threefry hash unrolled, as JAX lowers it for GPUs, instead
    of as a loop of its 5 rounds (JAX's CPU rule). Used around NUTS's programs (``run_nuts``), whose random bits
    (NumPyro's key splits, momentum draws, and the uniform and bernoulli of its multinomial choice: a few per
    leapfrog step) are a fixed handful of call sites whatever the model: the same random bits, a leapfrog step
    0.84-0.94 times as dear (medians per model), the sampler compiled about as fast
    (``benchmarks/bench_threefry.py``). The draws are mostly bit-identical too, but XLA compiles the arithmetic
    around the hash into other kernels: where a last bit moves, NUTS follows another trajectory (a Student-t
    model: 4 of 6 seeds; 28 of 29 other cases identical). ``run_nuts_sharded`` (across processes) keeps JAX's
    rule, and so do the programs whose draws come from the model (the prior and posterior predictive, SVI's
    guide): a Student-t prior predictive's gamma draws, a rejection loop full of random bits, did not finish
    compiling in 10 minutes unrolled (JAX rolls the loop on CPU for compile time). Restored on exit; a program
    lowered meanwhile by another thread of the process gets it too (the same bits, but a compile as long as above
    if its draws are such a loop)."""
    found = _threefry_rules()
    if found is None:
        yield
        return
    table, prim, entry = found
    before = table.get(prim)
    table[prim] = entry
    try:
        yield
    finally:
        if before is None:
            table.pop(prim, None)
        else:
            table[prim] = before


def compiler_options(once: bool = False) -> dict[str, Any] | None:
    """XLA's options for a fit's programs: on CPU with small data (``compiling_for``), where compiling is most
    of a cold fit's time, the classic fusion emitters, which compile faster (``bench_compile_options.py``: a
    cold default fit of radon 0.88 and of sleepstudy 0.79 of the time) for leapfrog steps 3-19% dearer on up to
    1,000 rows; at 2,000 rows the steps cost 1.4-1.6 times as much, so the newer emitters stay there. A program
    that runs ``once`` there (NUTS's start, the draws' constrained values: a millisecond's work on such data) is
    compiled without LLVM's optimizations too, in about half the time (radon's start 0.6 -> 0.3 s). None:
    XLA's defaults."""
    if not _SMALL.get():
        return None
    if not _CLASSIC:
        _CLASSIC.append(_probe_classic())
    if not _CLASSIC[0]:
        return None
    return {**_CLASSIC[0], "xla_backend_optimization_level": 0} if once else _CLASSIC[0]


def _probe_classic() -> dict[str, Any]:
    """The classic emitters' option if this XLA on this backend takes it, else {}: a tiny program compiled with it,
    once per jaxlib (the answer kept in the cache folder: even read from the compilation cache the probe cost
    50 ms of every fit)."""
    import jax
    import jaxlib
    import numpy as np

    classic = {"xla_cpu_use_fusion_emitters": False}
    if jax.default_backend() != "cpu":
        return {}
    folder = cache_dir()
    note = None if folder is None else folder / f"xla-classic-emitters-{jaxlib.__version__}"
    try:
        said = note.read_bytes() if note is not None else None
        if said in (b"yes", b"no"):
            return classic if said == b"yes" else {}
    except OSError:  # (none yet, or not a file: probed again)
        pass
    try:
        jax.jit(lambda v: v + 1, compiler_options=classic).lower(np.float32(0)).compile()
        found = classic
    except Exception:  # noqa: BLE001 - an XLA without the option (it is not a stable one): the defaults
        found = {}
    if note is not None:
        with contextlib.suppress(OSError):
            note.parent.mkdir(parents=True, exist_ok=True)
            note.write_text("yes" if found else "no")
    return found


def on_device(x: Any, sharding: Any = None) -> Any:
    """Host data onto a device (``sharding``: where) as ``jnp.asarray`` would put it (the same dtype: float32
    and int32 unless x64), without its compiled program: in JAX 0.10 ``jnp.asarray`` of a NumPy array compiles
    one ("stage") per shape and dtype, about 10 ms each even read from the compilation cache (a warm radon fit
    made 13 of them); ``jax.device_put`` compiles nothing."""
    import jax
    import numpy as np

    return jax.device_put(x if isinstance(x, jax.Array) else np.asarray(x), sharding)


def jit(fn: Any, once: bool = False, **kwargs: Any) -> Any:
    """``jax.jit`` with this fit's ``compiler_options`` (``once``: for a program run once)."""
    import jax

    return jax.jit(fn, compiler_options=compiler_options(once), **kwargs)


def compile_behind(fn: Any, *args: Any) -> Any:
    """Start compiling ``fn`` (a ``jax.jit`` function) for arguments shaped like ``args`` on a thread (it is
    lowered here, and raises here what lowering raises: tracing reads this thread's JAX settings); returns a
    function that waits for it and gives the compiled program (calls whose arguments are shaped or placed
    otherwise go to ``fn``), or ``fn`` itself if compiling failed there (it then compiles at its first call, and
    raises there what it raises).

    The thread is not a daemon: a fit left by an exception (Ctrl-C) while it compiles lets it finish before the
    interpreter exits (a daemon thread still inside XLA's compiler at exit aborted the process)."""
    import threading

    lowered = fn.lower(*args)
    done: list[Any] = []

    def work() -> None:
        with contextlib.suppress(Exception):  # (raised again at the call, as above)
            done.append(lowered.compile())

    worker = threading.Thread(target=work, name="hbm_formula-compile", daemon=False)
    worker.start()

    def ready() -> Any:
        worker.join()
        if not done:
            return fn
        compiled = done[0]

        def call(*a: Any) -> Any:
            try:
                return compiled(*a)
            except (TypeError, ValueError):  # (raised before it runs) arguments shaped or placed otherwise: fn's own
                return fn(*a)

        return call

    return ready


def compiled_behind(fn: Any, *args: Any) -> Any:
    """``fn``, compiled on a thread for arguments shaped like ``args`` from now on (``compile_behind``); its first
    call waits for that."""
    ready = compile_behind(fn, *args)
    got: list[Any] = []

    def call(*a: Any) -> Any:
        if not got:
            got.append(ready())
        return got[0](*a)

    return call


#: iterations per compiled call: progress is shown between calls, so the program itself has no host
#: callbacks (it can be written to the persistent compilation cache) and runs at full speed
CHUNK = 200
#: the model argument carrying the scale of NUTS's coordinates (``run_nuts``), never a data array's name (those
#: are identifiers the lowering writes: X, g_county, prior_b, ...)
SCALE_KEY = "_hbm_coordinate_scale"
#: the scale's bounds: the square roots of start.VAR_MIN and VAR_MAX
SCALE_MIN, SCALE_MAX = 1e-12, 1e6
EXTRA_FIELDS = ("diverging", "accept_prob", "num_steps", "energy", "potential_energy")


class Progress:
    """Progress between compiled chunks: a bar on a terminal; in a log (stderr not a terminal) one short
    line each time another tenth of the work is done, never bar redraws."""

    def __init__(self, total: int, label: str, enabled: bool, unit: str = "iterations per chain") -> None:
        import time

        self.total, self.label, self.unit, self.done = total, label, unit, 0
        self.t0 = time.perf_counter()
        self.bar = None
        self.enabled = enabled
        self.shown = 0  # tenths reported so far (log mode)
        if enabled and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=label, unit="it", leave=False)

    def update(self, n: int, phase: str) -> None:
        import time

        self.done += n
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(phase)
            self.bar.update(n)
            return
        tenths = min(10, 10 * self.done // max(self.total, 1))
        if tenths > self.shown:
            self.shown = tenths
            pct = 100 * self.done / self.total
            print(f"{self.label}: {self.done}/{self.total} {self.unit} ({pct:.0f}%, {phase}), "
                  f"{time.perf_counter() - self.t0:.1f} s", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def latent_shapes(model: Any, data: dict[str, Any], unconstrained: bool = False) -> dict[str, Any]:
    """Shapes and dtypes of the model's latent (sampled, not observed) sites, from one abstract trace
    (``jax.eval_shape``): nothing is evaluated or compiled; for a generated model kept on disk (a refit does
    not trace it for them). ``unconstrained``: on the scale NUTS samples (each site's support mapped onto the
    reals)."""
    import jax
    from numpyro import handlers
    from numpyro.distributions.transforms import biject_to

    def trace(arrays: dict[str, Any]) -> dict[str, Any]:
        tr = handlers.trace(handlers.seed(model, 0)).get_trace(**arrays)
        return {name: biject_to(site["fn"].support).inv(site["value"]) if unconstrained else site["value"]
                for name, site in tr.items() if site["type"] == "sample" and not site["is_observed"]}

    from . import progcache

    return progcache.shapes(model, data, "unconstrained" if unconstrained else "latent",
                            lambda: jax.eval_shape(trace, data))


def nuts_functions(model: Any, data: dict[str, Any]) -> tuple[dict[str, Any], Any, Any]:
    """What NUTS needs of a model, without NumPyro's ``initialize_model``: the shapes of the
    unconstrained latent sites (``latent_shapes``), the potential energy as a function of the data, and
    the map from unconstrained values to every latent and deterministic site. ``initialize_model`` traces
    the model on the concrete data to find its transforms, every op dispatched and compiled on its own
    (radon: 2.7 s of a 3.5 s call in a fresh process, before any sampling); the starting point is drawn
    by ``run_nuts`` itself."""
    from functools import partial

    from numpyro.infer.util import constrain_fn, potential_energy

    def potential_fn_gen(**arrays: Any) -> Any:
        return partial(potential_energy, model, (), arrays)

    def constrain(params: dict[str, Any], arrays: dict[str, Any]) -> dict[str, Any]:
        return constrain_fn(model, (), arrays, params, return_deterministic=True)

    return latent_shapes(model, data, unconstrained=True), potential_fn_gen, constrain


def run_nuts(
    model: Any,
    data: dict[str, Any],
    cfg: NUTSConfig,
    init_params: dict[str, Any] | None = None,
    inverse_mass_matrix: Any = None,
) -> NUTSRun:
    """``_run_nuts`` (below) with NUTS's random bits lowered without JAX's rolled loop (``unrolled_threefry``)."""
    with unrolled_threefry():
        return _run_nuts(model, data, cfg, init_params, inverse_mass_matrix)


def _run_nuts(
    model: Any,
    data: dict[str, Any],
    cfg: NUTSConfig,
    init_params: dict[str, Any] | None = None,
    inverse_mass_matrix: Any = None,
) -> NUTSRun:
    """NUTS with warmup (step size and diagonal mass matrix adaptation, as NumPyro's ``MCMC``), run in
    compiled chunks of ``CHUNK`` iterations: one chain per device when there are enough devices
    (``shard_map``), else vectorized. The data are arguments of the compiled program, never constants, so
    a refit of the same model structure on other data of the same shapes reuses the compiled code.

    A generated model (``progcache.key_of``) has its traced programs (start, chunk, constrain) kept on disk
    (``progcache``): a refit reads them instead of tracing the model again.
    ``init_params`` (unconstrained, one row per chain) and the first diagonal ``inverse_mass_matrix`` (per
    latent site, shaped like one chain's values; the identity when not given) come from ``init="pilot"`` or
    ``init="svi"``; the matrix is an argument of the start program, so either start reuses the same programs.

    NUTS runs on coordinates ``u = z / scale``, ``scale`` the square root of that first matrix (1 where none
    is given): the same sampler as the diagonal matrix itself, up to NumPyro's regularization of each
    adapted variance towards 1e-3 (``(n / (n + 5)) var + 1e-3 * 5 / (n + 5)``, as Stan), which in the raw
    coordinates swamped any posterior variance far below 1e-3: a coefficient of a predictor in units of 10,000
    (posterior SD 4e-6) took every draw to the maximum tree depth (1,023 steps per draw, 17 times the time).
    The scale is an argument of the programs, like the data."""
    import time

    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    from . import progcache

    cfg.check()
    enable_compilation_cache()
    t0 = time.perf_counter()
    method = chain_method_for(cfg.chains, cfg.chain_method)
    C = cfg.chains
    key = progcache.key_of(model)
    if key is not None:
        key = (*key, "nuts-flat", method, C, cfg.warmup, cfg.target_accept, cfg.max_tree_depth, CHUNK)

    # each chain's PRNG key (raw uint32 pairs, as jax.random.PRNGKey's), drawn on the host from the seed: JAX's
    # splits are a program to compile (70 ms of a warm fit even read from the compilation cache)
    chain_keys = np.random.default_rng([cfg.seed, 23]).integers(0, 2 ** 32, (C, 2), dtype=np.uint32)
    parallel = method == "parallel"
    if parallel:
        mesh = Mesh(np.array(jax.local_devices()[:C]), ("chain",))
        per_chain, shared = NamedSharding(mesh, P("chain")), NamedSharding(mesh, P())
    else:
        per_chain = shared = None

    def batched(f: Any, chained: tuple[bool, ...], once: bool = False) -> Any:
        """``f`` of one chain, run for every chain: one per device (as pmap: the leading axis is the
        devices'), else vectorized on one."""
        if not parallel:
            return jit(jax.vmap(f, in_axes=tuple(0 if c else None for c in chained)), once=once)

        def one(*args: Any) -> Any:
            args = tuple(jax.tree.map(lambda v: v[0], a) if c else a for a, c in zip(args, chained, strict=True))
            return jax.tree.map(lambda v: v[None], f(*args))

        return jit(jax.shard_map(one, mesh=mesh, in_specs=tuple(P("chain") if c else P() for c in chained),
                                     out_specs=P("chain"), check_vma=False), once=once)

    def like(tree: Any, sharding: Any) -> Any:
        return jax.tree.map(lambda v: jax.ShapeDtypeStruct(np.shape(v), v.dtype, sharding=sharding), tree)

    arrays = {k: on_device(v, shared) for k, v in data.items()}
    arrays_like = like(arrays, shared)
    total = cfg.warmup + cfg.draws
    traced: dict[str, Any] = {}
    started: list[bool] = []  # the init kernel traced in this process

    def kernel() -> Any:
        """NumPyro's NUTS around the model, traced only when a program is not read from disk."""
        if not traced:
            from numpyro.infer.hmc import hmc

            shapes, potential_fn_gen, constrain = nuts_functions(model, data)

            @jax.jit
            def potential(u: Any, arrays: dict[str, Any], scale: Any) -> Any:
                # one jitted function: the start's and the chunk's traces of NumPyro's kernel reuse its trace and
                # its derivative's (the model is traced once, not once per program; a cold sleepstudy fit: the
                # chunk's trace 0.14 -> 0.08 s, the start's lowering 0.11 -> 0.08 s; XLA inlines it, the
                # leapfrog step costs the same)
                return potential_fn_gen(**arrays)(jax.tree.map(jnp.multiply, unravel(u), scale))

            def scaled_gen(**arrays: Any) -> Any:
                """The potential of u = z / scale (the scale rides with the data), u one flat vector."""
                arrays = dict(arrays)
                scale = arrays.pop(SCALE_KEY)
                return lambda u: potential(u, arrays, scale)

            init_kernel, sample_kernel = hmc(potential_fn_gen=scaled_gen, algo="NUTS")
            traced.update(shapes=shapes, constrain=constrain, init=init_kernel, sample=sample_kernel)
        return traced

    def unravel(u: Any) -> Any:
        """One chain's flat vector (NUTS's state) as its sites, in the order of their leaves (as the mass
        matrix is flat): NumPyro's kernel then updates one array per step, not one per site (radon's six
        sites: a leapfrog step 1.2-1.5 times cheaper; the step's small ops, not the gradient, are most of
        its cost on small data)."""
        leaves, tree = jax.tree.flatten(z_like)
        parts, at = [], 0
        for leaf in leaves:
            n = int(np.prod(leaf.shape[1:]))
            parts.append(u[at:at + n].reshape(leaf.shape[1:]))
            at += n
        return jax.tree.unflatten(tree, parts)

    def init_one(z: Any, rng: Any, arrays: dict[str, Any], inverse_mass: Any, scale: Any) -> Any:
        started.append(True)
        z = jnp.concatenate([jnp.ravel(v) for v in jax.tree.leaves(z)])
        return kernel()["init"](z, cfg.warmup, inverse_mass_matrix=inverse_mass,
                                target_accept_prob=cfg.target_accept, max_tree_depth=cfg.max_tree_depth,
                                trajectory_length=None, model_kwargs=arrays | {SCALE_KEY: scale}, rng_key=rng)

    def chunk_one(state: Any, arrays: dict[str, Any], scale: Any) -> tuple[Any, Any]:
        sample_kernel = kernel()["sample"]
        if not started:
            # NumPyro's sample kernel reads settings its init kernel stores (tree depth, adaptation): with the start
            # program read from disk, trace the init kernel once, abstractly, for them
            one_chain = jax.tree.map(lambda v: jax.ShapeDtypeStruct(v.shape[1:], v.dtype), (z_like, keys_like))
            jax.eval_shape(init_one, *one_chain, arrays, mass_like, scale)

        def body(st: Any, _: Any) -> tuple[Any, Any]:
            st = sample_kernel(st, model_kwargs=arrays | {SCALE_KEY: scale})
            return st, (st.z, st.diverging, st.accept_prob, st.num_steps, st.energy, st.potential_energy)

        return jax.lax.scan(body, state, None, length=CHUNK)

    # the start's shapes: from the exported start program when there is one (no trace), else the model's
    init_path = progcache.file_for("nuts-init", key, arrays_like, parallel) if key is not None else None
    keys_like = jax.ShapeDtypeStruct(chain_keys.shape, chain_keys.dtype, sharding=per_chain)
    stored = progcache.load(init_path)
    if stored is not None and not progcache.fits(stored, (None, keys_like, arrays_like, None, None), prefix=1, upto=3):
        stored = None  # another program under this name (a swapped or stale file): traced again
    if stored is not None:
        z_tree = stored.in_tree.children()[0].children()[0]
        z_like = jax.tree.unflatten(z_tree, [jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=per_chain)
                                             for a in stored.in_avals[:z_tree.num_leaves]])
    else:
        z_like = like(jax.tree.map(lambda v: jax.ShapeDtypeStruct((C, *v.shape), v.dtype), kernel()["shapes"]),
                      per_chain)
    size = sum(int(np.prod(v.shape[1:])) for v in jax.tree.leaves(z_like))
    dtype = jax.tree.leaves(z_like)[0].dtype
    mass_like = jax.ShapeDtypeStruct((size,), dtype, sharding=shared)
    # the first inverse mass matrix in z's coordinates (per site), the scale of u = z / scale, and the matrix in
    # u's coordinates, flat in the order of the sites' leaves (as NumPyro ravels z)
    first = jax.tree.map(lambda v, m: np.broadcast_to(np.asarray(m, np.float64), v.shape[1:]), z_like,
                         jax.tree.map(lambda v: 1.0, z_like) if inverse_mass_matrix is None else inverse_mass_matrix)
    exact = jax.tree.map(lambda m: np.sqrt(np.clip(np.nan_to_num(m, nan=1.0, posinf=SCALE_MAX ** 2),
                                                   SCALE_MIN ** 2, SCALE_MAX ** 2)), first)
    flat_mass = np.concatenate([np.ravel(m / np.square(s))
                                for m, s in zip(jax.tree.leaves(first), jax.tree.leaves(exact), strict=True)])
    scale = jax.tree.map(lambda v, s: s.astype(v.dtype), z_like, exact)
    host_scale, scale_like = scale, like(scale, shared)
    scale = jax.device_put(scale, shared)
    # (the start program's file is named by the data's shapes alone, so that it can be found before the
    # latent shapes are known; those follow from the model's source and the data's shapes)
    init_fn = progcache.program("nuts-init", key, batched(init_one, (True, True, False, False, False), once=True),
                                (z_like, keys_like, arrays_like, mass_like, scale_like), parallel, path=init_path,
                                stored=stored, once=True)
    mass = jax.device_put(flat_mass.astype(dtype), shared)

    def uniform_start(fold: int) -> Any:
        """NumPyro's default start: uniform in (-2, 2) on the unconstrained scale, one row per chain, drawn on
        the host (a JAX draw is a program to compile: half a second for threefry on CPU) from the seed and
        ``fold``."""
        gen = np.random.default_rng([cfg.seed, fold])
        return jax.tree.map(lambda v: gen.uniform(-2.0, 2.0, v.shape).astype(v.dtype), z_like)

    if init_params is None:
        init_params = uniform_start(1)
    elif C == 1:
        init_params = jax.tree.map(lambda v: np.asarray(v)[None], init_params)
    # from the host: a device array would be sliced onto the devices by a compiled program per argument first;
    # in u's coordinates
    to_u = lambda z: jax.tree.map(lambda v, s: (np.asarray(v) / s).astype(s.dtype), z, host_scale)  # noqa: E731
    init_params = to_u(init_params)
    chain_keys = jax.device_put(chain_keys, per_chain)
    # the chunk's program is compiled on a thread while the start's is compiled and run here: XLA's compiles are
    # mostly one core's work (and release the GIL), and the chunk's (1.3 s of a cold fit) need not wait for the
    # start's (0.4 s); its arguments' shapes are the start's results' (from the start's trace, which its call
    # reuses; read from disk, the start's trace is its exported program's, not the model's)
    state_like = like(init_fn.trace(z_like, keys_like, arrays_like, mass_like, scale_like).out_info, per_chain)
    chunk_fn = progcache.program("nuts-chunk", key, batched(chunk_one, (True, False, False)),
                                 (state_like, arrays_like, scale_like), parallel)
    # (data already on devices, as shard_data's, stay where they are: their placement is the chunk's to follow)
    placed = not parallel and any(isinstance(v, jax.Array) for v in data.values())
    chunk_ready = (lambda: chunk_fn) if placed else compile_behind(chunk_fn, state_like, arrays_like, scale_like)
    state = init_fn(jax.device_put(init_params, per_chain), chain_keys, arrays, mass, scale)
    for attempt in range(20):  # like NumPyro: a starting point whose log density or gradient is not finite is redrawn
        ok = np.isfinite(np.asarray(state.potential_energy)) & np.all(
            np.stack([np.isfinite(np.asarray(v)).reshape(C, -1).all(axis=1) for v in jax.tree.leaves(state.z_grad)]),
            axis=0)
        if ok.all():
            break
        if attempt == 19:
            raise RuntimeError("Cannot find valid initial parameters: the log density or its gradient is not finite")
        fresh = to_u(uniform_start(100 + attempt))
        init_params = jax.tree.map(lambda v, f, k=ok: np.where(k.reshape((C,) + (1,) * (np.ndim(v) - 1)), v, f),
                                   init_params, fresh)
        state = init_fn(jax.device_put(init_params, per_chain), chain_keys, arrays, mass, scale)
    # the draws' constrained values: their program compiled behind too, while the chunk's is (a cold radon fit: 0.1 s
    # after sampling)
    one_device = {k: on_device(v) for k, v in data.items()} if parallel else arrays  # (all draws on one device)

    def constrain(z: Any, arrays: dict[str, Any]) -> Any:
        return jax.vmap(kernel()["constrain"], in_axes=(0, None))(z, arrays)

    flat_like = {k: jax.ShapeDtypeStruct((C * cfg.draws, *v.shape[1:]), v.dtype) for k, v in z_like.items()}
    constrain_fn = progcache.program("nuts-constrain", key, jit(constrain, once=True),
                                     (flat_like, like(one_device, None)), once=True)
    if not placed:
        constrain_fn = compiled_behind(constrain_fn, flat_like, like(one_device, None))
    chunk_fn = chunk_ready()
    t1 = time.perf_counter()
    progress = Progress(total, "NUTS", cfg.progress)
    kept: list[Any] = []
    warmup_steps = np.zeros(C, np.int64)
    done = 0
    try:
        while done < total:
            state, out = chunk_fn(state, arrays, scale)
            first = max(cfg.warmup - done, 0)  # iterations of this chunk still in warmup
            take = min(CHUNK, total - done)
            if first < take:
                kept.append(jax.tree.map(lambda a, f=first, t=take: np.asarray(a)[:, f:t], out))
            if first:  # (a chunk with warmup iterations: their step counts, read once)
                warmup_steps = warmup_steps + np.asarray(out[3])[:, :min(first, take)].sum(axis=1)
            done += CHUNK
            progress.update(take, "warmup" if done <= cfg.warmup else "sampling")
    finally:
        progress.close()
    t2 = time.perf_counter()
    u, div, acc, steps, energy, pe = jax.tree.map(lambda *parts: np.concatenate(parts, axis=1), *kept)
    leaves, tree = jax.tree.flatten(z_like)
    cuts = np.cumsum([int(np.prod(v.shape[1:])) for v in leaves])[:-1]
    zs = jax.tree.unflatten(tree, [part.reshape(part.shape[:2] + v.shape[1:])
                                   for part, v in zip(np.split(u, cuts, axis=2), leaves, strict=True)])
    flat = {k: (v * host_scale[k]).reshape((C * cfg.draws,) + v.shape[2:]) for k, v in zs.items()}  # back to z
    samples = constrain_fn(flat, one_device)
    samples = {k: np.asarray(v).reshape((C, cfg.draws) + np.shape(v)[1:]) for k, v in samples.items()}
    extra = dict(zip(EXTRA_FIELDS, (div, acc, steps, energy, pe), strict=True))
    t3 = time.perf_counter()
    return NUTSRun(samples, extra, {"init": t1 - t0, "sample": t2 - t1, "postprocess": t3 - t2}, warmup_steps)


# ---------------------------------------------------------------- SVI
GUIDES = ("normal", "lowrank", "fullrank")


@dataclass(frozen=True)
class SVIConfig:
    """Stochastic variational inference settings.

    Adam with a learning rate that steps down when progress stalls, and convergence judged on
    the parameters, not the loss: each window of ``window`` steps averages the guide's
    parameters (Polyak-Ruppert), and SVI has converged when, at the final learning rate, the
    window averages of every global parameter moved by less than ``tol`` posterior SDs (the
    guide's own scale) for two windows in a row, or when over four windows at that rate they only
    wobble at the noise floor (every move, window to window and first to last, under twice ``tol``:
    noise does not add up, a drift does). A loss criterion is fooled by slow drift along a ridge
    (the loss barely changes while the intercept walks) and by minibatch noise; this one is not.
    (The yardstick is the posterior SD or 1% of the value, whichever is wider.) The learning rate
    starts at ``lr`` and is divided by 4 each time the parameters settle at it (minibatch noise
    shrinks with it), ``decays`` times; the returned parameters are the average of the windows at the
    final rate. Stopping at ``steps`` before that is reported, with what still moved.
    """

    guide: str = "normal"
    rank: int | None = None
    steps: int | None = None  # None: 20000 (full batch), 30000 with minibatches
    lr: float = 0.02
    optimizer: str = "adam"  # "adam" | "clipped_adam"
    #: "auto": steps down by 4 whenever the parameters settle (see above); "constant": never
    schedule: str = "auto"  # "auto" | "constant"
    batch_size: int | None = None
    tol: float = 0.1  # posterior SDs a global parameter's window average may still move
    window: int = 250
    decays: int = 3
    seed: int = 0
    draws: int = 1000
    progress: bool = True
    init_scale: float = 0.1
    #: latent sites of group-level effects (z_, r_, coef_, ...): not judged one by one for convergence
    local_sites: tuple[str, ...] = ()
    #: positive sites (SDs, sigma, ...), whose guide is on the log scale
    log_sites: tuple[str, ...] = ()
    #: starting values of the latent sites (constrained), e.g. their prior medians; None: NumPyro's median init
    init_values: Any = None
    #: per latent site, the unit of Adam's steps on its guide's location, and of its starting scale
    #: (pilot.step_units), so that SVI takes the same course whatever the units of the data; applied by the
    #: mean-field guide (the low-rank and full-rank guides step in raw units; the fit warns when they differ)
    units: Any = None

    def check(self, n_obs: int | None = None) -> None:
        if self.guide not in GUIDES:
            raise HBMError(f"unknown guide '{self.guide}'; guides: {', '.join(GUIDES)}")
        if self.rank is not None:
            whole_number("rank", self.rank, 1)
            if self.guide != "lowrank":
                raise HBMError(f"rank applies to the lowrank guide, not '{self.guide}' (guide='lowrank', --guide lowrank)")
        if self.steps is not None:
            whole_number("steps", self.steps, 1)
        whole_number("window", self.window, 1)
        whole_number("draws", self.draws, 1)
        if not self.lr > 0:
            raise HBMError(f"the learning rate must be positive, got {self.lr}")
        if not self.tol > 0:
            raise HBMError(f"tol must be positive (posterior SDs), got {self.tol}")
        if self.optimizer not in ("adam", "clipped_adam"):
            raise HBMError(f"unknown optimizer '{self.optimizer}': use adam or clipped_adam")
        if self.schedule not in ("auto", "constant"):
            raise HBMError(f"unknown schedule '{self.schedule}': use auto (steps down when settled) or constant")
        if self.batch_size is not None:
            whole_number("batch_size", self.batch_size, 1)
            if n_obs is not None and self.batch_size > n_obs:
                raise HBMError(
                    f"batch_size {self.batch_size} is larger than the data ({n_obs} rows); "
                    "drop --batch-size for full-batch SVI"
                )

@dataclass
class SVIResult:
    guide: Any
    params: dict[str, Any]
    losses: Any  # numpy array, one loss per step
    steps: int
    converged: bool
    seconds: float
    #: when not converged: the global parameters that still moved, in posterior SDs per window
    moving: dict[str, float] | None = None
    batch_size: int | None = None


def _log_scale_autonormal() -> Any:
    from numpyro.distributions import constraints
    from numpyro.infer import autoguide

    class AutoNormalLogScale(autoguide.AutoNormal):
        """NumPyro's AutoNormal with each scale optimised on the log scale (exp, not softplus): Adam's steps
        on it are relative, whatever the data's units (in softplus's linear range a step of a few thousand,
        on data in dollars, overshoots a posterior SD of a few thousand to zero)."""

        scale_constraint = constraints.positive

    return AutoNormalLogScale


def make_guide(model: Any, cfg: SVIConfig) -> Any:
    from numpyro.infer import autoguide, init_to_median, init_to_value

    _AutoNormal = _log_scale_autonormal()  # noqa: N806 - a class
    # starting values given (prior medians): nothing to sample and compile for the initialisation
    init = init_to_value(values=cfg.init_values) if cfg.init_values else init_to_median(num_samples=15)
    if cfg.guide == "normal":
        return _AutoNormal(model, init_loc_fn=init, init_scale=cfg.init_scale)
    if cfg.guide == "lowrank":
        return autoguide.AutoLowRankMultivariateNormal(model, init_loc_fn=init, init_scale=cfg.init_scale, rank=cfg.rank)
    return autoguide.AutoMultivariateNormal(model, init_loc_fn=init, init_scale=cfg.init_scale)


def _optimizer(cfg: SVIConfig) -> Any:
    """Adam whose learning rate lives in its state (optax.inject_hyperparams), so the loop can lower it
    between windows without recompiling anything; each mean-field guide parameter's step is taken in its
    site's unit (``cfg.units``)."""
    import optax
    from numpyro.optim import optax_to_numpyro

    opt = optax.inject_hyperparams(optax.adam)(learning_rate=cfg.lr)
    if cfg.optimizer == "clipped_adam":
        opt = optax.chain(optax.clip_by_global_norm(10.0), opt)
    if cfg.units and cfg.guide == "normal":
        # each guide location's step in its site's unit (<site>_auto_loc); the scales live on the log scale
        per_param = {f"{site}_auto_loc": u for site, u in cfg.units.items()}

        def in_units(updates: Any, params: Any = None) -> Any:
            return {k: (u * per_param[k] if k in per_param else u) for k, u in updates.items()}

        opt = optax.chain(opt, optax.stateless(in_units))
    return optax_to_numpyro(opt)


def _set_lr(state: Any, lr: float) -> Any:
    """The SVI state with Adam's learning rate replaced (the injected hyperparameter)."""
    import jax.numpy as jnp

    def fix(node: Any) -> Any:
        if hasattr(node, "hyperparams") and "learning_rate" in node.hyperparams:
            node.hyperparams["learning_rate"] = jnp.asarray(lr, dtype=jnp.asarray(node.hyperparams["learning_rate"]).dtype)
            return True
        return False

    def walk(node: Any) -> bool:
        if fix(node):
            return True
        if isinstance(node, (tuple, list)):
            return any(walk(x) for x in node)
        return False

    walk(state.optim_state)
    return state


class scale_observed:
    """Multiply the log-likelihood of the observation site ``y`` by ``scale``
    (N / batch size, or a 0/1 mask of padded rows), leaving priors untouched.

    Only the named sites: NUTS adds its Jacobian terms as observed ``factor``
    sites, which must not be scaled."""

    def __init__(self, fn: Any, scale: Any, sites: tuple[str, ...] = ("y",)) -> None:
        from numpyro.primitives import Messenger

        outer = self

        class _Scale(Messenger):
            def process_message(self, msg: dict[str, Any]) -> None:
                if msg["type"] == "sample" and msg["name"] in sites:
                    msg["scale"] = outer.scale if msg["scale"] is None else msg["scale"] * outer.scale

        self.scale = scale
        self._handler = _Scale(fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._handler(*args, **kwargs)


def _moves(prev: dict[str, Any], cur: dict[str, Any], local: tuple[str, ...],
           log_sites: tuple[str, ...] = ()) -> dict[str, Any]:
    """How far each global parameter's window average moved (signed, per element), in units of the guide's
    scale (its posterior SD) in the later window. Mean-field names (``<site>_auto_loc`` / ``_auto_scale``;
    see ``per_site`` for the low-rank and full-rank guides)."""
    import numpy as np

    out = {}
    for k, v in cur.items():
        if k.endswith("_auto_loc"):
            site = k[: -len("_auto_loc")]
            if site in local or f"{site}_auto_scale" not in cur:
                continue
            # the yardstick: the posterior SD, or 1% of the value when that is wider (at 400K rows a
            # residual SD's posterior SD is 0.1% of it: minibatch noise never gets that small, and
            # nothing a user reads changes at that scale)
            # (a positive parameter's guide lives on the log scale, where 1% is 0.01)
            floor = 0.01 if site in log_sites else 0.01 * np.abs(np.asarray(v))
            scale = np.maximum(np.maximum(np.asarray(cur[f"{site}_auto_scale"]), floor), 1e-12)
            out[site] = (np.asarray(v) - np.asarray(prev[k])) / scale
    return out


def _drift(prev: dict[str, Any], cur: dict[str, Any], local: tuple[str, ...],
           log_sites: tuple[str, ...] = ()) -> dict[str, float]:
    """How far each global parameter's window average moved, in units of the guide's scale (its
    posterior SD): per site, the largest over its elements."""
    import numpy as np

    return {k: float(np.max(np.abs(v))) if np.size(v) else 0.0 for k, v in _moves(prev, cur, local, log_sites).items()}


def _travelling(windows: list[dict[str, Any]], cfg: SVIConfig, k: float = 3.0) -> bool:
    """Some global parameter kept going one way over these windows: it moved by more than ``k`` times ``tol``
    posterior SDs from the first to the last, and that net move is most (70%) of the path it took. Minibatch
    noise wanders back and forth; a parameter still on its way does not. Convergence is not declared while one
    travels (k = 3 over the last 8 windows at the final rate), nor the rate lowered while one travels fast (k = 10,
    a posterior SD, over the last 4 windows: a steady march reads as 'not improving' to the stall rule, and
    lowering the rate would then hide it; a slow creep, like the 4PL's residual SD while the group effects settle,
    does not hold the rate up: waiting for it cost 2,500 steps and changed no estimate)."""
    import numpy as np

    if len(windows) < 3:
        return False
    net = _moves(windows[0], windows[-1], cfg.local_sites, cfg.log_sites)
    steps = [_moves(a, b, cfg.local_sites, cfg.log_sites) for a, b in zip(windows[:-1], windows[1:], strict=True)]
    for site, d in net.items():
        path = sum(np.abs(m[site]) for m in steps)
        if np.any((np.abs(d) > k * cfg.tol) & (np.abs(d) > 0.7 * path)):
            return True
    return False


def per_site(guide: Any, params: dict[str, Any]) -> dict[str, Any]:
    """A low-rank or full-rank guide's flat location and marginal SDs as mean-field-style per-site entries
    (``<site>_auto_loc`` / ``_auto_scale``), so that convergence is judged site by site: the population
    parameters apart from the thousands of group effects beside them in one vector. Mean-field: unchanged."""
    import numpy as np

    if "auto_loc" not in params:
        return params
    loc = np.asarray(params["auto_loc"])
    if "auto_scale_tril" in params:
        sd = np.sqrt(np.sum(np.square(np.asarray(params["auto_scale_tril"])), axis=1))
    else:
        sd = np.asarray(params["auto_scale"])
        if "auto_cov_factor" in params:
            sd = np.sqrt(np.square(sd) + np.sum(np.square(np.asarray(params["auto_cov_factor"])), axis=1))
    locs, sds = guide._unpack_latent(loc), guide._unpack_latent(sd)  # noqa: SLF001 - NumPyro's own layout
    return {f"{k}_auto_loc": np.asarray(v) for k, v in locs.items()} | {
        f"{k}_auto_scale": np.asarray(v) for k, v in sds.items()}


#: windows at the final rate over which SVI's noise floor is judged (see ``_at_noise_floor``)
FLOOR_WINDOWS = 4
#: windows over which a parameter still travelling is seen (see ``_travelling``)
TRAVEL_WINDOWS = 8
#: windows (at any rate) over which a march holds the rate up, and how far, in tol, it must go (``_travelling``)
MARCH_WINDOWS, MARCH_TOLS = 4, 10.0


def _at_noise_floor(recent: list[dict[str, Any]], cfg: SVIConfig) -> bool:
    """At the final rate, the window averages wobble without going anywhere: over the last ``FLOOR_WINDOWS``
    windows every global parameter moved by less than twice ``tol`` (posterior SDs) from each window to the
    next, and by less than that from the first of them to the last. Minibatch noise does not add up across
    windows; a slow drift along a ridge does (three moves of 0.15 SD in one direction are 0.45 SD net), so it
    is not taken for convergence. The estimate is then the average of those windows."""
    if len(recent) < FLOOR_WINDOWS:
        return False
    pairs = [*zip(recent[:-1], recent[1:], strict=True), (recent[0], recent[-1])]
    return all(max(_drift(a, b, cfg.local_sites, cfg.log_sites).values(), default=0.0) < 2 * cfg.tol
               for a, b in pairs)


def run_svi(
    model: Any, data: dict[str, Any], obs_keys: list[str], cfg: SVIConfig, obs_site: str = "y"
) -> SVIResult:
    """Fit an autoguide by SVI, full-batch or on minibatches of observations (see ``SVIConfig``).

    Minibatches: the rows are shuffled once, and each step reads the next ``batch_size`` of them as one
    contiguous slice (each window starts at a random row and wraps around), so a step costs O(batch)
    work with no random indices or gathers; the likelihood is scaled by N / batch_size.
    Group-level parameters are never subsampled.
    """
    import time

    import jax
    import jax.numpy as jnp
    import numpy as np
    from numpyro.infer import SVI, Trace_ELBO

    enable_compilation_cache()
    n = int(data[obs_keys[0]].shape[0]) if obs_keys else 0
    cfg.check(n)
    batch = cfg.batch_size
    if batch is not None and batch < n:
        fit_model = scale_observed(model, n / batch, (obs_site,))
        # the rows shuffled once (seeded), then read as contiguous slices of batch_size rows from a random
        # starting row per window, wrapping around: rows are visited without replacement, a step
        # costs a slice of the rows (no per-step random indices, no gather), and the device holds the rows
        # once (the shuffled copy replaces them); the first batch_size rows are repeated at the end so that a
        # slice never runs off it
        order = np.random.default_rng(cfg.seed).permutation(n)
        arrays = {k: (on_device(np.concatenate([np.asarray(v)[order], np.asarray(v)[order[:batch]]]))
                      if k in obs_keys else on_device(v)) for k, v in data.items()}

        def batch_args(start: Any, arrs: dict[str, Any]) -> dict[str, Any]:
            return {k: (jax.lax.dynamic_slice_in_dim(v, start, batch) if k in obs_keys else v) for k, v in arrs.items()}

    else:
        batch = None
        fit_model = model
        arrays = {k: on_device(v) for k, v in data.items()}

        def batch_args(start: Any, arrs: dict[str, Any]) -> dict[str, Any]:
            return arrs

    steps = cfg.steps or (30000 if batch is not None else 20000)
    guide = make_guide(model, cfg)
    svi = SVI(fit_model, guide, _optimizer(cfg), Trace_ELBO())
    key = jax.random.PRNGKey(cfg.seed)
    key, k_init = jax.random.split(key)
    # The data are arguments of the jitted functions, never closed over: arrays sharded
    # over other processes' devices cannot be constants. Jitting the initialisation also
    # saves time: eagerly, numpyro compiles every primitive of the model one by one.
    def start(k: Any, arrs: dict[str, Any]) -> Any:
        state = svi.init(k, **batch_args(0, arrs))
        if not (cfg.units and cfg.guide == "normal"):
            return state
        # the guide's starting scales in the sites' units too (init_scale x unit): data in thousandths start
        # with a spread of thousandths, not of 0.1 (which the model would explain with a residual SD 100x too large)
        from numpyro.distributions import biject_to

        params = svi.optim.get_params(state.optim_state)
        to = biject_to(guide.scale_constraint)
        for site, u in cfg.units.items():
            name = f"{site}_auto_scale"
            if name in params:
                params[name] = to.inv(to(params[name]) * jnp.asarray(u, dtype=params[name].dtype))
        return state._replace(optim_state=svi.optim.init(params))

    state = jit(start)(k_init, arrays)  # one program, the unit scaling included (no op-by-op evaluation)

    @jit
    def run_window(state: Any, key: Any, arrs: dict[str, Any]) -> tuple[Any, Any, Any]:
        """``window`` steps; their losses and the average of the guide's parameters over them."""
        zero = jax.tree.map(jnp.zeros_like, svi.get_params(state))

        def step(carry: Any, start: Any) -> tuple[Any, Any]:
            st, acc = carry
            st, loss = svi.update(st, **batch_args(start, arrs))
            acc = jax.tree.map(jnp.add, acc, svi.get_params(st))
            return (st, acc), loss

        # the window's minibatches: consecutive slices of the shuffled rows from a random row
        starts = (jax.random.randint(key, (), 0, max(n, 1)) + jnp.arange(cfg.window) * (batch or 0)) % max(n, 1)
        (state, acc), losses = jax.lax.scan(step, (state, zero), starts)
        return state, losses, jax.tree.map(lambda a: a / cfg.window, acc)

    bar = Progress(steps, "SVI", cfg.progress, unit="steps at most")
    losses: list[np.ndarray] = []
    lr, decays, calm, stalled, best = cfg.lr, 0, 0, 0, float("inf")
    converged = False
    prev_avg = None
    avg: dict[str, Any] = {}
    drift: dict[str, float] = {}
    recent: list[dict[str, Any]] = []  # the last TRAVEL_WINDOWS window averages (per site) run at the final rate
    final_avgs: list[dict[str, Any]] = []  # the last FLOOR_WINDOWS of them as the guide's parameters
    history: list[dict[str, Any]] = []  # the last MARCH_WINDOWS window averages (per site), at any rate
    t0 = time.perf_counter()
    done = 0
    while done < steps:
        key, k = jax.random.split(key)
        at_last = cfg.schedule == "constant" or decays >= cfg.decays  # the rate this window runs at is the final one
        state, chunk, avg = run_window(state, k, arrays)
        chunk = np.asarray(chunk)
        avg = {name: np.asarray(v) for name, v in avg.items()}
        losses.append(chunk)
        done += cfg.window
        mean = float(np.mean(chunk))
        if not np.isfinite(mean) or not all(np.all(np.isfinite(v)) for v in avg.values()):
            bar.close()
            raise HBMError(
                f"SVI diverged (the ELBO became NaN/inf after {done} steps): try a smaller learning rate "
                "(--lr), scaling the predictors (scale(x)), or more informative priors"
            )
        bar.update(cfg.window, f"ELBO {-mean:.4g}, lr {lr:.2g}")
        view = per_site(guide, avg)
        history = [*history, view][-MARCH_WINDOWS:]
        if at_last:
            recent = [*recent, view][-TRAVEL_WINDOWS:]
            final_avgs = [*final_avgs, avg][-FLOOR_WINDOWS:]
        if prev_avg is not None:
            drift = _drift(prev_avg, view, cfg.local_sites, cfg.log_sites)
            worst = max(drift.values(), default=0.0)
            calm = calm + 1 if worst < cfg.tol else 0
            if worst < 0.9 * best:
                best, stalled = worst, 0
            else:
                stalled += 1
            if at_last and (calm >= 2 or _at_noise_floor(recent[-FLOOR_WINDOWS:], cfg)) and not _travelling(recent, cfg):
                converged = True
                break
            if not at_last and (calm >= 2 or (stalled >= 4 and not _travelling(history, cfg, MARCH_TOLS))):
                # settled at this rate, or no longer improving (the noise of the gradient sets the
                # wobble): a lower rate sheds the noise
                lr, decays, calm, stalled, best = lr / 4, decays + 1, 0, 0, float("inf")
                state = _set_lr(state, lr)
        prev_avg = view
    bar.close()
    # converged: the average of the windows at the final rate (Polyak-Ruppert over up to FLOOR_WINDOWS
    # windows); otherwise the last window's average (earlier ones lag behind what still moves)
    final = {k: np.mean([w[k] for w in final_avgs], axis=0) for k in avg} if converged and final_avgs else avg
    params = {k: on_device(v) for k, v in final.items()}
    moving = None
    if not converged:
        moving = dict(sorted(((k, v) for k, v in drift.items() if v >= cfg.tol), key=lambda kv: -kv[1])[:5])
    return SVIResult(guide, params, np.concatenate(losses), done, converged, time.perf_counter() - t0, moving,
                     batch)


def svi_warning(res: SVIResult, window: int) -> str:
    """Why SVI is not to be trusted when it stopped before converging: what moved, the likely cause, the fix."""
    moving = res.moving or {}
    shown = ", ".join(f"{k} ({v:.2g} SD)" for k, v in list(moving.items())[:3]) or "the parameters"
    cause = ("minibatch noise, or a slow drift along a ridge between group effects and population values"
             if res.batch_size else "a slow drift along a ridge between group effects and population values")
    return (
        f"SVI did not converge in {res.steps} steps: {shown} still moved by that many posterior SDs per {window} "
        f"steps; likely cause: {cause}; the estimates may be biased. Fix: more steps (steps=, --steps), "
        "param='centered' for groups with many rows each"
        + (", or a larger batch_size" if res.batch_size else "") + "; or NUTS"
    )


def guide_params(params: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Per latent site of a mean-field (AutoNormal) guide, its (location, scale) on the
    unconstrained scale: the one place that reads NumPyro's ``<site>_auto_loc`` names."""
    out = {}
    for k, v in params.items():
        if k.endswith("_auto_loc"):
            site = k[: -len("_auto_loc")]
            if f"{site}_auto_scale" in params:
                out[site] = (v, params[f"{site}_auto_scale"])
    return out


def guide_draws(model: Any, result: SVIResult, data: dict[str, Any], draws: int, seed: int, sites: list[str]) -> dict[str, Any]:
    """Draws of the named sites (latent and deterministic) from the fitted guide."""
    import jax
    import numpy as np
    from numpyro.infer import Predictive

    def run(key: Any, arrays: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        pred = Predictive(model, guide=result.guide, params=params, num_samples=draws, return_sites=sites)
        return pred(key, **arrays)

    # y observed: not resampled; one compiled program (Predictive alone evaluates the model op by op), the
    # guide's parameters its arguments (as constants, NumPyro's checks on them would run eagerly)
    out = jit(run)(jax.random.PRNGKey(seed + 1), data, result.params)
    return {k: np.asarray(v) for k, v in out.items()}


def nuts_init_from_guide(result: SVIResult, chains: int, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Starting points (one guide draw per chain, unconstrained) and the diagonal
    inverse mass matrix (the guide's variances, per site), as PyMC's ``init='advi'``."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    both = guide_params(result.params)
    if not both:
        raise HBMError("init='svi' needs the mean-field (normal) guide")
    locs = {k: v[0] for k, v in both.items()}
    scales = {k: v[1] for k, v in both.items()}
    keys = jax.random.split(jax.random.PRNGKey(seed + 7), len(locs))
    init = {
        name: locs[name][None] + scales[name][None] * jax.random.normal(k, (chains,) + jnp.shape(locs[name]))
        for k, name in zip(keys, sorted(locs), strict=True)
    }
    variances = {name: np.square(np.asarray(scales[name], np.float64)) for name in scales}
    if not all(np.isfinite(v).all() for v in variances.values()) or not all(
            bool(jnp.all(jnp.isfinite(v))) for v in init.values()):
        raise HBMError(
            "the SVI fit used to initialise NUTS has non-finite values (the guide diverged): try a smaller lr, "
            "scaled predictors (scale(x)), or NUTS without init='svi'"
        )
    if chains == 1:  # NumPyro takes one chain's starting point without a chain dimension
        init = {name: v[0] for name, v in init.items()}
    return init, variances


# ---------------------------------------------------------------- data sharding
def with_obs_mask(model: Any) -> Any:
    """The model with an optional ``obs_mask`` argument: padded rows (mask 0) add
    nothing to the likelihood. Used when rows are padded to shard evenly."""

    def masked(obs_mask: Any = None, **kwargs: Any) -> Any:
        if obs_mask is None:
            return model(**kwargs)
        return scale_observed(model, obs_mask)(**kwargs)

    return masked


def shard_data(data: dict[str, Any], obs_keys: list[str], devices: list[Any] | None = None) -> dict[str, Any]:
    """Place per-observation arrays split by rows over ``devices`` (all of JAX's
    devices, across processes too, by default) and the rest replicated, so that
    every jitted log density (NUTS or SVI) runs on all devices and XLA sums the
    likelihood across shards. Rows are padded to a multiple of the device count;
    ``obs_mask`` zeroes the padding."""
    import jax
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    devices = list(devices or jax.devices())
    k = len(devices)
    mesh = Mesh(np.array(devices), ("data",))
    n = int(np.shape(data[obs_keys[0]])[0])
    n_pad = -(-n // k) * k
    out: dict[str, Any] = {}

    def put(arr: np.ndarray, spec: PartitionSpec) -> Any:
        sharding = NamedSharding(mesh, spec)
        return jax.make_array_from_callback(arr.shape, sharding, lambda idx: arr[idx])

    for key, value in data.items():
        arr = np.asarray(value)
        if key in obs_keys:
            if n_pad > n:
                arr = np.concatenate([arr, np.repeat(arr[-1:], n_pad - n, axis=0)])
            out[key] = put(arr, PartitionSpec("data", *([None] * (arr.ndim - 1))))
        else:
            out[key] = put(arr, PartitionSpec())
    mask = np.concatenate([np.ones(n, np.float32), np.zeros(n_pad - n, np.float32)])
    out["obs_mask"] = put(mask, PartitionSpec("data"))
    return out


def run_nuts_sharded(
    model: Any, sharded: dict[str, Any], local: dict[str, Any], cfg: NUTSConfig
) -> tuple[dict[str, Any], dict[str, Any]]:
    """NUTS whose data are arguments of the compiled sampler, so they may be
    sharded over the devices of several processes (NumPyro's MCMC wrapper embeds
    its data as constants, which multi-process arrays cannot be).

    Built from NumPyro's functional NUTS (``hmc(potential_fn_gen=...)``): chains
    are vectorized, warmup adapts step size and a diagonal mass matrix as
    ``MCMC`` does. ``local`` (the unsharded data of this process) serves only to
    find initial values and to compute deterministic sites afterwards.
    Returns (samples by chain, NUTS extra fields by chain), as NumPy arrays.
    """
    import jax
    import numpy as np
    from numpyro.infer.hmc import hmc
    from numpyro.infer.util import initialize_model

    cfg.check()
    key = jax.random.PRNGKey(cfg.seed)
    keys = jax.random.split(key, cfg.chains + 1)
    inits = [initialize_model(k, model, model_kwargs=local, dynamic_args=True) for k in keys[1:]]
    info = inits[0]
    z0 = jax.tree.map(lambda *xs: jax.numpy.stack(xs), *[i.param_info.z for i in inits])
    init_kernel, sample_kernel = hmc(potential_fn_gen=info.potential_fn, algo="NUTS")
    total = cfg.warmup + cfg.draws

    def one_chain(rng: Any, z: Any, data: dict[str, Any]) -> Any:
        state = init_kernel(z, cfg.warmup, target_accept_prob=cfg.target_accept, max_tree_depth=cfg.max_tree_depth,
                            model_kwargs=data, rng_key=rng)

        def body(st: Any, _: Any) -> tuple[Any, Any]:
            st = sample_kernel(st, model_kwargs=data)
            return st, (st.z, st.diverging, st.accept_prob, st.num_steps, st.energy, st.potential_energy)

        _, out = jax.lax.scan(body, state, None, length=total)
        return jax.tree.map(lambda x: x[cfg.warmup:], out)

    run = jit(jax.vmap(one_chain, in_axes=(0, 0, None)))
    zs, div, acc, steps, energy, pe = run(jax.random.split(keys[0], cfg.chains), z0, sharded)
    zs = jax.tree.map(np.asarray, zs)
    post = info.postprocess_fn(**local)
    flat = {k: v.reshape((cfg.chains * cfg.draws,) + v.shape[2:]) for k, v in zs.items()}
    samples = jax.lax.map(post, flat)
    samples = {k: np.asarray(v).reshape((cfg.chains, cfg.draws) + np.shape(v)[1:]) for k, v in samples.items()}
    extra = {"diverging": div, "accept_prob": acc, "num_steps": steps, "energy": energy, "potential_energy": pe}
    return samples, {k: np.asarray(v) for k, v in extra.items()}
