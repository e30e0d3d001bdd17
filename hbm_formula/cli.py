"""``hbmfit``: fit a formula to a CSV/Parquet file from the command line.

Holds argument handling, file reading and exit codes only; the work is done by
the same ``compile``/``fit`` functions the Python API exposes.

Exit codes: 0 success, 2 bad input (formula, prior, data, arguments),
3 an unexpected internal error.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any, NoReturn

from .errors import DataError, HBMError
from .priors import NAMES as _PRIOR_NAMES

#: shipped example data sets and the model each is the classic example for
EXAMPLES: dict[str, tuple[str, str, str]] = {
    "radon": ("radon.csv", "log_radon ~ floor + (1 + floor | county)", "gaussian"),
    "sleepstudy": ("sleepstudy.csv", "Reaction ~ Days + (Days | Subject)", "gaussian"),
    "cbpp": ("cbpp.csv", "cbind(incidence, size - incidence) ~ C(period) + (1 | herd)", "binomial"),
}


def example_path(name: str) -> Path:
    """Path of a shipped example CSV (works for editable and regular installs)."""
    from importlib import resources

    if name not in EXAMPLES:
        raise DataError(f"unknown example '{name}'; examples: {', '.join(EXAMPLES)}")
    return Path(str(resources.files("hbm_formula.example_data").joinpath(EXAMPLES[name][0])))


def read_table(
    path: str | os.PathLike[str],
    columns: list[str] | None = None,
    float32: bool = False,
    text_columns: list[str] | None = None,
    check_header: Any = None,
) -> Any:
    """Read a CSV or Parquet file into a DataFrame with a clear error for bad files (``check_header``: called with
    the file's column names before any is looked up).

    ``columns``: read only these (those the formula uses; missing ones are
    reported against the whole header with suggestions). ``float32``: store
    floats in single precision. ``text_columns``: read as text, so grouping
    labels such as ``01`` and ``1`` stay distinct (empty fields, ``NA`` and
    ``null`` are still missing values). A CSV whose rows do not all have the
    header's number of fields, or whose header repeats a name, is refused."""
    import pandas as pd

    p = Path(path)
    if not p.exists():
        raise DataError(f"no such file: {p}")
    if p.is_dir():
        raise DataError(f"{p} is a folder, not a data file")
    if p.stat().st_size == 0:
        raise DataError(f"the data file {p} is empty")
    parquet = p.suffix.lower() in (".parquet", ".pq")
    try:
        if parquet:
            try:
                import pyarrow.parquet as pq
            except ImportError:
                raise DataError("reading Parquet needs pyarrow: pip install 'hbm_formula[parquet]'") from None
            header = list(pq.ParquetFile(p).schema_arrow.names)
        else:
            header = _check_csv_shape(p)
        dup = sorted({c for c in header if header.count(c) > 1})
        if dup:
            raise DataError(f"{p}: the header names {', '.join(repr(c) for c in dup)} more than once; rename the columns")
        if check_header is not None:
            check_header(header)
        if columns:
            from .design import unknown_column

            for c in columns:
                if c not in header:  # name it against every column of the file, not just those read
                    raise unknown_column(c, header)
        if parquet:
            df = pd.read_parquet(p, columns=columns or None)
            for c in text_columns or []:
                if c in df.columns and not pd.api.types.is_string_dtype(df[c]):
                    df[c] = df[c].map(lambda v: v if pd.isna(v) else str(v))
        else:
            dtype = {c: str for c in (text_columns or []) if not columns or c in columns}
            df = pd.read_csv(p, usecols=columns or None, dtype=dtype or None)
        if float32:
            floats = df.select_dtypes("float64").columns
            df[floats] = df[floats].astype("float32")
        return df
    except pd.errors.EmptyDataError:
        raise DataError(f"the data file {p} has no rows or columns") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
        if isinstance(exc, DataError):
            raise
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"could not read {p}: {first}") from None


