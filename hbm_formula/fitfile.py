"""The fit file: everything a fresh process needs to rebuild the model and predict.

A fit is saved as one netCDF file (ArviZ's InferenceData layout, so ``az.from_netcdf``
reads it as usual) with one more thing in its ``constant_data`` group: the columns
of the training data the model read (after dropping rows with missing values), and,
as attributes, the model's description — the canonical formula (with what the data
decided, such as dose-response bounds), family and link, the user's priors, the
parameterization chosen for every group term, and the generated code. ``load``
compiles the formula against those columns again with the stored parameterization
(no pilot), checks that the code it gets is the code that was fitted, and returns a
``Fit`` whose ``predict``, ``loo``, ``summary`` and ``model.code`` work as before.

No pickle anywhere: a fit file is data, and loading one runs no code from it (the
formula is parsed by our grammar, never evaluated).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._version import __version__
from .errors import HBMError

#: bumped whenever the layout changes; a file with a newer format is refused
FORMAT = 1
_PREFIX = "hbm_formula_"


def _encode_frame(frame: pd.DataFrame) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Columns as netCDF-safe variables ``col_0``, ``col_1``, ... and what restores each (name, kind)."""
    variables: dict[str, Any] = {}
    meta: list[dict[str, Any]] = []
    for i, (name, col) in enumerate(frame.items()):
        var = f"col_{i}"
        info: dict[str, Any] = {"var": var, "name": str(name)}
        if isinstance(col.dtype, pd.CategoricalDtype):
            info["kind"] = "category"
            info["categories"] = [str(c) for c in col.cat.categories]
            info["ordered"] = bool(col.cat.ordered)
            values = np.array([str(v) for v in col.astype(object)], dtype=object)
        elif col.dtype == bool:
            info["kind"] = "bool"
            values = col.to_numpy(dtype=np.int8)
        elif pd.api.types.is_integer_dtype(col):
            info["kind"] = "int"
            values = col.to_numpy(dtype=np.int64)
        elif pd.api.types.is_float_dtype(col):
            info["kind"] = "float"
            values = col.to_numpy(dtype=np.float64)
        else:
            kinds = {type(v).__name__ for v in col}
            if kinds - {"str"}:
                info["mixed"] = sorted(kinds)
            info["kind"] = "str"
            values = np.array([str(v) for v in col], dtype=object)
        variables[var] = values
        meta.append(info)
    return variables, meta


def _decode_frame(ds: Any, meta: list[dict[str, Any]]) -> pd.DataFrame:
    cols: dict[str, Any] = {}
    for info in meta:
        values = np.asarray(ds[info["var"]].values)
        kind = info["kind"]
        if kind == "category":
            cols[info["name"]] = pd.Categorical([str(v) for v in values], categories=info["categories"],
                                                ordered=info["ordered"])
        elif kind == "bool":
            cols[info["name"]] = values.astype(bool)
        elif kind == "int":
            cols[info["name"]] = values.astype(np.int64)
        elif kind == "float":
            cols[info["name"]] = values.astype(np.float64)
        else:
            cols[info["name"]] = np.array([str(v) for v in values], dtype=object)
    return pd.DataFrame(cols)


