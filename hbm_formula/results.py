"""Draws → ArviZ InferenceData with named dims/coords, summaries, diagnostics
and save/load. Results are plain ArviZ objects so users keep their tools."""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import HBMError

SUMMARY_COLUMNS = ["mean", "sd", "hdi_3%", "hdi_97%", "r_hat", "ess_bulk", "ess_tail"]


class _quiet_arviz:
    """Silence arviz's log warning that one chain is too few for R-hat (SVI and prior draws)."""

    def __enter__(self) -> None:
        import logging

        az = _arviz()
        # arviz logs through its own Logger object, not one registered with logging.getLogger
        self.log = getattr(az, "_log", logging.getLogger("arviz"))
        self.level = self.log.level
        self.log.setLevel(logging.ERROR)

    def __exit__(self, *exc: object) -> None:
        self.log.setLevel(self.level)


def _arviz() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # arviz announces its 1.0 refactor on import
        import arviz as az
    return az


#: above this many numbers (observations x draws) the log-likelihood is not stored by default:
#: 2e8 float32 numbers are 800 MB (400K rows x 4000 draws would be 6.4 GB)
LOG_LIK_MAX = 200_000_000
#: draws per chunk when computing the pointwise log-likelihood
LOG_LIK_CHUNK = 250


def pointwise_log_likelihood(model: Any, samples: dict[str, Any], data: dict[str, Any],
                             chunk: int = LOG_LIK_CHUNK) -> dict[str, np.ndarray]:
    """Log-likelihood of each observation at each draw (``samples`` flat over draws), computed
    ``chunk`` draws at a time and stored as float32, so memory stays at chunk x rows while computing.

    One compiled program serves every chunk (the last one is padded to the chunk's size, and the
    data are arguments): NumPyro's ``log_likelihood`` evaluates the model op by op, each op its own
    small compile in a fresh process (radon: 1.7 s for 4,000 draws, against 0.3 s)."""
    import jax
    from numpyro import handlers

    def one(params: dict[str, Any], arrays: dict[str, Any]) -> dict[str, Any]:
        tr = handlers.trace(handlers.substitute(handlers.seed(model, 0), data=params)).get_trace(**arrays)
        return {name: site["fn"].log_prob(site["value"]) for name, site in tr.items()
                if site["type"] == "sample" and site["is_observed"]}

    total = int(next(iter(samples.values())).shape[0])
    chunk = max(1, min(chunk, total))
    from . import progcache
    from .infer import jit, on_device

    run = progcache.cached("log-lik", progcache.key_of(model), jit(jax.vmap(one, in_axes=(0, None))))
    arrays = {k: on_device(v) for k, v in data.items()}
    out: dict[str, list[np.ndarray]] = {}
    for s0 in range(0, total, chunk):
        part = {k: np.asarray(v[s0:s0 + chunk]) for k, v in samples.items()}
        n = next(iter(part.values())).shape[0]
        if n < chunk:  # pad with the last draw, so the compiled program is reused
            part = {k: np.concatenate([v, np.repeat(v[-1:], chunk - n, axis=0)]) for k, v in part.items()}
        for k, v in run(part, arrays).items():
            out.setdefault(k, []).append(np.asarray(v, dtype=np.float32)[:n])
    return {k: np.concatenate(v, axis=0) for k, v in out.items()}


def want_log_lik(setting: bool | None, n_obs: int, n_draws: int) -> tuple[bool, str | None]:
    """Whether to store the pointwise log-likelihood, and a note when it is skipped for its size."""
    if setting is not None:
        return bool(setting), None
    size = n_obs * n_draws
    if size <= LOG_LIK_MAX:
        return True, None
    return False, (
        f"the pointwise log-likelihood ({n_obs} rows x {n_draws} draws = {size * 4 / 1e9:.1f} GB in float32) was not "
        "stored; fit.loo() computes it when needed, in chunks (log_lik=True stores it with the fit)"
    )


