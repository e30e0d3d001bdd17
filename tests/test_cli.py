"""hbmfit: exit codes, one-line errors without tracebacks, files written whole or not at all."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DATA

from hbm_formula.cli import main

RADON = str(DATA / "radon.csv")


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    return subprocess.run([sys.executable, "-m", "hbm_formula", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def test_cli_fits_the_example_and_writes_files(tmp_path: Path) -> None:
    out, code = tmp_path / "fit.nc", tmp_path / "model.py"
    res = run_cli("--example", "radon", "--chains", "2", "--draws", "150", "--warmup", "150", "--no-progress",
                  "--out", str(out), "--emit-code", str(code), "--prior", "sigma=exponential(1)")
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    for row in ("Intercept", "b[floor]", "sd_county[Intercept]", "sd_county[floor]", "cor_county[Intercept,floor]", "sigma"):
        assert row in res.stdout
    assert "r_hat" in res.stdout and "ess_bulk" in res.stdout and "hdi_3%" in res.stdout
    assert out.exists() and code.exists()
    assert "dist.Exponential(*prior_sigma))  # Exponential(1.0)" in code.read_text()
    import arviz as az

    idata = az.from_netcdf(out)
    assert idata.posterior.sizes["draw"] == 150


@pytest.mark.parametrize(
    "args,message",
    [
        ([RADON, "log_radon ~ floor + (1 | county"], "unclosed parenthesis"),
        ([RADON, "log_radon ~ flor + (1 | county)"], "unknown column 'flor' (did you mean 'floor'?)"),
        ([RADON, "log_radon ~ floor + eval('1')"], "function 'eval' is not allowed"),
        ([RADON, "log_radon ~ floor + (1 | )"], "group term needs a grouping factor"),
        ([RADON, "log_radon ~ floor", "--family", "poisson"], "count response must be"),
        ([RADON, "log_radon ~ floor", "--prior", "sigm=exponential(1)"], "unknown parameter 'sigm'"),
        ([RADON, "log_radon ~ floor", "--prior", "sigma=exponential(1"], "sigma"),
        (["/no/such/file.csv", "y ~ x"], "no such file: /no/such/file.csv"),
        ([RADON], "give DATA and FORMULA"),
    ],
)
def test_cli_bad_input_is_one_clear_line(args: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "fit.nc"
    code = main([*args, "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("hbmfit: error: ")
    assert message in err
    assert "Traceback" not in err
    assert not out.exists()


def test_cli_empty_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert main([str(empty), "y ~ x"]) == 2
    assert "is empty" in capsys.readouterr().err
    header_only = tmp_path / "header.csv"
    header_only.write_text("y,x\n")
    assert main([str(header_only), "y ~ x"]) == 2
    assert "no rows" in capsys.readouterr().err


def test_cli_missing_values_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "na.csv"
    f.write_text("y,x\n1,0\n2,\n3,2\n")
    assert main([str(f), "y ~ x", "--na", "error", "--no-out"]) == 2
    assert "1 rows have missing values in x" in capsys.readouterr().err


def test_cli_formula_error_shows_caret(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([RADON, "log_radon ~ floor ++ uranium"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[1] == "  log_radon ~ floor ++ uranium"
    assert lines[2] == " " * (2 + lines[1].index("++") - 1) + "^"


def test_cli_show_priors_does_not_fit(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main([RADON, "log_radon ~ floor + (1 | county)", "--show-priors", "--out", str(tmp_path / "x.nc")]) == 0
    out = capsys.readouterr().out
    assert "sd_county__Intercept" in out and "half_normal" in out
    assert not (tmp_path / "x.nc").exists()


def test_cli_unwritable_output_fails_before_sampling(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([RADON, "log_radon ~ floor", "--out", "/no/such/dir/fit.nc"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_dpar_and_prior_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main([RADON, "log_radon ~ floor + (1 | county)", "--family", "student", "--dpar", "sigma ~ floor",
                 "--prior-only", "--draws", "50", "--chains", "1", "--out", str(tmp_path / "p.nc"), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    assert "b_sigma[floor]" in out and "nu" in out
    import arviz as az

    assert "prior_predictive" in az.from_netcdf(tmp_path / "p.nc").groups()


def test_cli_without_output_skips_the_pointwise_log_likelihood(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """With --no-out nothing would keep the log-likelihood (only the file does): it is not computed; with a file it
    is, and stored."""
    from hbm_formula import results

    real, calls = results.pointwise_log_likelihood, []

    def spy(*a: object, **k: object) -> object:
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(results, "pointwise_log_likelihood", spy)
    quick = ["--chains", "1", "--draws", "50", "--warmup", "50", "--no-progress"]
    assert main([RADON, "log_radon ~ floor", "--no-out", *quick]) == 0
    assert "b[floor]" in capsys.readouterr().out and calls == []
    assert main([RADON, "log_radon ~ floor", "--out", str(tmp_path / "f.nc"), *quick]) == 0
    import arviz as az

    assert calls and "log_likelihood" in az.from_netcdf(tmp_path / "f.nc").groups()


def test_cli_bad_dpar(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([RADON, "log_radon ~ floor", "--dpar", "nu ~ floor", "--show-priors"]) == 2
    assert "has no parameter 'nu'" in capsys.readouterr().err


def test_cli_reads_parquet_columns_as_float32(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pandas as pd

    from hbm_formula.cli import read_table

    df = pd.read_csv(RADON)
    path = tmp_path / "radon.parquet"
    df.to_parquet(path)
    got = read_table(path, columns=["log_radon", "floor", "county"], float32=True)
    assert list(got.columns) == ["log_radon", "floor", "county"]
    assert str(got["log_radon"].dtype) == "float32"
    code = main([str(path), "log_radon ~ floor + (1 | county)", "--method", "svi", "--batch-size", "256",
                 "--lr", "0.02", "--steps", "2000", "--draws", "100", "--float32", "--no-out", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and "SVI (normal guide)" in out and "b[floor]" in out


@pytest.mark.parametrize("text,name,prior", [
    ("b=normal(0, 1)", "b", "normal(0, 1)"),
    ("b = student_t(df=3, 0, 1)", "b ", "student_t(df=3, 0, 1)"),  # (the table matches 'b ' as 'b')
    ("b_a=b=normal(0, inf)", "b_a=b", "normal(0, inf)"),  # a name holding '=' (a column a=b)
    ("b_k_e====f=normal(0, 1)", "b_k_e====f", "normal(0, 1)"),
    ("b_f(x)=normal(0,1)", "b_f(x)", "normal(0,1)"),
    ("b_a=b(x)=halfnormal(1)", "b_a=b(x)", "halfnormal(1)"),
    ("b=normal(0,1), sigma=exponential(1)", "b", "normal(0,1), sigma=exponential(1)"),  # (its parse names the ',')
    ("b=foo(1)", "b", "foo(1)"),  # (an unknown distribution: the first '=', and its own error)
    ("b_z =normal(0, 1)", "b_z ", "normal(0, 1)"),  # (a column 'z ')
])
def test_prior_name_ends_at_the_distributions_call(text: str, name: str, prior: str) -> None:
    from hbm_formula.cli import _prior_arg

    assert _prior_arg(text) == (name, prior)
    assert _prior_arg("=" * 100_000 + "normal(0, 1)")[0] == "=" * 99_999  # (a regular expression: no parse per '=')
