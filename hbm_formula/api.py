"""The public entry points: ``compile`` (formula + data → model with code) and
``fit`` (compile, then inference, then InferenceData). The CLI and embedding
tools call these same functions."""

from __future__ import annotations

import builtins
import linecache
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from .design import Design, build_design
from .errors import HBMError
from .ir import ModelSpec
from .lower import Lowered, lower
from .params import ParamEntry, param_table
from .parse import parse

PriorsArg = Mapping[str, str] | Iterable[tuple[str, str]] | None


@dataclass
class CompiledModel:
    """A formula compiled against data, before any inference.

    ``model(**data)`` is a NumPyro model usable with any NumPyro/BlackJAX
    inference; ``code`` is its source (exactly what runs); ``coords``/``dims``
    name every dimension for ArviZ.
    """

    spec: ModelSpec
    design: Design
    params: list[ParamEntry]
    code: str
    model: Callable[..., Any]
    data: dict[str, Any]
    coords: dict[str, list[str]]
    dims: dict[str, list[str]]
    summary_vars: list[str]

    @property
    def formula(self) -> str:
        return str(self.spec)

    def priors_table(self) -> pd.DataFrame:
        """Every parameter with the prior it gets and where that came from."""
        from .priors import prior_code

        rows = []
        for e in self.params:
            rows.append(
                {
                    "parameter": e.name,
                    "class": e.cls,
                    "prior": str(e.prior),
                    "numpyro": prior_code(e.prior, e.support, e.name) if e.support != "corr" else f"LKJCholesky(eta={e.prior.args[0]:g})",
                    "source": e.source,
                }
            )
        return pd.DataFrame(rows).set_index("parameter")

    def sample_prior(self, draws: int = 1000, seed: int = 0) -> dict[str, Any]:
        """Draws of every site, ``y`` included, from the prior (prior predictive)."""
        import jax
        import numpy as np
        from numpyro.infer import Predictive

        if draws < 1:
            raise HBMError(f"draws must be at least 1, got {draws}")
        data = {k: v for k, v in self.data.items() if k != "y"}
        out = Predictive(self.model, num_samples=draws)(jax.random.PRNGKey(seed), **data)
        return {k: np.asarray(v) for k, v in out.items()}

    def log_density(self, params: dict[str, Any]) -> float:
        """Joint log density at ``params`` (unconstrained=False: values in their own space)."""
        from numpyro.infer.util import log_density

        lp, _ = log_density(self.model, (), dict(self.data), params)
        return float(lp)


_model_counter = 0


def _exec_code(code: str) -> Callable[..., Any]:
    """Run the generated source in a fresh namespace and return ``model``.

    The source is built by ``lower`` from checked IR only; registering it with
    linecache makes tracebacks show the generated lines.
    """
    global _model_counter
    _model_counter += 1
    filename = f"<hbm_formula model {_model_counter}>"
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
    namespace: dict[str, Any] = {"__name__": "hbm_formula_generated", "__builtins__": builtins}
    exec(builtins.compile(code, filename, "exec"), namespace)  # noqa: S102 - generated, not user, code
    return namespace["model"]


def compile(  # noqa: A001 - the natural name of the stage, as in the issue's API
    formula: str | ModelSpec,
    data: Any,
    *,
    family: str | None = None,
    link: str | None = None,
    priors: PriorsArg = None,
    dpars: Mapping[str, str] | None = None,
    nl: Mapping[str, str] | None = None,
    param: str | Mapping[str, str] | None = None,
    na: str = "drop",
) -> CompiledModel:
    """Parse, check and lower ``formula`` against ``data`` into a runnable model."""
    spec = parse(formula, family=family, link=link, priors=priors, dpars=dpars, nl=nl, param=param)
    design = build_design(spec, data, na=na)
    table = param_table(spec, design)
    lowered: Lowered = lower(spec, design, table)
    model = _exec_code(lowered.code)
    return CompiledModel(
        spec, design, table, lowered.code, model, lowered.data, lowered.coords, lowered.dims, lowered.summary_vars
    )


