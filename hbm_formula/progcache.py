"""Traced programs kept on disk (``jax.export``), so that a refit of the same model skips tracing.

With JAX's persistent compilation cache warm, a fit still traces the sampler (NumPyro's NUTS
around the generated model) and lowers it to StableHLO before the cache can be asked: about a
second on a small model. Here a program is exported once (traced and lowered), serialised, and
later read back and called instead of being traced again. The file is named by a hash of
everything the program is built from: the caller's key (the generated model's source, the
sampler's settings), the shapes and dtypes of its arguments, the device layout, and the versions
of JAX, NumPyro and this package. Data values are arguments, never part of the program, so
other data of the same shapes (and another seed) reuse the file.

Files live in ``exported/`` inside the compilation cache folder (``infer.cache_dir()``);
``HBM_FORMULA_CACHE=0`` turns both off. A file that cannot be read is traced again and rewritten;
a program that cannot be exported runs as an ordinary jitted function.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from typing import Any

_REGISTERED = False

#: JAX settings that change a traced program (random keys' shape and bits, matmul precision)
_FLAGS = ("jax_default_prng_impl", "jax_threefry_partitionable", "jax_default_matmul_precision")

#: the attribute of a generated model function holding its name here (``api._exec_code``: a hash of its source)
KEY = "hbm_source_key"


def source_key(code: str) -> tuple[str, str]:
    """The name of a generated model: a hash of its source without its comments (which carry what the data
    showed: the number of rows, the auto measurement's figures, the priors' numbers, which are arguments; none
    of them changes what runs)."""
    import io
    import tokenize

    tokens = [f"{t.type}:{t.string}" for t in tokenize.generate_tokens(io.StringIO(code).readline)
              if t.type not in (tokenize.COMMENT, tokenize.NL)]
    return ("model", hashlib.sha256("\x00".join(tokens).encode()).hexdigest())


def key_of(model: Any) -> tuple[Any, ...] | None:
    """The name of ``model``'s programs (None: a model not generated from source, e.g. a wrapper: not kept)."""
    return getattr(model, KEY, None)


def _register() -> None:
    """NumPyro's sampler state is made of namedtuples: name them for the exported tree structure."""
    global _REGISTERED
    if _REGISTERED:
        return
    from jax import export
    from numpyro.infer.hmc import HMCState
    from numpyro.infer.hmc_util import HMCAdaptState

    for cls, name in ((HMCState, "numpyro.HMCState"), (HMCAdaptState, "numpyro.HMCAdaptState")):
        with contextlib.suppress(ValueError):  # registered already (by another copy of this module, after a reload)
            export.register_namedtuple_serialization(cls, serialized_name=name)
    _REGISTERED = True


def folder() -> Path | None:
    """Where exported programs are kept, or None when the cache is off."""
    from .infer import cache_dir

    base = cache_dir()
    return None if base is None else base / "exported"


def _spec(args: Any) -> list[str]:
    import jax

    leaves, tree = jax.tree.flatten(args)
    return [str(tree)] + [f"{getattr(v, 'dtype', type(v).__name__)}{tuple(getattr(v, 'shape', ()))}" for v in leaves]


def file_for(name: str, key: tuple[Any, ...], args: Any, sharded: bool) -> Path | None:
    """The file of program ``name`` built from ``key`` for arguments shaped like ``args``."""
    import jax
    import jaxlib.version
    import numpy as np
    import numpyro

    from ._version import __version__

    where = folder()
    if where is None:
        return None
    parts = [name, repr(key), *_spec(args), jax.__version__, jaxlib.version.__version__, numpyro.__version__, __version__,
             jax.default_backend(), str(jax.local_device_count() if sharded else 1),
             str(jax.dtypes.canonicalize_dtype(np.float64)),  # x64 on (also inside jax.enable_x64) or off
             *(f"{flag}={getattr(jax.config, flag)}" for flag in _FLAGS),
             "threefry-unrolled"]  # (programs of before: JAX's rolled loop, slower; traced again)
    digest = hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]
    return where / f"{name}-{digest}.jaxexport"


def load(path: Path | None) -> Any:
    """The exported program at ``path``, or None (absent, unreadable, or written by another JAX)."""
    if path is None or not path.is_file():
        return None
    _register()
    from jax import export

    try:
        return export.deserialize(bytearray(path.read_bytes()))
    except Exception:  # noqa: BLE001 - a damaged or foreign file is only a cache miss
        return None