def save(fit: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``fit`` (InferenceData plus the model description and its data) atomically."""
    import xarray as xr

    from .parse import term_params
    from .results import save_netcdf

    cm = fit.model
    frame = cm.design.frame
    variables, meta = _encode_frame(frame)
    spec = cm.spec
    attrs = {
        f"{_PREFIX}fit_format": FORMAT,
        f"{_PREFIX}version": __version__,
        f"{_PREFIX}formula": "\n".join(str(spec).splitlines()),
        f"{_PREFIX}family": spec.family.name,
        f"{_PREFIX}link": spec.family.link,
        f"{_PREFIX}priors": json.dumps([[p.target, str(p.dist)] for p in spec.priors]),
        f"{_PREFIX}centering": json.dumps({str(k): [int(x) for x in np.asarray(v)]
                                           for k, v in cm.centering.levels.items()}),
        f"{_PREFIX}centering_reasons": json.dumps({str(k): v for k, v in cm.centering.reasons.items()}),
        f"{_PREFIX}param": json.dumps(term_params(spec)),  # what was asked for each group term (auto, centered, ...)
        f"{_PREFIX}columns": json.dumps(meta),
        f"{_PREFIX}code": cm.code,
        f"{_PREFIX}method": fit.method,
        f"{_PREFIX}warnings": json.dumps(list(fit.warnings)),
        f"{_PREFIX}notes": json.dumps(list(fit.notes)),
    }
    ds = xr.Dataset({k: (("hbm_row",), v) for k, v in variables.items()}, attrs=attrs)
    from .results import Draws

    if isinstance(fit.result, Draws):  # not yet an InferenceData: written without importing ArviZ
        sets = fit.result.datasets()
    else:
        sets = {g: fit.result[g] for g in fit.result.groups() if g != "constant_data"}
    return save_netcdf({**sets, "constant_data": ds}, path)


def load(path: str | os.PathLike[str]) -> Any:
    """A ``Fit`` from a file written by ``save``, rebuilt in this process."""
    from . import api
    from .parameterize import Centering
    from .parse import parse, with_term_params
    from .results import _arviz

    p = Path(path)
    if not p.exists():
        raise HBMError(f"no such fit file: {p}")
    try:
        idata = _arviz().from_netcdf(p)
    except Exception as exc:  # noqa: BLE001 - netCDF/HDF5 raise many kinds
        raise HBMError(f"could not read {p} as a fit file: {str(exc).splitlines()[0] if str(exc) else exc}") from None
    cd = getattr(idata, "constant_data", None)
    attrs = dict(cd.attrs) if cd is not None else {}
    if f"{_PREFIX}fit_format" not in attrs:
        raise HBMError(f"{p} is not an hbm_formula fit file (it has no model description); "
                       "arviz.from_netcdf reads it as plain InferenceData")
    fmt = int(attrs[f"{_PREFIX}fit_format"])
    written_by = attrs.get(f"{_PREFIX}version", "?")
    if fmt > FORMAT:
        raise HBMError(f"{p} was written by hbm_formula {written_by} (fit format {fmt}); this is {__version__} "
                       f"(format {FORMAT}): upgrade hbm_formula to load it")
    try:
        frame = _decode_frame(cd, json.loads(attrs[f"{_PREFIX}columns"]))
        priors = [tuple(x) for x in json.loads(attrs[f"{_PREFIX}priors"])]
        spec = parse(attrs[f"{_PREFIX}formula"], family=attrs[f"{_PREFIX}family"], link=attrs[f"{_PREFIX}link"],
                     priors=priors or None)
        if f"{_PREFIX}param" in attrs:  # (older files: every term auto)
            spec = with_term_params(spec, json.loads(attrs[f"{_PREFIX}param"]))
        levels = {int(k): np.asarray(v, dtype=bool) for k, v in json.loads(attrs[f"{_PREFIX}centering"]).items()}
        reasons = {int(k): v for k, v in json.loads(attrs[f"{_PREFIX}centering_reasons"]).items()}
        with warnings.catch_warnings():  # what the data showed was said at the fit, and is in its warnings
            warnings.simplefilter("ignore", UserWarning)
            cm = api.compile_spec(spec, frame, centering=Centering(levels, reasons))
        stored = attrs[f"{_PREFIX}code"]
        if cm.code.split("\n", 1)[1] != stored.split("\n", 1)[1]:
            if written_by == __version__:
                raise HBMError(f"{p}: the generated model stored in the file differs from the one its formula builds "
                               "(the file was changed after it was written); refit the model")
            raise HBMError(f"{p} was fitted by hbm_formula {written_by}, whose generated model differs from the one "
                           f"this version ({__version__}) builds from the same formula; refit, or load it with "
                           f"hbm_formula {written_by}")
        fit = api.Fit(cm, idata, str(attrs.get(f"{_PREFIX}method", "nuts")),
                      json.loads(attrs.get(f"{_PREFIX}warnings", "[]")), None, {},
                      json.loads(attrs.get(f"{_PREFIX}notes", "[]")))
        return fit
    except HBMError:
        raise
    except (KeyError, ValueError, TypeError, AttributeError) as exc:  # json errors are ValueErrors
        raise HBMError(f"{p}: the model description in the file is damaged ({type(exc).__name__}: "
                       f"{str(exc).splitlines()[0] if str(exc) else exc}); refit the model") from None
