"""hbm_formula: lme4/brms-style formulas compiled to non-centered NumPyro models.

    import hbm_formula as hf
    fit = hf.fit("log_radon ~ floor + (1 + floor | county)", df)
    fit.summary()
    print(fit.model.code)

Importing this package does not import JAX. On CPU, the first fit asks XLA
for one host device per chain (at least 4) so chains run in parallel; set
``HBM_FORMULA_DEVICES`` or call ``hf.set_host_devices(n)`` before anything
imports JAX to choose another number.
"""

from . import distributed
from ._version import __version__
from .api import CompiledModel, Fit, compile, default_priors, fit
from .errors import DataError, FormulaError, HBMError, PriorError
from .fitfile import load
from .infer import set_host_devices
from .parse import parse, parse_prior
from .postfit import compare

__all__ = [
    "CompiledModel",
    "DataError",
    "Fit",
    "FormulaError",
    "HBMError",
    "PriorError",
    "__version__",
    "compare",
    "compile",
    "default_priors",
    "distributed",
    "fit",
    "load",
    "parse",
    "parse_prior",
    "set_host_devices",
]