def fits(exp: Any, args: Any, prefix: int | None = None, upto: int | None = None) -> bool:
    """Whether an exported program takes arguments shaped like ``args`` (its tree, shapes and dtypes; with
    ``prefix``, only the arguments from that position on, up to ``upto``, the others being unknown yet)."""
    import jax

    leaves, tree = jax.tree.flatten(((*args,), {}))
    try:
        if prefix is None:
            if exp.in_tree != tree:
                return False
            avals = exp.in_avals
        else:
            children = exp.in_tree.children()[0].children()
            end = len(args) if upto is None else upto
            if len(children) != len(args) or any(c != jax.tree.structure(a) for c, a in
                                                  zip(children[prefix:end], args[prefix:end], strict=True)):
                return False
            first = sum(c.num_leaves for c in children[:prefix])
            avals = exp.in_avals[first:first + sum(c.num_leaves for c in children[prefix:end])]
            leaves = jax.tree.leaves(args[prefix:end])
        return len(avals) == len(leaves) and all(
            tuple(a.shape) == tuple(v.shape) and a.dtype == v.dtype for a, v in zip(avals, leaves, strict=True))
    except (AttributeError, TypeError, ValueError, IndexError):
        return False


def save(path: Path, exported: Any) -> None:
    """Write atomically (a concurrent process reads the whole file or none); a failure is a cache miss."""
    try:
        write(path, exported.serialize())
    except Exception:  # noqa: BLE001 - a tree node that cannot be named: not fatal
        return


def shapes(model: Any, data: Any, what: str, trace: Any) -> dict[str, Any]:
    """``trace()`` (a dict of ``jax.ShapeDtypeStruct`` found by an abstract trace of a generated model), kept on
    disk as JSON per model, ``what`` and shapes of ``data``: a refit does not trace the model for them."""
    import json

    import jax

    key = key_of(model)
    path = file_for(f"shapes-{what}", key, data, False) if key is not None else None
    path = path.with_suffix(".json") if path is not None else None
    if path is not None and path.is_file():
        try:
            rows = json.loads(path.read_text())
            if all(isinstance(k, str) and all(isinstance(n, int) and n >= 0 for n in shape) for k, shape, _ in rows):
                return {k: jax.ShapeDtypeStruct(tuple(shape), dtype) for k, shape, dtype in rows}
        except (ValueError, TypeError, OSError):  # damaged: traced again below
            pass
    out = trace()
    if path is not None:
        write(path, json.dumps([[k, list(v.shape), str(v.dtype)] for k, v in out.items()]).encode())
    return out


def write(path: Path, data: bytes) -> None:
    """Write ``data`` as the fit files are written (``results.write_bytes_atomic``: a concurrent process reads
    the whole file or none, the umask's permissions for a shared cache, killed writes' leftovers removed); a
    failure (no space, a read-only folder) is a cache miss."""
    from .errors import HBMError
    from .results import write_bytes_atomic

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(data, path)
    except (HBMError, OSError):
        return


def program(name: str, key: tuple[Any, ...] | None, jitted: Any, args: Any, sharded: bool = False,
            path: Path | None = None, stored: Any = None, once: bool = False) -> Any:
    """A callable equivalent to ``jitted`` (a ``jax.jit`` function) on arguments shaped like ``args``
    (``jax.ShapeDtypeStruct`` with their shardings): read from disk when this program was exported before,
    else exported now and written. With no ``key`` (or the cache off) ``jitted`` itself. ``path`` and
    ``stored``: the file and its program when the caller looked them up already (a file named by some of
    the arguments only); ``once``: compiled as a program run once (``infer.compiler_options``)."""

    if key is None:
        return jitted
    path = path if path is not None else file_for(name, key, args, sharded)
    if path is None:
        return jitted
    exp = stored if stored is not None else load(path)
    if exp is not None and not fits(exp, args):  # another program under this name (a swapped or stale file)
        exp = None
    if exp is None:
        _register()
        from jax import export

        try:
            exp = export.export(jitted)(*args)
        except Exception:  # noqa: BLE001 - not exportable (e.g. a host callback): run it as it is
            return jitted
        save(path, exp)
    from .infer import jit

    return jit(exp.call, once=once)


def cached(name: str, key: tuple[Any, ...] | None, jitted: Any, once: bool = False) -> Any:
    """``jitted`` (a ``jax.jit`` function of arrays on one device), its traced program kept on disk per shape of
    its arguments (``program``), resolved at the first call with each shape. With no ``key``: ``jitted``."""
    if key is None or folder() is None:
        return jitted
    table: dict[tuple[str, ...], Any] = {}

    def resolve(args: Any) -> Any:
        sig = tuple(_spec(args))
        if sig not in table:
            table[sig] = program(name, key, jitted, args, once=once)
        return table[sig]

    def call(*args: Any) -> Any:
        return resolve(args)(*args)

    call.lower = lambda *args: resolve(args).lower(*args)  # (as a jitted function's: infer.compile_behind)
    return call
