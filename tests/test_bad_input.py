"""The bad-input matrix of the README: each input gives one clear line and exit 2 (or the API's
HBMError), before any sampling starts, with nothing written."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hbm_formula as hf
from hbm_formula.cli import main


@pytest.fixture
def csv(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"y": rng.normal(size=20), "x": rng.normal(size=20), "g": list("abcd") * 5})
    path = tmp_path / "d.csv"
    df.to_csv(path, index=False)
    return path


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main([*args, "--no-progress"])
    return code, capsys.readouterr().err


# (extra CLI arguments, message) for inputs refused before any sampling
MATRIX = [
    (["y ~ x", "--prior", "b=normal(0, 1e999)"], "the number 1e999 is too large"),
    (["y ~ x", "--prior", "sigma"], "expected NAME=PRIOR"),
    (["y ~ x", "--prior", "b=normal(0, inf)"], "'inf' is not a number a prior can take"),
    # (a review) two priors in one flag: the first '=' before a distribution's call ends the name
    (["y ~ x", "--prior", "b=normal(0,1), sigma=exponential(1)"], "prior for 'b': syntax error at ','"),
    (["y ~ x", "--prior", "b = normal(0, - inf)"], "'-inf' is not a number a prior can take"),
    # (a review) an empty prior, an argument a distribution lacks (named with its parameter), infinite bounds
    (["y ~ x", "--prior", "b="], "prior for 'b': the prior is empty: give a distribution"),
    (["y ~ x", "--prior", "b=normal(0, 1, inf=2)"], "prior for 'b': normal() has no argument 'inf'"),
    (["y ~ a * exp(-k * x)", "--nl", "a ~ 1", "--nl", "k ~ 1, lb = -inf"], "'-inf' is not a bound: lb is a finite"),
    (["y | trunc(ub = Inf) ~ x"], "trunc(ub = Inf): a bound is a finite number or a column"),
    # (a second review) a bound float32 cannot hold; two priors for one name; a missing name; a capital letter
    (["y | trunc(ub = 1e300) ~ x"], "trunc(ub = 1e+300): 1e+300 is beyond what float32 holds"),
    # (a third review) R's -Inf; a bound far beyond the data (its CDF overflowed: most transitions diverged)
    (["y | trunc(lb = -Inf) ~ x"], "trunc(lb = -Inf): a bound is a finite number or a column (R's Inf"),
    (["y | trunc(ub = 1e30) ~ x"], "trunc(ub = 1e+30): the bound is over a million times beyond the data"),
    (["y ~ x", "--prior", "b_x=normal(0, 1)", "--prior", "b_x =normal(0, 5)"], "two priors for 'b_x'"),
    (["y ~ x", "--prior", "=normal(0, 1)"], "no NAME in '=normal(0, 1)'"),
    (["y ~ x", "--prior", "b=Normal(0, 1)"], "unknown prior distribution 'Normal' for b (names are lower case"),
    (["y ~ x", "--prior", "sigma=HalfNormal(1)"], "'HalfNormal' for sigma (names are lower case: halfnormal)"),
    (["y ~ x", "--devices", "0"], "--devices must be at least 1"),
    (["y ~ x", "--batch-size", "8"], "batch_size (minibatches) applies to SVI"),
    (["y ~ x", "--method", "svi", "--guide", "lowrank", "--rank", "0"], "rank must be at least 1"),
    (["y ~ x", "--method", "svi", "--rank", "2"], "rank applies to the lowrank guide"),
    (["y ~ y + x"], "the response 'y' also appears on the right-hand side"),
    (["y ~ x", "--chains", "0"], "chains must be at least 1"),
    (["y ~ x", "--target-accept", "1.5"], "target_accept must be between 0 and 1"),
    (["y ~ x", "--prior", "b=normal(0, 1e-320)"], "beyond what a sampler can compute with"),
    (["y ~ bs(x, df=100000)"], "bs(): df must be a whole number from 1 to 50"),
    (["y ~ poly(x, 2.5)"], "poly(): degree must be a whole number from 1 to 50"),
]


@pytest.mark.parametrize("args,message", MATRIX)
def test_refused_before_sampling(args: list[str], message: str, csv: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "fit.nc"
    code, err = cli([str(csv), *args, "--out", str(out)], capsys)
    assert code == 2, err
    assert err.startswith("hbmfit: error: ") and message in err, err
    assert len(err.strip().splitlines()) <= 3 and "usage:" not in err and "Traceback" not in err
    assert not out.exists()


def test_output_folder_is_refused_up_front(csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = cli([str(csv), "y ~ x", "--out", str(tmp_path)], capsys)
    assert code == 2 and "is a folder" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_is_refused_up_front(csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    code, err = cli([str(csv), "y ~ x", "--out", str(locked / "fit.nc")], capsys)
    assert code == 2 and "cannot write" in err


def test_unwritable_output_folder_via_a_file(csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A path under a regular file cannot be written (works as root too)."""
    code, err = cli([str(csv), "y ~ x", "--out", str(csv / "fit.nc")], capsys)
    assert code == 2 and "cannot write" in err