def _check_csv_shape(p: Path) -> list[str]:
    """The header of a CSV file, after checking every row has as many fields (pandas would
    silently fill short rows with missing values or shift long ones)."""
    import csv

    with open(p, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header:
            raise DataError(f"the data file {p} has no header row")
        width = len(header)
        bad, first = 0, None
        for row in reader:
            if row and len(row) != width:
                bad += 1
                if first is None:
                    first = (reader.line_num, len(row))
        if bad:
            line, got = first  # type: ignore[misc]
            raise DataError(
                f"{p}: {bad} rows do not have the header's {width} fields (first: line {line} has {got}); "
                "fix the file (a missing or extra separator, or an unquoted comma in a value)"
            )
    return header


#: an '=' followed by a prior distribution's name and its '(' (``=normal(``, ``= student_t (``)
_DIST_NAMES = "|".join(sorted(_PRIOR_NAMES, key=len, reverse=True))
_PRIOR_START = re.compile(rf"=(?=\s*(?:{_DIST_NAMES})\s*\()")


def _prior_arg(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected NAME=PRIOR, e.g. sigma=exponential(1); got {text!r}")
    # the '=' that ends the name: the first one followed by a distribution's call (a coefficient's name may hold
    # '=', as a column 'a=b' gives b_a=b; a prior's own '=' comes inside its call), else the first. The name is kept
    # as written (a column may end in a space): the prior table matches it exactly, else without the spaces around
    cut = next((m.start() for m in _PRIOR_START.finditer(text)), text.index("="))
    if not text[:cut].strip():
        raise argparse.ArgumentTypeError(f"expected NAME=PRIOR, e.g. sigma=exponential(1): no NAME in {text!r}")
    return text[:cut], text[cut + 1:].strip()


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line (no usage block) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        print(f"hbmfit: error: {message} (see hbmfit --help)", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="hbmfit",
        description="Fit a Bayesian hierarchical model given as an lme4/brms-style formula.",
        epilog='example: hbmfit examples/data/radon.csv "log_radon ~ floor + (1 + floor | county)"',
    )
    p.add_argument("data", nargs="?", help="CSV or Parquet file")
    p.add_argument("formula", nargs="?", help='model formula, e.g. "y ~ x + (1 | g)"')
    p.add_argument("--example", choices=sorted(EXAMPLES), help="fit a shipped example (data and formula)")
    p.add_argument("--family", default=None, help="response family (default gaussian)")
    p.add_argument("--link", default=None, help="link function (default: the family's)")
    p.add_argument("--prior", action="append", type=_prior_arg, default=[], metavar="NAME=PRIOR",
                   help="override a prior, e.g. --prior 'sigma=exponential(1)' (repeatable)")
    p.add_argument("--param", default=None, metavar="P",
                   help="group-term parameterization: auto (default: decided per level from the data), noncentered, centered, or GROUP=P,...")
    p.add_argument("--out", default=None, help="netCDF file for the posterior (default: <data>.fit.nc)")
    p.add_argument("--no-out", action="store_true", help="do not write the posterior")
    p.add_argument("--emit-code", default=None, metavar="FILE", help="write the generated NumPyro model to FILE")
    p.add_argument("--show-priors", action="store_true", help="print every parameter's prior and exit")
    p.add_argument("--show-code", action="store_true", help="print the generated model code and exit")
    p.add_argument("--prior-only", action="store_true", help="sample from the prior (prior predictive) instead of fitting")
    p.add_argument("--dpar", action="append", default=[], metavar="'NAME ~ TERMS'",
                   help="formula of a distributional parameter, e.g. --dpar 'sigma ~ x + (1|g)' (repeatable)")
    p.add_argument("--method", choices=["nuts", "svi"], default="nuts", help="NUTS (default) or SVI")
    p.add_argument("--init", choices=["pilot", "uniform", "svi"], default=None,
                   help="where NUTS starts, with its first mass matrix: the auto measurement's quick mode (default "
                        "with param auto; 'pilot' measures for it whatever --param), NumPyro's uniform(-2, 2), or an "
                        "SVI fit's draws and scales")
    p.add_argument("--guide", choices=["normal", "lowrank", "fullrank"], default="normal", help="SVI guide")
    p.add_argument("--rank", type=int, default=None, help="rank of the lowrank guide")
    p.add_argument("--steps", type=int, default=None, help="SVI step cap (default 20000; 10000 with minibatches)")
    p.add_argument("--lr", type=float, default=0.01, help="SVI learning rate (Adam)")
    p.add_argument("--batch-size", type=int, default=None, help="SVI minibatch size (rows per step)")
    p.add_argument("--nl", action="append", default=[], metavar="'NAME ~ TERMS[, lb = 0]'",
                   help="formula of a non-linear parameter (repeatable); FORMULA is then the non-linear expression")
    p.add_argument("--float32", action="store_true", help="read numeric columns as float32 (halves memory)")
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--target-accept", type=float, default=0.8)
    p.add_argument("--devices", type=int, default=None,
                   help="CPU host devices for parallel chains (default: max(4, cores))")
    p.add_argument("--na", choices=["drop", "error"], default="drop",
                   help="rows with missing values: drop with a warning (default) or stop")
    p.add_argument("--ed", default=None, metavar="P[,P...]",
                   help="effective doses of a dose-response model, e.g. --ed 10,50,90 (per group level and population)")
    p.add_argument("--ppc", action="store_true", help="store the posterior predictive (one replicated data set per draw)")
    p.add_argument("--no-log-lik", action="store_true", help="do not store the pointwise log-likelihood")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    return p


def _param_arg(text: str | None) -> Any:
    if text is None or "=" not in text:
        return text
    out = {}
    for part in text.split(","):
        k, _, v = part.partition("=")
        out[k.strip()] = v.strip()
    return out


def _dpar_args(items: list[str]) -> dict[str, str] | None:
    """``--dpar 'sigma ~ x'`` → {"sigma": "sigma ~ x"} (the name is checked by the parser); also ``--nl``."""
    out: dict[str, str] = {}
    for text in items:
        name = text.split("~", 1)[0].strip()
        if "~" not in text or not name:
            raise HBMError(f"a parameter formula is written 'NAME ~ TERMS', e.g. 'sigma ~ x'; got {text!r}")
        out[name] = text
    return out or None


def run(args: argparse.Namespace) -> int:
    from . import infer

    if args.devices is not None and args.devices < 1:
        raise HBMError(f"--devices must be at least 1, got {args.devices}")
    infer.set_host_devices(args.devices, method=args.method)
    if args.example:
        fname, formula, family = EXAMPLES[args.example]
        data_path = str(example_path(args.example))
        formula = args.formula or formula
        family = args.family or family
    else:
        if not args.data or not args.formula:
            raise HBMError("give DATA and FORMULA, or --example NAME (e.g. hbmfit --example radon)")
        data_path, formula, family = args.data, args.formula, args.family
    import warnings as _w

    from .api import compile, fit
    from .design import columns_used, text_columns
    from .parse import parse
    from .results import check_writable, format_summary, save_netcdf, write_text_atomic

    nl = _dpar_args(args.nl)
    spec = parse(formula, family=family, link=args.link, dpars=_dpar_args(args.dpar), nl=nl)
    from .design import check_infinite_bounds

    df = read_table(data_path, columns=columns_used(spec), float32=args.float32, text_columns=text_columns(spec),
                    check_header=lambda header: check_infinite_bounds(spec, header))
    kwargs: dict[str, Any] = dict(family=family, link=args.link, priors=args.prior or None,
                                  param=_param_arg(args.param), na=args.na, dpars=_dpar_args(args.dpar), nl=nl)
    if args.show_priors or args.show_code:
        with _w.catch_warnings(record=True) as caught:  # what the data showed, as the fit's: "warning: ..." lines
            _w.simplefilter("always", UserWarning)
            cm = compile(formula, df, **kwargs)
        for w in caught:
            if issubclass(w.category, UserWarning):
                print(f"warning: {w.message}", file=sys.stderr)
            else:
                _w.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if args.show_priors:
            import pandas as pd

            with pd.option_context("display.width", 200, "display.max_colwidth", 60):
                print(cm.priors_table().to_string())
        if args.show_code:
            print(cm.code)
        if args.emit_code:
            write_text_atomic(cm.code, args.emit_code)
        return 0
    out = None if args.no_out else (args.out or f"{Path(data_path).stem}.fit.nc")
    for target in (out, args.emit_code):
        if target is not None:
            check_writable(target)
    with _w.catch_warnings(record=True) as caught:
        _w.simplefilter("always", UserWarning)
        result = fit(formula, df, chains=args.chains, draws=args.draws, warmup=args.warmup, seed=args.seed,
                     target_accept=args.target_accept, progress=not args.no_progress, prior_only=args.prior_only,
                     method=args.method, init=args.init, guide=args.guide, rank=args.rank, steps=args.steps,
                     lr=args.lr, batch_size=args.batch_size,
                     # (with --no-out nothing would keep the pointwise log-likelihood: not computed)
                     log_lik=False if args.no_log_lik or out is None else None, **kwargs)
        if args.ppc and not args.prior_only:
            result.posterior_predictive(seed=args.seed)
    ed_table = None
    if args.ed and not args.prior_only:
        try:
            levels = [float(v) for v in args.ed.split(",") if v.strip()]
        except ValueError:
            raise HBMError(f"--ed takes percentages separated by commas, e.g. --ed 10,50,90; got {args.ed!r}") from None
        ed_table = result.ed(levels)
    for w in caught:
        if issubclass(w.category, UserWarning) and str(w.message) not in result.warnings:
            print(f"warning: {w.message}", file=sys.stderr)
    print(f"formula: {result.model.formula}")
    if result.method == "svi":
        how = f"SVI ({args.guide} guide): {result.raw.steps} steps, {'converged' if result.raw.converged else 'step cap'}; {args.draws} draws"
    else:
        how = f"{args.chains} chains x {args.draws} draws ({args.warmup} warmup)"
    print(f"family:  {result.model.spec.family}; {result.model.design.n} observations; {how}")
    print(format_summary(result.summary()))
    par = result.model.parameterization()
    if len(par):
        shown = ", ".join(
            f"{g}: {r.chosen}" + (f" ({r.centered_levels}/{r.levels} levels centered)" if r.chosen == "partially centered" else "")
            for g, r in par.iterrows()
        )
        print(f"group effects: {shown}")
    if ed_table is not None:
        print("effective doses (relative, as drc's ED):")
        print(format_summary(ed_table.drop(columns=["type"])))
    for m in result.warnings:
        print(f"warning: {m}", file=sys.stderr)
    for m in result.notes:
        print(f"note: {m}", file=sys.stderr)
    if args.emit_code:
        write_text_atomic(result.model.code, args.emit_code)
        print(f"wrote model code to {args.emit_code}")
    if out is not None:
        if result.method == "prior":
            save_netcdf(result.idata, out)
        else:
            result.save(out)
        print(f"wrote the fit to {out} (hbmfit predict/loo/plot read it; hf.load in Python)")
    return 0


SUBCOMMANDS = ("predict", "loo", "compare", "plot")


def build_subparser(name: str) -> argparse.ArgumentParser:
    p = _Parser(prog=f"hbmfit {name}")
    if name == "predict":
        p.description = "Predict new rows from a saved fit: one output row per input row, its columns kept."
        p.add_argument("fit", help="fit file written by hbmfit (or fit.save)")
        p.add_argument("newdata", help="CSV or Parquet file of new rows")
        p.add_argument("--kind", default="response", help="response (default), epred, linpred, or a parameter name")
        p.add_argument("--re-formula", default=None, help="group terms to include: '~0' none, '~(1 | g)' some")
        p.add_argument("--new-levels", default="error",
                       help="error (default), gaussian, uncertainty, old_levels or population")
        p.add_argument("--ndraws", type=int, default=None, help="use this many posterior draws (seeded subset)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--prob", type=float, default=0.95, help="central interval (default 0.95)")
        p.add_argument("--out", default=None, help="CSV to write (default: print)")
    elif name == "loo":
        p.description = "PSIS-LOO cross-validation of a saved fit."
        p.add_argument("fit")
    elif name == "compare":
        p.description = "Compare saved fits of the same data by PSIS-LOO (stacking weights)."
        p.add_argument("fits", nargs="+")
    else:
        p.description = "Pictures of a saved fit, as PNG files."
        p.add_argument("fit")
        p.add_argument("--kind", default="trace", help="trace (default), forest, ppc or effects (comma-separated)")
        p.add_argument("--var", default=None, help="grouping factor (forest) or predictor (effects)")
        p.add_argument("--out", default=".", help="folder for the PNG files (default: the current one)")
    p.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    return p


def run_subcommand(name: str, args: argparse.Namespace) -> int:
    import pandas as pd

    from .fitfile import load

    if name == "predict":
        from .design import text_columns

        fit = load(args.fit)
        new = read_table(args.newdata, text_columns=text_columns(fit.model.spec))
        table = fit.predict(new, kind=args.kind, re_formula=args.re_formula, new_levels=args.new_levels,
                            ndraws=args.ndraws, seed=args.seed, summary=True, prob=args.prob)
        if args.out:
            from .results import write_text_atomic

            write_text_atomic(table.to_csv(index=False), args.out)
            print(f"wrote {len(table)} predictions to {args.out}")
        else:
            with pd.option_context("display.width", 200, "display.max_rows", 50):
                print(table.to_string(index=False, max_rows=50))
    elif name == "loo":
        fit = load(args.fit)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            print(fit.loo())
        for m in fit.warnings:
            if m.startswith("PSIS-LOO"):
                print(f"warning: {m}", file=sys.stderr)
    elif name == "compare":
        from .postfit import compare

        fits = {}
        for i, f in enumerate(args.fits):
            name = Path(f).stem
            fits[name if name not in fits else f"{name}_{i + 1}"] = load(f)
        with pd.option_context("display.width", 200):
            print(compare(fits).to_string())
    else:
        from .postfit import PLOTS

        kinds = [k.strip() for k in args.kind.split(",") if k.strip()]
        for kind in kinds:
            if kind not in PLOTS:
                raise HBMError(f"unknown plot kind '{kind}': use one or more of {', '.join(PLOTS)}")
        folder = Path(args.out)
        if folder.exists() and not folder.is_dir():
            raise HBMError(f"--out must be a folder for the PNG files; {folder} is a file")
        fit = load(args.fit)
        factors = {b.term.group_label for b in fit.model.design.groups} | {b.label for b in fit.model.design.groups}
        if args.var is not None:  # --var must reach a plot: a grouping factor the forest, a predictor the effects
            if args.var in factors and "forest" not in kinds:
                raise HBMError(f"--var {args.var} is a grouping factor: it applies to --kind forest")
            if args.var not in factors and "effects" not in kinds:
                raise HBMError(f"--var {args.var} is not a grouping factor of this fit (factors: "
                               f"{', '.join(sorted(factors)) or 'none'}); a predictor's name applies to --kind effects")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HBMError(f"cannot create the folder {folder}: {exc.strerror or exc}") from None
        for kind in kinds:
            path = folder / f"{Path(args.fit).stem}_{kind}.png"
            var = args.var if (kind == "effects") == (args.var not in factors) else None  # --var goes where it fits
            fit.plot(kind, var=var, path=str(path))
            print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS and not Path(argv[0]).exists():
        name = argv[0]
        try:
            sub = build_subparser(name).parse_args(argv[1:])
        except SystemExit as exc:
            return int(exc.code or 0) if not isinstance(exc.code, str) else 2
        return _guarded(lambda: run_subcommand(name, sub), sub.debug)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or an argument error already printed as one line
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    return _guarded(lambda: run(args), args.debug)


def _guarded(work: Any, debug: bool) -> int:
    """Run a command: bad input is one line and exit 2, an internal error exit 3 (traceback with --debug)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return int(work())
    except HBMError as exc:
        msg = str(exc)
        first, *rest = msg.splitlines()
        print(f"hbmfit: error: {first}", file=sys.stderr)
        for line in rest:  # the formula with its caret line
            print(line, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hbmfit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our output went away (| head): nothing is wrong, stop quietly
        _quiet_stdout()
        return 0
    except Exception as exc:  # noqa: BLE001 - no traceback for users unless --debug
        if debug:
            raise
        print(f"hbmfit: internal error: {type(exc).__name__}: {exc} (rerun with --debug for a traceback)", file=sys.stderr)
        return 3


def console_main() -> None:  # pragma: no cover - the process exits
    """The ``hbmfit`` program: :func:`main`, then exit at once. Every output is written and closed by then;
    what would follow is the interpreter's teardown of JAX and XLA (about 0.8 s), which nothing needs."""
    code = main()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_stdout()
    with contextlib.suppress(BrokenPipeError):
        sys.stderr.flush()
    os._exit(code)


def _quiet_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so no later flush raises again (Python's advice)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":  # pragma: no cover
    console_main()