@dataclass
class Draws:
    """The arrays of a fit, grouped as ArviZ groups them (posterior, sample_stats, log_likelihood,
    observed_data, ...; shaped (chain, draw, ...) except observed data), with their coordinates.

    It becomes an ``arviz.InferenceData`` only when asked (``to_idata``): ArviZ takes 1.5 s to
    import, so the command line summarises and saves a fit from these arrays directly, in ArviZ's
    own netCDF layout (``az.from_netcdf`` reads the files)."""

    groups: dict[str, dict[str, np.ndarray]]
    coords: dict[str, list[str]]
    dims: dict[str, list[str]]
    attrs: dict[str, str] = field(default_factory=dict)

    UNDRAWN = ("observed_data", "constant_data")

    def datasets(self) -> dict[str, Any]:
        """One xarray Dataset per group, named and shaped as ``az.from_dict`` would make them."""
        import xarray as xr

        out = {}
        for group, variables in self.groups.items():
            drawn = group not in self.UNDRAWN
            data_vars, coords = {}, {}
            for name, arr in variables.items():
                arr = np.asarray(arr)
                lead = ["chain", "draw"] if drawn else []
                named = list(self.dims.get(name, []))
                rest = arr.ndim - len(lead)
                names = [*named[:rest], *[f"{name}_dim_{i}" for i in range(len(named), rest)]]
                data_vars[name] = ([*lead, *names], arr)
                for d, size in zip(names, arr.shape[len(lead):], strict=True):
                    if d in self.coords and len(self.coords[d]) == size:
                        coords[d] = list(self.coords[d])
                    else:
                        coords.setdefault(d, np.arange(size))
                if drawn:
                    coords["chain"], coords["draw"] = np.arange(arr.shape[0]), np.arange(arr.shape[1])
            out[group] = xr.Dataset(data_vars, coords=coords, attrs=dict(self.attrs))
        return out

    def to_idata(self) -> Any:
        az = _arviz()
        with _quiet_arviz():
            return az.InferenceData(**self.datasets())

    @staticmethod
    def from_idata(idata: Any) -> Draws:
        groups: dict[str, dict[str, np.ndarray]] = {}
        coords: dict[str, list[str]] = {}
        dims: dict[str, list[str]] = {}
        for group in idata.groups():
            ds = idata[group]
            groups[group] = {str(k): np.asarray(v.values) for k, v in ds.data_vars.items()}
            for k, v in ds.data_vars.items():
                dims[str(k)] = [str(d) for d in v.dims if d not in ("chain", "draw")]
            for d, c in ds.coords.items():
                if d not in ("chain", "draw"):
                    coords[str(d)] = [str(x) for x in c.values]
        return Draws(groups, coords, dims, dict(getattr(idata, "posterior", {}).attrs) if "posterior" in idata.groups() else {})