def test_ragged_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for body, first in (("y,x\n1,2\n3,4,5\n6,7\n", "line 3 has 3"), ("y,x\n1,2\n3\n6,7\n", "line 3 has 1")):
        f = tmp_path / "ragged.csv"
        f.write_text(body)
        code, err = cli([str(f), "y ~ x", "--no-out"], capsys)
        assert code == 2 and "do not have the header's 2 fields" in err and first in err, err


def test_duplicate_header(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "dup.csv"
    f.write_text("y,x,x\n1,2,3\n4,5,6\n")
    code, err = cli([str(f), "y ~ x", "--no-out"], capsys)
    assert code == 2 and "names 'x' more than once" in err


def test_duplicate_column_in_a_data_frame() -> None:
    df = pd.DataFrame([[1.0, 2.0, 3.0], [4.0, 5.0, 7.0], [2.0, 1.0, 0.0]], columns=["y", "x", "x"])
    with pytest.raises(hf.DataError, match="two columns named 'x'"):
        hf.compile("y ~ x", df)


def test_one_row() -> None:
    with pytest.raises(hf.DataError, match="1 usable row"):
        hf.compile("y ~ x", pd.DataFrame({"y": [1.0], "x": [2.0]}))


def test_constant_response() -> None:
    with pytest.raises(hf.DataError, match="constant"):
        hf.compile("y ~ x", pd.DataFrame({"y": [2.0] * 5, "x": np.arange(5.0)}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hf.compile("y ~ x", pd.DataFrame({"y": [0] * 5, "x": np.arange(5.0)}), family="bernoulli")
    assert any("same in every row" in str(w.message) for w in caught)


def test_nul_byte_in_a_group_label() -> None:
    df = pd.DataFrame({"y": [1.0, 2.0, 3.0, 4.0], "x": [0.0, 1.0, 0.0, 1.0], "g": ["a", "b\x00c", "a", "b\x00c"]})
    with pytest.raises(hf.DataError, match="NUL character"):
        hf.compile("y ~ x + (1 | g)", df)
    with pytest.raises(hf.DataError, match="NUL character"):
        hf.compile("y ~ g", df)


def test_nul_byte_in_a_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "nul.csv"
    f.write_bytes(b"y,x,g\n1,0,a\n2,1,b\x00c\n3,0,a\n4,1,b\x00c\n")
    code, err = cli([str(f), "y ~ x + (1 | g)", "--no-out"], capsys)
    assert code == 2 and err.startswith("hbmfit: error: ") and "Traceback" not in err


def test_bad_device_variable(csv: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"} | {"HBM_FORMULA_DEVICES": "abc"}
    res = subprocess.run([sys.executable, "-m", "hbm_formula", str(csv), "y ~ x", "--no-out"], capture_output=True,
                         text=True, env=env, timeout=120)
    assert res.returncode == 2 and "HBM_FORMULA_DEVICES must be a whole number" in res.stderr
    assert "Traceback" not in res.stderr


def test_unknown_fit_option() -> None:
    with pytest.raises(hf.HBMError, match=r"no option 'target_acept' \(did you mean 'target_accept'\?\)"):
        hf.fit("y ~ x", pd.DataFrame({"y": [1.0, 2.0, 3.0], "x": [1.0, 0.0, 2.0]}), target_acept=0.9)


# ---------------------------------------------------------------- data fidelity
def test_csv_group_labels_are_kept_as_text(tmp_path: Path) -> None:
    from hbm_formula.cli import read_table

    f = tmp_path / "labels.csv"
    f.write_text("y,x,g\n" + "".join(f"{i * 0.3},{i % 3},{lab}\n" for i, lab in enumerate(["01", "1", "007", "7", "2"] * 2)))
    spec = hf.parse("y ~ x + (1 | g)")
    from hbm_formula.design import build_design, columns_used, text_columns

    df = read_table(f, columns=columns_used(spec), text_columns=text_columns(spec))
    d = build_design(spec, df)
    assert list(d.groups[0].levels) == ["007", "01", "1", "2", "7"]


def test_missing_group_labels_are_counted(tmp_path: Path) -> None:
    df = pd.DataFrame({"y": np.arange(6.0), "x": np.arange(6.0) % 2, "g": ["a", None, "b", "a", np.nan, "b"]})
    with pytest.warns(UserWarning, match=r"dropped 2 of 6 rows with missing values in g \(2\).*grouping label"):
        hf.compile("y ~ x + (1 | g)", df)


def test_level_names_are_unique_and_unambiguous() -> None:
    df = pd.DataFrame({"y": np.arange(8.0), "g1": ["a:b", "a", "x", "y"] * 2, "g2": ["c", "b:c", "z", "w"] * 2})
    d = hf.compile("y ~ 1 + (1 | g1:g2)", df).design
    levels = d.groups[0].levels
    assert len(set(levels)) == len(levels) == 4 and "`a:b`:c" in levels and "a:`b:c`" in levels
    mixed = pd.DataFrame({"y": np.arange(6.0), "g": [1, "1", 2, 1, "1", 2]})
    lv = hf.compile("y ~ 1 + (1 | g)", mixed).design.groups[0].levels
    assert len(set(lv)) == 3 and "'1'" in lv


@pytest.mark.parametrize(
    "formula,columns",
    [
        ("y ~ a * `µg`\na ~ 1", {"µg": [1.0, 2.0, 3.0, 4.0]}),
        ("y ~ log(class)", {"class": [1.0, 2.0, 3.0, 4.0]}),
        ("y ~ k + mean_k * x\nk ~ 1\nmean_k ~ 1", {"x": [1.0, 2.0, 3.0, 4.0]}),
        ("y ~ k + c_k * x\nk ~ 1\nc_k ~ 1", {"x": [1.0, 2.0, 3.0, 4.0]}),
        ("y ~ lambda * jnp + dist\nlambda ~ 1\ndist ~ 1", {"jnp": [1.0, 2.0, 3.0, 4.0]}),
    ],
)
def test_generated_names_never_collide_or_break(formula: str, columns: dict[str, list[float]]) -> None:
    from numpyro import handlers

    df = pd.DataFrame({"y": [1.0, 2.5, 2.9, 4.2], **columns})
    names = [ln.split("~")[0].strip() for ln in formula.splitlines()[1:]]
    cm = hf.compile(formula, df, priors={f"Intercept_{n}": "normal(0, 1)" for n in names})
    tr = handlers.trace(handlers.seed(cm.model, 0)).get_trace(**cm.data)
    point = {k: v["value"] for k, v in tr.items() if v["type"] == "sample" and not v["is_observed"]}
    assert np.isfinite(cm.log_density(point))
    assert {f"Intercept_{n}" for n in names} <= set(point)


def test_written_files_follow_the_umask(tmp_path: Path) -> None:
    from hbm_formula.results import write_text_atomic

    old = os.umask(0o022)
    try:
        write_text_atomic("x", tmp_path / "code.py")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "code.py").stat().st_mode) == 0o644


def test_stale_temporary_files_are_cleaned(tmp_path: Path) -> None:
    from hbm_formula.results import write_text_atomic

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".code.py.hbmtmp-{int(dead.stdout)}-abc.tmp"
    stale.write_text("half")
    write_text_atomic("x", tmp_path / "code.py")
    assert not stale.exists() and (tmp_path / "code.py").read_text() == "x"


# ---------------------------------------------------------------- numerics that deserve a clear word
def test_complete_separation_is_reported() -> None:
    df = pd.DataFrame({"y": [0, 0, 0, 0, 1, 1, 1, 1], "x": [1.0, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0]})
    with pytest.warns(UserWarning, match="complete separation.*x > 3.5") as said:
        hf.compile("y ~ x", df, family="bernoulli")
    # the fix in both spellings: Python's and the command line's
    assert "priors={'b': 'normal(0, 1)'}; CLI: --prior 'b=normal(0, 1)'" in str(said[0].message), str(said[0].message)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_what_the_data_showed_is_in_every_fits_warnings_and_its_file(tmp_path: Path) -> None:
    """Python shows a warning once per place in the code: in a loop of fits, only the first separated one would
    say so. Each fit keeps its data's warnings (separation, a constant response, dropped rows), saved with it."""
    df = pd.DataFrame({"y": [0, 0, 0, 0, 1, 1, 1, 1], "x": [1.0, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0]})
    fits = [hf.fit("y ~ x", df.assign(x=df.x + k), family="bernoulli", chains=1, warmup=100, draws=100,
                   progress=False) for k in range(2)]
    for k, fit in enumerate(fits):
        assert any(re.search(rf"complete separation.*x > {3.5 + k:g}", m) for m in fit.warnings), fit.warnings
    gappy = pd.DataFrame({"y": [0, 0, 0, 0, 0, 0, 0], "x": [1.0, 2.0, None, 3.0, 4.0, 5.0, 6.0]})
    fit = hf.fit("y ~ x", gappy, family="bernoulli", chains=1, warmup=100, draws=100, progress=False)
    assert any("dropped 1 of 7 rows" in m for m in fit.warnings), fit.warnings
    assert any("is the same in every row" in m for m in fit.warnings), fit.warnings
    fit.save(tmp_path / "f.nc")
    with warnings.catch_warnings(record=True) as caught:  # said at the fit, kept in the file: not said again
        warnings.simplefilter("always")
        assert hf.load(tmp_path / "f.nc").warnings[:2] == fit.warnings[:2]
    assert not [w for w in caught if issubclass(w.category, UserWarning)], [str(w.message) for w in caught]
    # each is said at the user's line (here), not inside the package, where every fit would share one place
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hf.compile("y ~ x", gappy, family="bernoulli")
    assert len(caught) == 2 and all(w.filename == __file__ for w in caught), [(w.filename, w.lineno) for w in caught]
    # a binomial response: its trials all succeed or all fail, not "the response is 1"
    binom = pd.DataFrame({"k": [0, 0, 0, 5, 5, 5], "n": 5, "x": [1.0, 2.0, 3.0, 6.0, 7.0, 8.0]})
    with pytest.warns(UserWarning, match=r"complete separation: every trial succeeds whenever x > 4\.5 and every "
                                         r"trial the other way below"):
        hf.compile("k | trials(n) ~ x", binom, family="binomial")


@pytest.mark.parametrize("show", ["--show-priors", "--show-code"])
def test_cli_shows_what_the_data_showed_as_warning_lines_without_fitting(tmp_path: Path, show: str,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """(a review) with --show-priors / --show-code, a separation warning came out in Python's raw form (the
    script's path, 'UserWarning:', the line of code), not as the fit's 'warning: ...' lines."""
    path = tmp_path / "sep.csv"
    pd.DataFrame({"y": [0, 0, 0, 0, 1, 1, 1, 1], "x": [1.0, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0]}).to_csv(path, index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # none left to Python's display
        code = main([str(path), "y ~ x", "--family", "bernoulli", show])
    captured = capsys.readouterr()
    assert code == 0
    assert captured.err.startswith("warning: complete separation: the response is 1 whenever x > 3.5"), captured.err
    assert "UserWarning" not in captured.err and "--prior 'b=normal(0, 1)'" in captured.err


def test_separation_at_a_factors_reference_level_is_reported() -> None:
    """The reference level of a treatment-coded factor has no column of its own (its rows are where every one of
    the factor's columns is 0), so the one-column check missed it: rows of that level all 0 leave the intercept
    and the factor's coefficients bounded only by their priors."""
    rng = np.random.default_rng(1)
    f = rng.choice(["a", "b", "c"], 300)
    x = rng.normal(size=300)
    y = (rng.uniform(size=300) < 1 / (1 + np.exp(-(0.5 * x + (f == "b") - 0.3)))).astype(int)
    df = pd.DataFrame({"y": np.where(f == "a", 0, y), "f": f, "x": x, "k": rng.integers(0, 2, 300),
                       "g": rng.integers(0, 10, 300), "free": y})
    n_a = int((f == "a").sum())
    said = rf"separation: where f is at its reference level 'a' \({n_a} rows; no column of its own\), every row fails"
    for formula in ("y ~ x + f", "y ~ x + f + (1 | g)", "y ~ f * k"):
        with pytest.warns(UserWarning, match=said):
            hf.compile(formula, df, family="bernoulli")
    binom = df.assign(t=5, s=np.where(f == "a", 5, rng.integers(0, 6, 300)))
    with pytest.warns(UserWarning, match=r"at its reference level .* every trial succeeds"):
        hf.compile("s | trials(t) ~ x + f", binom, family="binomial")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hf.compile("free ~ x + f * k", df, family="bernoulli")  # not separated: nothing said
    # without an intercept every level has its column, checked as before
    with pytest.warns(UserWarning, match=r"where f\[a\] = 1, every row fails"):
        hf.compile("y ~ 0 + x + f", df, family="bernoulli")
    # a review: a second factor's reference level without an intercept (the first factor stands for it); a label
    # with ']' (found from the factor's levels, not its column names); a one-column factor and a constant response
    # said once
    two = pd.DataFrame({"f": list("abc") * 4, "g": list("ppppqqqqrrrr"), "y": [0, 0, 0, 0, 1, 0, 1, 0, 1, 1, 0, 1]})
    with pytest.warns(UserWarning, match=r"where g is at its reference level 'p' \(4 rows; no column of its own\), "
                                         r"every row fails: the coefficients standing for the intercept"):
        hf.compile("y ~ 0 + f + g", two, family="bernoulli")
    odd = pd.DataFrame({"f": ["a"] * 4 + ["b]"] * 4 + ["c"] * 4, "y": [0] * 8 + [1, 0, 1, 1]})
    with pytest.warns(UserWarning, match=r"where f is at its reference level 'a' \(4 rows; no column of its own\)"):
        hf.compile("y ~ f", odd, family="bernoulli")
    for y, n in (([0, 0, 0, 0, 1, 1, 1, 1], 1), ([0] * 8, 0)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            hf.compile("y ~ f", pd.DataFrame({"f": list("aaaabbbb"), "y": y}), family="bernoulli")
        assert sum(str(w.message).startswith(("separation", "complete separation")) for w in caught) == n, \
            [str(w.message) for w in caught]


def test_separation_of_categorical_and_ordinal_responses_is_reported() -> None:
    """A review: y = a / b / c by thresholds on x gave only R-hat warnings, the cause unnamed."""
    x = np.arange(30.0)
    df = pd.DataFrame({"x": x, "y": np.where(x < 10, "a", np.where(x < 20, "b", "c")),
                       "z": np.random.default_rng(0).normal(size=30)})
    with pytest.warns(UserWarning, match=r"complete separation: the response is 'a' whenever x < 9\.5"):
        hf.compile("y ~ x", df, family="categorical")
    with pytest.warns(UserWarning, match=r"complete separation: x orders the response's categories completely"):
        hf.compile("y ~ x", df, family="cumulative")
    # every category set apart is named, its label quoted as Python would (a review: 'it's')
    two = df.assign(y=np.where(x < 10, "it's", np.where(x < 20, "b", "c")))
    with pytest.warns(UserWarning, match=r"""the response is 'c' whenever x > 19\.5 and "it's" whenever x < 9\.5""") as said:
        hf.compile("y ~ x", two, family="categorical")
    # the fix names the classes a categorical model has that run off (a review: 'b' is refused there): the
    # categories set apart past the reference (sorted: 'b', 'c', "it's"; 'c' is b_mu2, "it's" b_mu3), and both are taken
    both = ("priors={'b_mu2': 'normal(0, 1)', 'b_mu3': 'normal(0, 1)'}; "
            "CLI: --prior 'b_mu2=normal(0, 1)' --prior 'b_mu3=normal(0, 1)'")
    assert both in str(said[0].message), said[0].message
    with pytest.warns(UserWarning, match="complete separation"):
        hf.compile("y ~ x", two, family="categorical", priors={"b_mu2": "normal(0, 1)", "b_mu3": "normal(0, 1)"})
    # a level's separation names the classes of the categories that run off (a second review: one named where two
    # ran): never 'c' (the third, b_mu3) where f = q; every row 'b' (every other category's class runs, 'c' against
    # 'b' too); never the reference 'a' (every class runs against it)
    f = ["p"] * 15 + ["q"] * 15
    for at_q, classes in ((list("ab" * 7 + "a"), ["b_mu3"]), (["b"] * 15, ["b_mu2", "b_mu3"]),
                          (list("bc" * 7 + "b"), ["b_mu2", "b_mu3"])):
        lv = pd.DataFrame({"f": f, "y": list("abc" * 5) + at_q})
        with pytest.warns(UserWarning, match=r"separation: where f\[T\.q\] = 1") as said:
            hf.compile("y ~ f", lv, family="categorical")
        py = ", ".join(f"'{c}': 'normal(0, 1)'" for c in classes)
        cli = " ".join(f"--prior '{c}=normal(0, 1)'" for c in classes)
        assert f"priors={{{py}}}; CLI: {cli})" in str(said[0].message), said[0].message
        hf.compile("y ~ f", lv, family="categorical", priors=dict.fromkeys(classes, "normal(0, 1)"))  # taken
    # (a second review) a level whose rows are all of a category seen nowhere else is complete separation by its 0/1
    # column: every class runs there, not only that category's
    only = pd.DataFrame({"f": ["p"] * 15 + ["q"] * 6, "y": list("abd" * 5) + ["c"] * 6})
    with pytest.warns(UserWarning, match=r"complete separation: the response is 'c' whenever f\[T\.q\] > 0\.5") as said:
        hf.compile("y ~ f", only, family="categorical")
    assert "priors={'b_mu2': 'normal(0, 1)', 'b_mu3': 'normal(0, 1)', 'b_mu4': 'normal(0, 1)'}" in \
        str(said[0].message), said[0].message
    # a two-valued column not coded 0/1, and a binomial row of zero trials (which says nothing), as a review found
    d = np.repeat([1.0, 2.0], 10)
    with pytest.warns(UserWarning, match=r"complete separation: the response is 1 whenever d > 1\.5"):
        hf.compile("y ~ d", pd.DataFrame({"y": (d == 2).astype(int), "d": d}), family="bernoulli")
    binom = pd.DataFrame({"k": [0, 0, 0, 5, 5, 5, 0], "n": [5, 5, 5, 5, 5, 5, 0], "x": [1.0, 2, 3, 6, 7, 8, 9]})
    with pytest.warns(UserWarning, match=r"complete separation: every trial succeeds whenever x > 4\.5"):
        hf.compile("k | trials(n) ~ x", binom, family="binomial")
    # one cut separated is not separation for an ordinal model (its common slope is bounded by the other cuts)
    mixed = df.assign(y=np.where(x < 10, "a", np.where(x % 2 == 0, "b", "c")))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hf.compile("y ~ x", mixed, family="cumulative")
        hf.compile("y ~ z", df, family="categorical")
        hf.compile("y ~ z", df, family="cumulative")


def test_separation_at_a_factor_level_of_categorical_and_ordinal_responses_is_reported() -> None:
    """A level of a factor (its column's rows, or the reference level's) where an ordinal response is always in its
    lowest or highest category, or a categorical response never takes a category (or only one): that coefficient
    runs off, bounded only by its prior; random data say nothing."""
    rng = np.random.default_rng(0)
    f, y = rng.choice(["u", "v", "w"], 120), rng.choice(["a", "b", "c"], 120)
    df = pd.DataFrame({"y": y, "f": f, "x": rng.normal(size=120)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for family in ("cumulative", "categorical"):
            hf.compile("y ~ f + x", df, family=family)
    n_w, n_u, n_v = (int((f == k).sum()) for k in "wuv")
    low = df.assign(y=np.where(f == "w", "a", y))
    with pytest.warns(UserWarning, match=rf"where f\[T\.w\] = 1 \({n_w} rows\), every row is in the lowest category "
                                         r"\('a'\): the coefficient of f\[T\.w\] is bounded only by its prior"):
        hf.compile("y ~ f + x", low, family="cumulative")
    with pytest.warns(UserWarning, match=rf"where f\[T\.w\] = 1 \({n_w} rows\), every row is 'a'"):
        hf.compile("y ~ f + x", low, family="categorical")
    high = df.assign(y=np.where(f == "u", "c", y))  # the reference level
    with pytest.warns(UserWarning, match=rf"where f is at its reference level 'u' \({n_u} rows; no column of its "
                                         r"own\), every row is in the highest category \('c'\): the thresholds and"):
        hf.compile("y ~ f + x", high, family="cumulative")
    never = df.assign(y=np.where((f == "v") & (y == "b"), "a", y))
    with pytest.warns(UserWarning, match=rf"where f\[T\.v\] = 1 \({n_v} rows\), the response is never 'b'"):
        hf.compile("y ~ f + x", never, family="categorical")
    with warnings.catch_warnings():  # an ordinal response missing a middle category at a level: bounded
        warnings.simplefilter("error")
        hf.compile("y ~ f + x", never, family="cumulative")
    # a column already named for complete separation is not named twice; a hostile column name is only quoted
    d = np.repeat([0.0, 1.0], 15)
    two = pd.DataFrame({"y": np.where(d == 1, "c", rng.choice(["a", "b"], 30)), "{0} d": d})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hf.compile("y ~ `{0} d`", two, family="categorical")
    said = [str(w.message) for w in caught if "separation" in str(w.message)]
    assert len(said) == 1 and "the response is 'c' whenever {0} d > 0.5" in said[0], said


def test_large_counts_switch_to_double_precision() -> None:
    from hbm_formula.design import float32_risk

    rng = np.random.default_rng(0)
    x = rng.normal(size=100)
    df = pd.DataFrame({"y": rng.poisson(np.exp(16 + 0.1 * x)), "x": x})
    d = hf.compile("y ~ x", df, family="poisson").design
    assert "counts up to" in float32_risk(d)
    assert float32_risk(hf.compile("y ~ x", df.assign(y=df.y // 10**5), family="poisson").design) is None


def test_prior_constants_beyond_float32_switch_to_double_precision() -> None:
    from hbm_formula.design import prior_range_risk

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"y": rng.normal(size=30), "x": rng.normal(size=30)})
    cm = hf.compile("y ~ x", df, priors={"b": "normal(0, 1e39)"})
    assert "beyond float32's range" in prior_range_risk(cm.params)
    assert prior_range_risk(hf.compile("y ~ x", df).params) is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = hf.fit("y ~ x", df, priors={"b": "normal(0, 1e39)"}, chains=1, warmup=100, draws=100, progress=False)
    assert any("double precision" in n for n in fit.notes)
    assert np.isfinite(fit.idata.posterior["b"].values).all()


@pytest.mark.parametrize("kw,message", [
    ({"draws": "10"}, "draws must be a whole number, got '10' (str)"),
    ({"chains": 1.5}, "chains must be a whole number"),
    ({"seed": -1}, "seed must be at least 0"),
])
def test_counts_must_be_whole_numbers(kw: dict, message: str) -> None:
    df = pd.DataFrame({"y": [1.0, 2.0, 3.5, 4.0], "x": [0.0, 1.0, 2.0, 3.0]})
    with pytest.raises(hf.HBMError, match=message.replace("(", r"\(").replace(")", r"\)")):
        hf.fit("y ~ x", df, progress=False, **kw)


def test_the_dose_of_a_drc_function_must_be_a_column() -> None:
    df = pd.DataFrame({"resp": np.arange(8.0), "dose": np.arange(8.0)})
    with pytest.raises(hf.FormulaError, match="the dose, its first argument, must be a data column; 'b' is a parameter"):
        hf.compile("resp ~ LL4(b, b, c, d, e)\nb ~ 1\nc ~ 1\nd ~ 1\ne ~ 1", df)


def test_cli_output_into_a_closed_pipe_is_not_an_error(tmp_path: Path) -> None:
    """hbmfit ... | head -1: the reader leaves before hbmfit writes; hbmfit exits quietly, not with an internal error."""
    rng = np.random.default_rng(0)
    path = tmp_path / "d.csv"
    pd.DataFrame({"y": rng.normal(size=20), "x": rng.normal(size=20)}).to_csv(path, index=False)
    proc = subprocess.run(f"{sys.executable} -m hbm_formula {path} 'y ~ x' --show-priors | true",
                          shell=True, capture_output=True, text=True, timeout=120)
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