@dataclass
class Fit:
    """A fitted model: the compiled model, the InferenceData and diagnostics."""

    model: CompiledModel
    idata: Any
    method: str
    warnings: list[str] = field(default_factory=list)
    raw: Any = None  # the NumPyro MCMC object
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self, hdi_prob: float = 0.94) -> pd.DataFrame:
        """The table of the CLI; for a prior-only fit, of the prior draws."""
        from .results import summary

        return summary(self.idata, self.model.summary_vars, hdi_prob)

    def prior_predictive(self, draws: int = 1000, seed: int = 0) -> Any:
        """Add ``prior`` and ``prior_predictive`` groups (draws from the prior) to ``idata``."""
        from .results import prior_idata

        self.idata.extend(prior_idata(self.model, draws, seed))
        return self.idata

    def save(self, path: str) -> None:
        from .results import save_netcdf

        save_netcdf(self.idata, path)

    @property
    def code(self) -> str:
        return self.model.code


def fit(
    formula: str | ModelSpec,
    data: Any,
    *,
    family: str | None = None,
    link: str | None = None,
    priors: PriorsArg = None,
    dpars: Mapping[str, str] | None = None,
    nl: Mapping[str, str] | None = None,
    param: str | Mapping[str, str] | None = None,
    method: str = "nuts",
    chains: int = 4,
    warmup: int = 1000,
    draws: int = 1000,
    seed: int = 0,
    target_accept: float = 0.8,
    max_tree_depth: int = 10,
    chain_method: str = "auto",
    progress: bool = True,
    na: str = "drop",
    prior_only: bool = False,
) -> Fit:
    """Compile ``formula`` against ``data`` and run inference.

    Returns a ``Fit`` whose ``idata`` is an ``arviz.InferenceData`` with
    posterior, sample_stats, observed_data and log_likelihood groups. With
    ``prior_only=True`` nothing is fitted: ``idata`` holds ``chains * draws``
    draws from the prior (``prior`` and ``prior_predictive`` groups).
    """
    import time

    from . import infer, results

    if method != "nuts":
        raise HBMError(f"unknown method '{method}': use 'nuts'")
    cfg = infer.NUTSConfig(chains, warmup, draws, seed, target_accept, max_tree_depth, chain_method, progress)
    cfg.check()
    infer.set_host_devices()
    t0 = time.perf_counter()
    cm = compile(formula, data, family=family, link=link, priors=priors, dpars=dpars, nl=nl, param=param, na=na)
    t1 = time.perf_counter()
    if prior_only:
        idata = results.prior_idata(cm, chains * draws, seed)
        return Fit(cm, idata, "prior", [], None, {"compile": t1 - t0, "sample": time.perf_counter() - t1})
    mcmc = infer.run_nuts(cm.model, cm.data, cfg)
    t2 = time.perf_counter()
    attrs = {"formula": cm.formula, "family": str(cm.spec.family), "hbm_formula_method": "nuts"}
    idata = results.idata_from_mcmc(mcmc, cm.model, cm.data, cm.coords, cm.dims, attrs)
    t3 = time.perf_counter()
    msgs = results.diagnostics(idata, cm.summary_vars)
    for m in msgs:
        warnings.warn(m, UserWarning, stacklevel=2)
    return Fit(cm, idata, "nuts", msgs, mcmc, {"compile": t1 - t0, "sample": t2 - t1, "results": t3 - t2})


def default_priors(
    formula: str | ModelSpec,
    data: Any,
    *,
    family: str | None = None,
    link: str | None = None,
    priors: PriorsArg = None,
    **kwargs: Any,
) -> pd.DataFrame:
    """Every parameter of the model with its prior (defaults unless overridden)."""
    return compile(formula, data, family=family, link=link, priors=priors, **kwargs).priors_table()