def with_coef_axes(draws: dict[str, Any], coords: dict[str, list[str]], dims: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """Draws shaped (chain, draw, ...) as a fit stores them: a scalar site whose dims name a one-element axis
    (a single coefficient ``b``, sampled as a number: Lowered.squeezed) gets that axis back, so ``b`` reads
    the same whatever the number of coefficients."""
    out = {}
    for k, v in draws.items():
        v = np.asarray(v)
        named = dims.get(k, [])
        missing = named[v.ndim - 2:] if v.ndim - 2 < len(named) else []
        if missing and all(len(coords.get(d, ())) == 1 for d in missing):
            v = v.reshape(v.shape + (1,) * len(missing))
        out[k] = v
    return out


def model_shapes(draws: dict[str, np.ndarray], squeezed: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Stored draws (one leading axis) back in the model's own shapes: the inverse of ``with_coef_axes``."""
    return {k: (v.reshape(v.shape[:1]) if k in squeezed and v.ndim == 2 and v.shape[1] == 1 else v)
            for k, v in draws.items()}


def build_idata(
    posterior: dict[str, Any],
    sample_stats: dict[str, Any] | None,
    log_lik: dict[str, Any],
    observed: dict[str, Any],
    coords: dict[str, list[str]],
    dims: dict[str, list[str]],
    attrs: dict[str, str],
) -> Draws:
    """The groups of a fit from arrays shaped (chain, draw, ...)."""
    groups = {"posterior": with_coef_axes(posterior, coords, dims)}
    if sample_stats:
        groups["sample_stats"] = {k: np.asarray(v) for k, v in sample_stats.items()}
    if log_lik:
        groups["log_likelihood"] = {k: np.asarray(v) for k, v in log_lik.items()}
    groups["observed_data"] = {k: np.asarray(v) for k, v in observed.items()}
    return Draws(groups, dict(coords), {**dims, **{k: ["obs"] for k in log_lik}}, dict(attrs))


#: NumPyro NUTS extra fields → ArviZ sample_stats names
NUTS_FIELDS = {
    "diverging": "diverging",
    "accept_prob": "acceptance_rate",
    "num_steps": "n_steps",
    "energy": "energy",
    "potential_energy": "lp",
}


def idata_from_mcmc(
    mcmc: Any, model: Any, data: dict[str, Any], coords: dict[str, list[str]], dims: dict[str, list[str]],
    attrs: dict[str, str], log_lik: bool = True, obs: str = "y",
) -> Any:
    samples = mcmc.get_samples(group_by_chain=True)
    return idata_from_chains(samples, mcmc.get_extra_fields(group_by_chain=True), model, data, coords, dims, attrs,
                             log_lik, obs)


def idata_from_chains(
    samples: dict[str, Any], extra: dict[str, Any], model: Any, data: dict[str, Any],
    coords: dict[str, list[str]], dims: dict[str, list[str]], attrs: dict[str, str], log_lik: bool = True,
    obs: str = "y",
) -> Any:
    """InferenceData from NUTS draws and extra fields shaped (chain, draw, ...)."""
    posterior = {k: np.asarray(v) for k, v in samples.items()}
    chains, draws = next(iter(posterior.values())).shape[:2]
    stats = {NUTS_FIELDS[k]: np.asarray(v) for k, v in extra.items() if k in NUTS_FIELDS}
    if "lp" in stats:
        stats["lp"] = -stats["lp"]
    if "n_steps" in stats:
        stats["tree_depth"] = np.floor(np.log2(np.maximum(stats["n_steps"], 1))).astype(int) + 1
    ll = {}
    if log_lik:
        flat = {k: v.reshape((chains * draws,) + v.shape[2:]) for k, v in posterior.items()}
        ll = pointwise_log_likelihood(model, flat, data)
        ll = {k: v.reshape((chains, draws) + v.shape[1:]) for k, v in ll.items()}
    return build_idata(posterior, stats, ll, {obs: np.asarray(data[obs])}, coords, dims, attrs)


def idata_from_draws(
    model: Any, draws: dict[str, Any], data: dict[str, Any], coords: dict[str, list[str]], dims: dict[str, list[str]],
    attrs: dict[str, str], log_lik: bool = True, obs: str = "y",
) -> Any:
    """InferenceData from one set of draws (e.g. from an SVI guide), as a single chain."""
    posterior = {k: np.asarray(v)[None] for k, v in draws.items()}
    ll = {}
    if log_lik:
        ll = {k: v[None] for k, v in pointwise_log_likelihood(model, {k: np.asarray(v) for k, v in draws.items()},
                                                               data).items()}
    return build_idata(posterior, None, ll, {obs: np.asarray(data[obs])}, coords, dims, attrs)


def prior_idata(cm: Any, draws: int, seed: int) -> Any:
    """InferenceData of prior draws: ``prior`` (parameters) and ``prior_predictive`` (y)."""
    az = _arviz()
    out = cm.sample_prior(draws, seed)
    obs = cm.lowered.obs_site
    y = out.pop(obs)
    prior = with_coef_axes({k: v[None] for k, v in out.items()}, cm.coords, cm.dims)
    with _quiet_arviz():
        idata = az.from_dict(
            prior=prior,
            prior_predictive={obs: y[None]},
            observed_data={obs: np.asarray(cm.data[obs])},
            coords=cm.coords,
            dims=cm.dims,
        )
    return idata


# ---------------------------------------------------------------- diagnostics without ArviZ
# The same rank-normalized split R-hat, bulk and tail ESS and HDI as ArviZ (Vehtari, Gelman, Simpson,
# Carpenter & Bürkner 2021), in NumPy: the command line prints its summary without importing ArviZ,
# which takes 1.5 s (it pulls in matplotlib and numba). Checked against ArviZ in the tests.
def _ranks(a: np.ndarray) -> np.ndarray:
    """Average ranks (1-based, ties averaged), as scipy.stats.rankdata."""
    flat = a.ravel()
    order = np.argsort(flat, kind="mergesort")
    ranks = np.empty(flat.size)
    ranks[order] = np.arange(1, flat.size + 1)
    _, inv, counts = np.unique(flat, return_inverse=True, return_counts=True)
    return (np.bincount(inv, weights=ranks) / counts)[inv].reshape(a.shape)


def _z_scale(a: np.ndarray) -> np.ndarray:
    from scipy.special import ndtri

    return ndtri((_ranks(a) - 3 / 8) / (a.size - 2 * 3 / 8 + 1))


def _split(a: np.ndarray) -> np.ndarray:
    half = a.shape[1] // 2
    return np.concatenate([a[:, :half], a[:, -half:]], axis=0)


#: the divergence warning's words after its counts (``api`` replaces the warning when it knows the cause)
DIVERGED = "transitions diverged: the posterior may be biased"


def _rhat_plain(a: np.ndarray) -> float:
    n = a.shape[1]
    between = n * np.var(a.mean(axis=1), ddof=1)
    within = np.mean(np.var(a, axis=1, ddof=1))
    with np.errstate(divide="ignore", invalid="ignore"):  # chains that never moved: R-hat nan, no numpy warning
        return float(np.sqrt((between / within + n - 1) / n))


def rhat(a: np.ndarray) -> float:
    """Rank-normalized split R-hat of draws (chains, draws): the larger of bulk and tail."""
    if a.shape[0] < 2 or a.shape[1] < 4 or not np.all(np.isfinite(a)):
        return float("nan")
    s = _split(a)
    return max(_rhat_plain(_z_scale(s)), _rhat_plain(_z_scale(np.abs(s - np.median(s)))))


def _ess_raw(a: np.ndarray) -> float:
    a = np.asarray(a, dtype=float)
    if np.max(a) - np.min(a) < np.finfo(float).resolution:
        return float(a.size)
    m, n = a.shape
    nfft = 1 << (2 * n - 1).bit_length()
    x = a - a.mean(axis=1, keepdims=True)
    f = np.fft.rfft(x, n=nfft, axis=1)
    acov = np.fft.irfft(f * np.conjugate(f), n=nfft, axis=1)[:, :n] / n
    mean_var = np.mean(acov[:, 0]) * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n + (np.var(a.mean(axis=1), ddof=1) if m > 1 else 0.0)
    rho = np.zeros(n)
    rho_even, rho_odd = 1.0, 1.0 - (mean_var - np.mean(acov[:, 1])) / var_plus
    rho[0], rho[1] = rho_even, rho_odd
    t = 1
    while t < n - 3 and rho_even + rho_odd > 0.0:  # Geyer's initial positive sequence
        rho_even = 1.0 - (mean_var - np.mean(acov[:, t + 1])) / var_plus
        rho_odd = 1.0 - (mean_var - np.mean(acov[:, t + 2])) / var_plus
        if rho_even + rho_odd >= 0:
            rho[t + 1], rho[t + 2] = rho_even, rho_odd
        t += 2
    max_t = t - 2
    if rho_even > 0:
        rho[max_t + 1] = rho_even
    t = 1
    while t <= max_t - 2:  # Geyer's initial monotone sequence
        if rho[t + 1] + rho[t + 2] > rho[t - 1] + rho[t]:
            rho[t + 1] = rho[t + 2] = (rho[t - 1] + rho[t]) / 2.0
        t += 2
    total = m * n
    tau = max(-1.0 + 2.0 * np.sum(rho[: max_t + 1]) + np.sum(rho[max_t + 1: max_t + 2]), 1 / np.log10(total))
    return float(total / tau) if not np.isnan(rho).any() else float("nan")


def ess_bulk(a: np.ndarray) -> float:
    if a.shape[1] < 4 or not np.all(np.isfinite(a)):
        return float("nan")
    return _ess_raw(_z_scale(_split(a)))


def ess_tail(a: np.ndarray) -> float:
    if a.shape[1] < 4 or not np.all(np.isfinite(a)):
        return float("nan")
    lo, hi = np.quantile(a, [0.05, 0.95])
    return min(_ess_raw(_split((a <= lo).astype(float))), _ess_raw(_split((a <= hi).astype(float))))


def hdi(a: np.ndarray, prob: float) -> tuple[float, float]:
    x = np.sort(a.ravel())
    k = int(np.floor(prob * x.size))
    widths = x[k:] - x[: x.size - k]
    i = int(np.argmin(widths))
    return float(x[i]), float(x[i + k])


def _labels(name: str, arr: np.ndarray, coords: dict[str, list[str]], dims: list[str]) -> list[tuple[str, Any]]:
    """ArviZ's row labels: ``b[floor]``, ``cor_county[Intercept,floor]``, ``r[a, b]``; one per element."""
    inner = arr.shape[2:]
    if not inner:
        return [(name, ())]
    names = []
    for i, size in enumerate(inner):
        d = dims[i] if i < len(dims) else f"{name}_dim_{i}"
        names.append([str(c) for c in coords.get(d, range(size))])
    out = []
    for idx in np.ndindex(*inner):
        out.append((f"{name}[{', '.join(names[k][j] for k, j in enumerate(idx))}]", idx))
    return out


def summary(idata: Any, var_names: list[str], hdi_prob: float = 0.94) -> pd.DataFrame:
    """Mean, sd, HDI, R-hat and bulk/tail ESS of the named parameters (``idata``: InferenceData or Draws)."""
    draws = idata if isinstance(idata, Draws) else Draws.from_idata(idata)
    group = "posterior" if "posterior" in draws.groups else "prior"
    lo, hi = f"hdi_{(1 - hdi_prob) / 2 * 100:g}%", f"hdi_{(1 + hdi_prob) / 2 * 100:g}%"
    rows = {}
    for name in var_names:
        arr = draws.groups[group].get(name)
        if arr is None:
            continue
        arr = np.asarray(arr, dtype=float)
        for label, idx in _labels(name, arr, draws.coords, draws.dims.get(name, [])):
            a = arr[(slice(None), slice(None), *idx)]
            h = hdi(a, hdi_prob)
            rows[label] = {"mean": float(a.mean()), "sd": float(a.std(ddof=1)), lo: h[0], hi: h[1], "r_hat": rhat(a),
                           "ess_bulk": ess_bulk(a), "ess_tail": ess_tail(a)}
    return pd.DataFrame.from_dict(rows, orient="index", columns=["mean", "sd", lo, hi, "r_hat", "ess_bulk", "ess_tail"])


def diagnostics(idata: Any, var_names: list[str]) -> list[str]:
    """Warnings a user should see: divergences, high R-hat, low ESS."""
    draws = idata if isinstance(idata, Draws) else Draws.from_idata(idata)
    msgs = []
    ss = draws.groups.get("sample_stats", {})
    if "diverging" in ss:
        n_div = int(np.sum(ss["diverging"]))
        if n_div:
            total = int(np.size(ss["diverging"]))
            msgs.append(
                f"{n_div} of {total} {DIVERGED}; "
                "try target_accept=0.95 (--target-accept 0.95) or a different parameterization"
            )
    chains = next(iter(draws.groups["posterior"].values())).shape[0] if "posterior" in draws.groups else 1
    if chains > 1:
        table = summary(draws, var_names)
        bad = table[table["r_hat"] > 1.01]
        if len(bad):
            worst = bad["r_hat"].idxmax()
            msgs.append(
                f"R-hat above 1.01 for {len(bad)} parameters (worst {worst}: {bad['r_hat'].max():.3f}): "
                "chains disagree; run longer (more warmup/draws)"
            )
        low = table[table["ess_bulk"] < 100 * chains / 4]
        if len(low):
            msgs.append(f"bulk ESS below 100 for {len(low)} parameters (lowest {low['ess_bulk'].idxmin()}: {low['ess_bulk'].min():.0f})")
    return msgs


def format_summary(table: pd.DataFrame) -> str:
    with pd.option_context("display.max_rows", 500, "display.width", 200):
        shown = table.copy()
        for c in shown.columns:
            if c.startswith("ess"):
                shown[c] = shown[c].map(lambda v: f"{v:.0f}")
            elif c == "r_hat":
                shown[c] = shown[c].map(lambda v: f"{v:.3f}")
            else:
                shown[c] = shown[c].map(lambda v: f"{v:.3f}")
        return shown.to_string()


#: temporary files of our own writes: ``.<name>.hbmtmp-<pid>-<random><suffix>`` beside the target
_TMP_MARK = ".hbmtmp-"


def check_writable(path: str | os.PathLike[str]) -> Path:
    """Fail early, before any work, when ``path`` cannot be written: a folder, a missing or
    read-only folder. Checked by creating (and removing) a file of our own naming there."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise HBMError(f"cannot write {path}: it is a folder; give a file name, e.g. {path / 'fit.nc'}")
    if not folder.exists():
        raise HBMError(f"cannot write {path}: folder {folder} does not exist")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}{_TMP_MARK}", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise HBMError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def _clean_stale(folder: Path, name: str) -> None:
    """Remove temporary files of earlier writes of ``name`` whose process is gone (a killed write)."""
    for tmp in folder.glob(f".{name}{_TMP_MARK}*"):
        try:
            pid = int(tmp.name.split(_TMP_MARK, 1)[1].split("-", 1)[0])
        except (ValueError, IndexError):
            continue
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except OSError:
            continue


def _write_atomic(path: str | os.PathLike[str], suffix: str, write: Any) -> Path:
    """Write through a temporary file in the same folder, then rename: a failed write leaves
    no partial file behind, and the file gets the permissions the umask allows (not mkstemp's 0600).
    Stale temporary files of earlier writes that were killed are removed."""
    path = check_writable(path)
    folder = path.parent if str(path.parent) else Path(".")
    _clean_stale(folder, path.name)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{_TMP_MARK}{os.getpid()}-", suffix=suffix, dir=folder)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def save_netcdf(idata: Any, path: str | os.PathLike[str]) -> Path:
    """Write InferenceData (or Draws, or a dict of group datasets: without importing ArviZ) in ArviZ's
    netCDF layout, atomically."""
    if isinstance(idata, (Draws, dict)):
        sets = idata.datasets() if isinstance(idata, Draws) else idata

        def write(tmp: str) -> None:
            for i, (group, ds) in enumerate(sets.items()):
                ds.to_netcdf(tmp, mode="w" if i == 0 else "a", group=group, engine="h5netcdf")

        return _write_atomic(path, ".nc.tmp", write)
    return _write_atomic(path, ".nc.tmp", idata.to_netcdf)


def write_text_atomic(text: str, path: str | os.PathLike[str]) -> Path:
    return _write_atomic(path, ".tmp", lambda tmp: Path(tmp).write_text(text))


def write_bytes_atomic(data: bytes, path: str | os.PathLike[str]) -> Path:
    return _write_atomic(path, ".tmp", lambda tmp: Path(tmp).write_bytes(data))


def load(path: str | os.PathLike[str]) -> Any:
    return _arviz().from_netcdf(path)
