"""Draws → ArviZ InferenceData with named dims/coords, summaries, diagnostics
and save/load. Results are plain ArviZ objects so users keep their tools."""

from __future__ import annotations

import os
import tempfile
import warnings
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
    ``chunk`` draws at a time and stored as float32, so memory stays at chunk x rows while computing."""
    from numpyro.infer import log_likelihood

    total = int(next(iter(samples.values())).shape[0])
    out: dict[str, list[np.ndarray]] = {}
    for s0 in range(0, total, chunk):
        part = {k: v[s0:s0 + chunk] for k, v in samples.items()}
        for k, v in log_likelihood(model, part, **data).items():
            out.setdefault(k, []).append(np.asarray(v, dtype=np.float32))
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


def build_idata(
    posterior: dict[str, Any],
    sample_stats: dict[str, Any] | None,
    log_lik: dict[str, Any],
    observed: dict[str, Any],
    coords: dict[str, list[str]],
    dims: dict[str, list[str]],
    attrs: dict[str, str],
) -> Any:
    """InferenceData from arrays shaped (chain, draw, ...)."""
    az = _arviz()
    with _quiet_arviz():
        idata = _from_dict(az, posterior, sample_stats, log_lik, observed, coords, dims)
    for group in idata.groups():
        idata[group].attrs.update(attrs)
    return idata


def _from_dict(az: Any, posterior: dict[str, Any], sample_stats: dict[str, Any] | None, log_lik: dict[str, Any],
               observed: dict[str, Any], coords: dict[str, list[str]], dims: dict[str, list[str]]) -> Any:
    return az.from_dict(
        posterior={k: np.asarray(v) for k, v in posterior.items()},
        sample_stats={k: np.asarray(v) for k, v in (sample_stats or {}).items()} or None,
        log_likelihood={k: np.asarray(v) for k, v in log_lik.items()} or None,
        observed_data={k: np.asarray(v) for k, v in observed.items()},
        coords=coords,
        dims=dims,
    )


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
    prior = {k: v[None] for k, v in out.items()}
    with _quiet_arviz():
        idata = az.from_dict(
            prior=prior,
            prior_predictive={obs: y[None]},
            observed_data={obs: np.asarray(cm.data[obs])},
            coords=cm.coords,
            dims=cm.dims,
        )
    return idata


def summary(idata: Any, var_names: list[str], hdi_prob: float = 0.94) -> pd.DataFrame:
    """Mean, sd, 94% HDI, R-hat and bulk/tail ESS of the named parameters."""
    az = _arviz()
    group = "posterior" if "posterior" in idata.groups() else "prior"
    present = [v for v in var_names if v in idata[group]]
    with _quiet_arviz(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = az.summary(idata, var_names=present, hdi_prob=hdi_prob, round_to="none", group=group)
    lo, hi = f"hdi_{(1 - hdi_prob) / 2 * 100:g}%", f"hdi_{(1 + hdi_prob) / 2 * 100:g}%"
    cols = ["mean", "sd", lo, hi, "r_hat", "ess_bulk", "ess_tail"]
    return table[[c for c in cols if c in table.columns]]


def diagnostics(idata: Any, var_names: list[str]) -> list[str]:
    """Warnings a user should see: divergences, high R-hat, low ESS."""
    msgs = []
    ss = getattr(idata, "sample_stats", None)
    if ss is not None and "diverging" in ss:
        n_div = int(ss["diverging"].sum())
        if n_div:
            total = int(ss["diverging"].size)
            msgs.append(
                f"{n_div} of {total} transitions diverged: the posterior may be biased; "
                "try target_accept=0.95 (--target-accept 0.95) or a different parameterization"
            )
    if idata.posterior.sizes.get("chain", 1) > 1:
        table = summary(idata, var_names)
        bad = table[table["r_hat"] > 1.01]
        if len(bad):
            worst = bad["r_hat"].idxmax()
            msgs.append(
                f"R-hat above 1.01 for {len(bad)} parameters (worst {worst}: {bad['r_hat'].max():.3f}): "
                "chains disagree; run longer (more warmup/draws)"
            )
        low = table[table["ess_bulk"] < 100 * idata.posterior.sizes["chain"] / 4]
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
    return _write_atomic(path, ".nc.tmp", idata.to_netcdf)


def write_text_atomic(text: str, path: str | os.PathLike[str]) -> Path:
    return _write_atomic(path, ".tmp", lambda tmp: Path(tmp).write_text(text))


def load(path: str | os.PathLike[str]) -> Any:
    return _arviz().from_netcdf(path)
