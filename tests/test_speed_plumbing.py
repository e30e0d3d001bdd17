"""The plumbing behind time-to-first-posterior (issue 14): progress between compiled chunks (no
host callbacks in the program, one line per tenth in a log), a persistent compilation cache that a
second process hits, and imports that leave ArviZ and matplotlib alone until they are needed.
Timings themselves are measured in benchmarks/, never here."""

import contextlib
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hbm_formula as hf
from hbm_formula import infer, progcache

ROOT = Path(__file__).resolve().parents[1]


def test_nuts_progress_is_one_line_per_chunk_in_a_log(grouped: pd.DataFrame, capsys: pytest.CaptureFixture) -> None:
    """stderr is not a terminal under pytest: short lines between compiled chunks, no bar redraws."""
    warmup, draws = 3 * infer.CHUNK // 2, 3 * infer.CHUNK // 2
    hf.fit("y ~ x + (1 | g)", grouped, chains=2, warmup=warmup, draws=draws, seed=1, progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("NUTS: ")]
    done = [int(m.group(1)) for m in (re.match(r"NUTS: (\d+)/(\d+) iterations per chain", ln) for ln in lines) if m]
    total = warmup + draws
    assert len(done) == len(lines) >= 2
    assert done == sorted(done) and done[-1] == total
    # each report is at a chunk boundary (or the end): progress is shown between compiled calls
    assert all(d % infer.CHUNK == 0 or d == total for d in done)
    assert "warmup" in lines[0] and "sampling" in lines[-1]


@pytest.mark.filterwarnings("ignore::UserWarning")  # a short run: its R-hat is not the point
def test_progress_off_prints_nothing(grouped: pd.DataFrame, capsys: pytest.CaptureFixture) -> None:
    hf.fit("y ~ x + (1 | g)", grouped, chains=2, warmup=100, draws=100, seed=1, progress=False)
    assert "NUTS" not in capsys.readouterr().err


def test_progress_lines_are_at_most_one_per_tenth(capsys: pytest.CaptureFixture) -> None:
    bar = infer.Progress(1000, "SVI", True, unit="steps at most")
    for _ in range(40):
        bar.update(25, "ELBO 1")
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    assert [ln.split()[1] for ln in lines] == [f"{k}/1000" for k in range(100, 1001, 100)]


_FIT = """
import sys
import pandas as pd
import hbm_formula as hf
df = pd.read_csv(sys.argv[1])
hf.fit("Reaction ~ Days + (Days | Subject)", df, chains=2, warmup=100, draws=100, seed=0, progress=False)
"""


def test_second_fit_in_a_new_process_hits_the_compilation_cache(tmp_path: Path) -> None:
    """The sampler is written to the persistent cache (no host callbacks keep it out), and a second
    process fitting the same structure compiles nothing new: the cache directory gains no entries."""
    cache = tmp_path / "jax-cache"
    env = {k: v for k, v in os.environ.items() if k not in ("HBM_FORMULA_CACHE", "JAX_COMPILATION_CACHE_DIR")}
    env["HBM_FORMULA_CACHE"] = str(cache)
    # every program cached, however quick its compile: with the default 0.5 s floor, a small program whose
    # compile time straddles it on a busy machine is written by the slower process only (not a miss)
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    cmd = [sys.executable, "-c", _FIT, str(ROOT / "examples" / "data" / "sleepstudy.csv")]
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=600)
    first = sorted(p.name for p in cache.rglob("*") if p.is_file())
    assert first, "the first fit wrote nothing to the compilation cache"
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=600)
    second = sorted(p.name for p in cache.rglob("*") if p.is_file())
    new = set(second) - set(first)
    # JAX records cache hits as "-atime" companions of the entries; no new executable may appear
    assert not {n for n in new if not n.endswith("-atime")}, new


_REFIT = """
import sys
import numpy as np, pandas as pd
import hbm_formula as hf
from hbm_formula import infer
def traced(*a, **k):
    raise AssertionError("traced the model again")
lowered = []
if sys.argv[2] == "refit":  # the sampler's and the auto measurement's programs (and shapes) must come from disk
    infer.nuts_functions = traced
    import jax
    jax.eval_shape = traced
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, d, **kw: lowered.append(kw.get("fun_name"))
        if event == "/jax/core/compile/jaxpr_to_mlir_module_duration" else None)
df = pd.read_csv(sys.argv[1])
fit = hf.fit("Reaction ~ Days + (Days | Subject)", df, chains=2, warmup=100, draws=100, seed=int(sys.argv[3]),
             progress=False)
print("lowered", ",".join(lowered))
print("checksum", repr(float(np.asarray(fit.idata.posterior["b"]).sum())))
"""


def test_a_refit_in_a_new_process_reads_its_traced_programs_from_disk(tmp_path: Path) -> None:
    """With the cache warm, a refit of the same model does not trace NUTS around the model again (nor the auto
    measurement): the exported programs are read back, and they give the draws the traced ones gave; another seed
    is an argument of the same programs."""
    env = {k: v for k, v in os.environ.items() if k not in ("HBM_FORMULA_CACHE", "JAX_COMPILATION_CACHE_DIR")}
    env["HBM_FORMULA_CACHE"] = str(tmp_path / "cache")

    def run(mode: str, seed: int) -> str:
        cmd = [sys.executable, "-c", _REFIT, str(ROOT / "examples" / "data" / "sleepstudy.csv"), mode, str(seed)]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-2000:]
        assert "could not measure" not in out.stderr, out.stderr[-2000:]
        if mode == "refit":
            # only the programs read from disk (each lowered as "jit(call)"): the auto measurement's three passes, the
            # start's map, NUTS's start, chunk and constraining, the log-likelihood; no small program for a host
            # array put on a device ("stage"), the chains' keys or the compile options' probe (each ~10-70 ms)
            lowered = out.stdout.split("lowered")[1].split("checksum")[0].strip().split(",")
            assert set(lowered) == {"jit(call)"} and len(lowered) <= 8, lowered
        return out.stdout.split("checksum")[1].strip()

    first = run("first", 0)
    names = {p.name.split("-")[0] + "-" + p.name.split("-")[1] for p in (tmp_path / "cache" / "exported").iterdir()}
    assert {"nuts-init", "nuts-chunk", "nuts-constrain", "auto-block", "log-lik"} <= names
    assert run("refit", 0) == first
    assert run("refit", 1) != first


def test_host_data_reach_a_device_without_a_compiled_program() -> None:
    """``infer.on_device`` puts host data where ``jnp.asarray`` would (same dtype and values) without the program
    ``jnp.asarray`` compiles per shape in JAX 0.10 (ten of them took ~0.15 s of a warm fit)."""
    import jax
    import jax.numpy as jnp

    values = [np.linspace(0, 1, 7), np.arange(5), np.array([True, False]), np.float64(2.5), [[1.0, 2.0]],
              np.zeros((3, 0)), jnp.ones(3)]
    wanted = [jnp.asarray(v) for v in values]
    lowered: list[str] = []

    def listen(event: str, duration: float, **kw: object) -> None:
        if event == "/jax/core/compile/jaxpr_to_mlir_module_duration":
            lowered.append(str(kw.get("fun_name")))

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        got = [infer.on_device(v) for v in values]
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert lowered == []
    for g, w in zip(got, wanted, strict=True):
        assert isinstance(g, jax.Array) and g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_array_equal(np.asarray(g), np.asarray(w))


def test_the_parser_tables_are_kept_whole_in_the_cache_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The LALR tables (0.25 s to build) are read from the cache folder by the next process, from a file written
    whole (no half file left beside it); a damaged file is built again and rewritten; with the cache off nothing
    is written."""
    import importlib

    import lark.lark

    P = importlib.import_module("hbm_formula.parse")
    built: list[int] = []
    real = lark.lark.load_grammar

    def spy(*a: object, **k: object) -> object:
        built.append(1)
        return real(*a, **k)

    monkeypatch.setattr(lark.lark, "load_grammar", spy)
    monkeypatch.setenv("HBM_FORMULA_CACHE", str(tmp_path))
    formula = "y ~ x + log(z) + (1 + x | g)"
    try:
        P._parser.cache_clear()
        first = hf.parse(formula)
        files = sorted((tmp_path / "lark").iterdir())
        assert len(files) == 1 and files[0].suffix == ".pickle" and files[0].stat().st_size > 1000, files
        assert built == [1]
        P._parser.cache_clear()  # as a new process: the tables come from the file
        assert hf.parse(formula) == first and built == [1]
        with pytest.raises(hf.FormulaError, match="unclosed parenthesis"):  # its syntax errors too
            hf.parse("y ~ (1 | g")
        files[0].write_bytes(b"not a pickle")
        P._parser.cache_clear()
        assert hf.parse(formula) == first and built == [1, 1]
        assert files[0].stat().st_size > 1000 and sorted((tmp_path / "lark").iterdir()) == files
        # a file that loads but with other start rules (another release's options): built again (a review), and the
        # temporary file of a killed process's write is removed then (written as the compiled programs are)
        from lark import Lark

        with open(files[0], "wb") as f:
            Lark.open_from_package("hbm_formula.grammar", "formula.lark", parser="lalr", start=["model"]).save(f)
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        stale = files[0].with_name(f".{files[0].name}.hbmtmp-{int(dead.stdout)}-abc.tmp")
        stale.write_bytes(b"half")
        P._parser.cache_clear()
        before = len(built)
        assert hf.parse(formula) == first and len(built) == before + 1 and not stale.exists()
        hf.default_priors("y ~ x", pd.DataFrame({"y": [1.0, 2.0, 4.0], "x": [0.0, 1.0, 3.0]}),
                          priors={"b": "normal(0, 1)"})  # (the prior rule)
        monkeypatch.setenv("HBM_FORMULA_CACHE", "0")
        P._parser.cache_clear()
        assert hf.parse(formula) == first and len(built) == before + 2
    finally:
        P._parser.cache_clear()


def test_the_compile_options_note_is_probed_again_when_unreadable(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Whether this XLA takes the classic emitters' option is kept in a note in the cache folder; a note that is not
    'yes' or 'no' (bytes that are not UTF-8, a review found: every fit failed) is probed again and rewritten."""
    import jaxlib

    monkeypatch.setenv("HBM_FORMULA_CACHE", str(tmp_path))
    note = tmp_path / f"xla-classic-emitters-{jaxlib.__version__}"
    for content in (b"\xff\xfe\x00garbage", b"", b"maybe"):
        note.write_bytes(content)
        monkeypatch.setattr(infer, "_CLASSIC", [])
        with infer.compiling_for(10):
            assert infer.compiler_options() == {"xla_cpu_use_fusion_emitters": False}
        assert note.read_bytes() == b"yes"
    note.write_bytes(b"no")  # read, not probed: the defaults
    monkeypatch.setattr(infer, "_CLASSIC", [])
    with infer.compiling_for(10):
        assert infer.compiler_options() is None


@pytest.fixture
def exported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Traced programs kept in a temporary folder (JAX's compilation cache stays off in the tests)."""
    where = tmp_path / "exported"
    monkeypatch.setattr(progcache, "folder", lambda: where)
    return where


def _files(where: Path) -> set[str]:
    return {p.name for p in where.glob("*.jaxexport")} if where.exists() else set()


@pytest.mark.filterwarnings("ignore::UserWarning")  # short runs: their R-hat is not the point
def test_the_programs_on_disk_are_named_by_everything_they_are_built_from(grouped: pd.DataFrame,
                                                                          exported: Path) -> None:
    """Same model and data shapes: the same files, whatever the seed, the data's values or the priors' numbers, and
    the same draws as a traced run. Another warmup, kind of prior or number of rows: other files."""
    opts = dict(chains=2, warmup=60, draws=40, progress=False, param="noncentered")
    f = "y ~ x + (1 | g)"
    first = hf.fit(f, grouped, seed=1, **opts).idata.posterior["b"].values
    files = _files(exported)
    assert {n.split("-")[0] + "-" + n.split("-")[1] for n in files} >= {"nuts-init", "nuts-chunk", "nuts-constrain"}
    again = hf.fit(f, grouped, seed=1, **opts).idata.posterior["b"].values
    other_seed = hf.fit(f, grouped, seed=2, **opts).idata.posterior["b"].values
    # other values of the data, and so other default priors (scaled by the response's mean and SD), and another
    # prior's numbers: all arguments of the same programs
    shifted = grouped.assign(y=10 * grouped.y + 50.0)
    shifted_icept = hf.fit(f, shifted, seed=1, **opts).idata.posterior["Intercept"].values
    tight = hf.fit(f, grouped, seed=1, **opts, priors={"sigma": "exponential(2)"}).idata.posterior["b"].values
    assert _files(exported) == files
    np.testing.assert_array_equal(again, first)
    assert not np.allclose(other_seed, first)
    assert 40 < np.median(shifted_icept) < 60  # new answer, same programs
    assert not np.allclose(tight, first)
    traced = progcache.folder
    try:
        progcache.folder = lambda: None  # no cache: traced and jitted as it is
        plain = hf.fit(f, grouped, seed=1, **opts).idata.posterior["b"].values
    finally:
        progcache.folder = traced
    np.testing.assert_allclose(plain, first, rtol=1e-5, atol=1e-6)

    def new_after(**changes: object) -> set[str]:
        before = _files(exported)
        data = changes.pop("data", grouped)
        hf.fit(changes.pop("formula", f), data, seed=1, **(opts | changes))
        return {n.split("-")[0] + "-" + n.split("-")[1] for n in _files(exported) - before}

    assert "nuts-chunk" in new_after(warmup=80)
    assert "nuts-chunk" in new_after(target_accept=0.9)
    assert "nuts-chunk" in new_after(priors={"sigma": "gamma(2, 1)"})
    assert "nuts-chunk" in new_after(data=grouped.iloc[:-20])


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_damaged_missing_or_swapped_program_file_is_traced_again(grouped: pd.DataFrame, exported: Path) -> None:
    """Whatever state the folder is left in (every file damaged; the chunk program alone missing, as after a
    Ctrl-C between the two writes; programs under each other's names), the fit traces what it cannot use and
    gives the same draws (a review: a start program without its chunk crashed every later fit)."""
    opts = dict(chains=2, warmup=60, draws=40, progress=False, param="noncentered", seed=1)
    first = hf.fit("y ~ x + (1 | g)", grouped, **opts).idata.posterior["b"].values

    def named(kind: str) -> Path:
        return next(exported.glob(f"{kind}-*.jaxexport"))

    for p in exported.glob("*.jaxexport"):
        p.write_bytes(b"not a program")
    again = hf.fit("y ~ x + (1 | g)", grouped, **opts).idata.posterior["b"].values
    np.testing.assert_array_equal(again, first)
    assert all(p.stat().st_size > 1000 for p in exported.glob("*.jaxexport"))  # rewritten
    named("nuts-chunk").unlink()
    np.testing.assert_array_equal(hf.fit("y ~ x + (1 | g)", grouped, **opts).idata.posterior["b"].values, first)
    init, chunk = named("nuts-init"), named("nuts-chunk")
    a, b = init.read_bytes(), chunk.read_bytes()
    init.write_bytes(b)
    chunk.write_bytes(a)
    (lik := named("log-lik")).write_bytes(named("nuts-constrain").read_bytes())
    fit = hf.fit("y ~ x + (1 | g)", grouped, **opts)
    np.testing.assert_array_equal(fit.idata.posterior["b"].values, first)
    assert fit.idata.log_likelihood["y"].shape[-1] == len(grouped)
    assert lik.read_bytes() != named("nuts-constrain").read_bytes()  # rewritten


def test_program_files_follow_the_umask_and_jax_settings(grouped: pd.DataFrame, exported: Path) -> None:
    """Files get the umask's permissions (a shared cache folder), and JAX's random-key setting names them too (a
    review: a cache filled with rbg keys crashed a default process)."""
    import jax

    from hbm_formula import progcache

    old = os.umask(0o002)
    try:
        progcache.write(exported / "probe.json", b"[]")
    finally:
        os.umask(old)
    assert (exported / "probe.json").stat().st_mode & 0o777 == 0o664
    args = (jax.ShapeDtypeStruct((3,), np.float32),)
    default = progcache.file_for("nuts-chunk", ("model", "x"), args, False)
    with jax.default_prng_impl("rbg"):
        assert progcache.file_for("nuts-chunk", ("model", "x"), args, False) != default


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_wrapped_model_keeps_nothing_on_disk(grouped: pd.DataFrame, exported: Path) -> None:
    """shard_data runs a wrapper around the generated model (an observation mask): not named by the source alone,
    so nothing of it is kept."""
    hf.fit("y ~ x + (1 | g)", grouped, chains=2, warmup=60, draws=40, progress=False, param="noncentered",
           shard_data=True)
    assert not {n for n in _files(exported) if n.startswith("nuts-")}


_SVI_THEN_NUTS = """
import sys, warnings
import jax, pandas as pd
import hbm_formula as hf
warnings.simplefilter("ignore")
df = pd.read_csv(sys.argv[1])
hf.fit("Reaction ~ Days + (1 | Subject)", df, method="svi", steps=500, progress=False)
print("devices", jax.local_device_count())
fit = hf.fit("Reaction ~ Days + (1 | Subject)", df, chains=2, warmup=50, draws=50, progress=False)
print("notes", fit.notes)
"""


def test_an_svi_process_keeps_one_device_and_a_later_nuts_fit_says_how_to_get_more() -> None:
    """SVI runs on one device (with more devices than cores a one-device program runs up to 2x slower), so a
    process whose first fit is SVI starts JAX with one; a NUTS fit after it says its chains ran vectorized and
    how to run them in parallel."""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "HBM_FORMULA_DEVICES")}
    cmd = [sys.executable, "-c", _SVI_THEN_NUTS, str(ROOT / "examples" / "data" / "sleepstudy.csv")]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, timeout=600).stdout
    assert "devices 1" in out
    if (os.cpu_count() or 1) > 1:
        assert "ran vectorized on one CPU device" in out and "set_host_devices(4)" in out


def test_import_leaves_arviz_and_matplotlib_alone() -> None:
    code = (
        "import sys, hbm_formula, hbm_formula.cli\n"
        "heavy = [m for m in ('arviz', 'matplotlib', 'xarray', 'scipy.stats') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == ""


def _maps() -> int:
    with open("/proc/self/maps", "rb") as f:
        return sum(1 for _ in f)


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="memory maps are counted on Linux")
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_many_fits_in_one_process_do_not_pile_up_compiled_programs(grouped: pd.DataFrame,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """JAX's in-memory caches keep every fit's programs (about 1,000 memory maps each), which crashes a
    process after ~60 fits at Linux's map limit; past MAP_SHARE of the limit they are released."""
    def fits() -> int:
        start = _maps()
        for seed in range(3):
            hf.fit("y ~ x + (1 | g)", grouped, chains=2, warmup=50, draws=50, seed=seed, progress=False)
        return _maps() - start

    monkeypatch.setattr(infer, "MAP_SHARE", 1.0)  # never released: the maps pile up
    assert fits() > 600
    monkeypatch.setattr(infer, "MAP_SHARE", 0.0)  # released after every fit
    assert fits() < 200


@pytest.mark.filterwarnings("ignore::UserWarning")  # short runs: their R-hat is not the point
def test_a_fit_on_small_data_compiles_with_xlas_classic_fusion_emitters(grouped: pd.DataFrame,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Up to SMALL_DATA_ROWS rows every program a fit makes (the measurement, the start, the sampler, the
    log-likelihood) is compiled with the classic emitters (half the compile time, where compiling is most of
    the fit), and those run once (NUTS's start, its sampler's start, the draws' constraining) without LLVM's
    optimizations too; with more rows, and outside a fit, with XLA's defaults (their gradients are cheaper on
    large data)."""
    made: list[tuple[str, bool, object]] = []
    real = infer.jit

    def spy(fn, once=False, **kwargs):
        made.append((getattr(fn, "__name__", type(fn).__name__), once, infer.compiler_options(once)))
        return real(fn, once=once, **kwargs)

    monkeypatch.setattr(infer, "jit", spy)
    assert len(grouped) <= infer.SMALL_DATA_ROWS
    fit = hf.fit("y ~ x + (1 | g)", grouped, chains=2, warmup=100, draws=100, seed=1, progress=False)
    names = [n for n, _, _ in made]  # the measurement's passes, the start, the sampler's start and chunk ("one"
    # per chain), the draws' constraining and the log-likelihood ("one" per draw)
    assert {"block_pass", "aux_pass", "run", "constrain"} <= set(names) and names.count("one") >= 3, names
    classic = {"xla_cpu_use_fusion_emitters": False}
    assert len(made) >= 5 and all(o == (classic | {"xla_backend_optimization_level": 0} if once else classic)
                                  for _, once, o in made), made
    once = {n for n, o, _ in made if o}
    assert {"run", "constrain", "one"} <= once and "block_pass" not in once, made  # "one": the sampler's start
    assert [n for n, o, _ in made if n == "one" and not o], made  # ... not its chunk
    assert abs(float(fit.idata.posterior["b"].mean()) - 0.8) < 0.2  # the same model, right answer
    made.clear()
    monkeypatch.setattr(infer, "SMALL_DATA_ROWS", len(grouped) - 1)  # these rows count as many now
    hf.fit("y ~ x + (1 | g)", grouped, prior_only=True, draws=50, progress=False)
    assert made and all(o is None for _, _, o in made), made
    assert infer.compiler_options() is None and infer.compiler_options(once=True) is None
    import jax

    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    monkeypatch.setattr(infer, "_CLASSIC", [])
    with infer.compiling_for(10):
        assert infer.compiler_options() is None  # not on CPU: nothing to choose


@pytest.mark.filterwarnings("ignore:R-hat:UserWarning", "ignore:bulk ESS:UserWarning")
def test_a_fit_lowers_random_draws_unrolled_with_the_same_bits_and_restores_jaxs_rule(
        grouped: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    """Around NUTS's programs (``unrolled_threefry``) JAX's threefry hash is lowered for CPU without its rolled
    loop of 5 rounds (a leapfrog step 0.84-0.94 times as dear: benchmarks/bench_threefry.py); the bits are the
    same, and JAX's own rule is back afterwards (also after an error), and in a fit's other programs (a prior
    predictive's draws: unrolled, a Student-t's gamma draws did not finish compiling). A Gaussian fit's draws are
    bit-identical with JAX's rule (a Student-t's may differ: XLA compiles the arithmetic around the hash into
    other kernels)."""
    import jax

    found = infer._threefry_rules()
    if jax.default_backend() != "cpu" or found is None:
        pytest.skip("JAX's CPU lowering rules are not where this JAX version keeps them")
    table, prim, _ = found
    jax_rule = table.get(prim)

    def draws() -> tuple[np.ndarray, str]:
        f = jax.jit(lambda k: jax.random.uniform(jax.random.fold_in(k, 3), (5,)))
        key = jax.random.PRNGKey(7)
        return np.asarray(f(key)), f.lower(key).as_text()

    outside, rolled_text = draws()
    jax.clear_caches()
    with infer.unrolled_threefry():
        inside, unrolled_text = draws()
        assert table.get(prim) is not jax_rule
    jax.clear_caches()
    assert table.get(prim) is jax_rule  # restored
    assert np.array_equal(outside, inside)
    assert "stablehlo.while" in rolled_text and "stablehlo.while" not in unrolled_text
    with pytest.raises(RuntimeError, match="boom"), infer.unrolled_threefry():
        raise RuntimeError("boom")
    assert table.get(prim) is jax_rule
    seen: list[object] = []
    real_prior = hf.CompiledModel.sample_prior
    monkeypatch.setattr(hf.CompiledModel, "sample_prior",
                        lambda self, *a, **k: seen.append(table.get(prim)) or real_prior(self, *a, **k))
    hf.fit("y ~ x + (1 | g)", grouped, prior_only=True, draws=20, progress=False)
    assert seen == [jax_rule]  # the prior predictive: JAX's own rule

    def posterior() -> dict[str, np.ndarray]:
        fit = hf.fit("y ~ x + (1 | g)", grouped, chains=2, warmup=60, draws=40, seed=3, progress=False)
        return {k: np.asarray(v) for k, v in fit.idata.posterior.items()}

    monkeypatch.setenv("HBM_FORMULA_CACHE", "0")  # (each variant compiles its own programs)
    unrolled = posterior()
    jax.clear_caches()
    monkeypatch.setattr(infer, "unrolled_threefry", contextlib.nullcontext)
    rolled = posterior()
    assert rolled.keys() == unrolled.keys() and all(np.array_equal(rolled[k], unrolled[k]) for k in rolled)


def test_a_program_compiled_behind_is_the_program_and_yields_to_other_arguments() -> None:
    """``compile_behind``: compiled on a thread (one compiled program, no second compile on the call), the same
    results as the jitted function; a call with other shapes, or with arguments the lowering cannot take, goes
    to the function itself (its own error, raised at the call)."""
    import threading

    import jax

    compiled_on: list[str] = []

    def listen(event: str, d: float, **kw: object) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            compiled_on.append(threading.current_thread().name)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        f = jax.jit(lambda d, s: {"y": d["a"] * s + 1.5})
        args = ({"a": np.arange(4, dtype=np.float32)}, np.float32(2.0))
        call = infer.compiled_behind(f, *args)
        assert call({"a": np.ones(4, np.float32)}, np.float32(3.0))["y"].tolist() == [4.5] * 4
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert compiled_on == ["hbm_formula-compile"]  # compiled there, once
    assert call({"a": np.ones(6, np.float32)}, np.float32(1.0))["y"].shape == (6,)  # another shape: f's own
    with pytest.raises(KeyError, match="missing"):  # lowered here: its error raised here, not swallowed
        infer.compiled_behind(jax.jit(lambda v: v["missing"]), {"a": np.ones(2)})


_INTERRUPTED = """
import threading, warnings
warnings.simplefilter("ignore")
import jax.monitoring, pandas as pd, hbm_formula as hf
def listen(event, secs, **kw):  # Ctrl-C landing on the main thread while the chunk compiles on its thread
    if (event.endswith("backend_compile_duration") and threading.current_thread() is threading.main_thread()
            and any(t.name == "hbm_formula-compile" for t in threading.enumerate())):
        raise KeyboardInterrupt
jax.monitoring.register_event_duration_secs_listener(listen)
df = pd.read_csv(__import__("sys").argv[1])
try:
    hf.fit("Reaction ~ Days + (Days | Subject)", df, chains=2, warmup=100, draws=100, progress=False)
except KeyboardInterrupt:
    print("interrupted")
"""


def test_a_fit_interrupted_while_a_program_compiles_behind_leaves_the_process_to_exit_cleanly() -> None:
    """A script that catches Ctrl-C during a fit's compiling ends normally: the compile thread finishes first (as a
    daemon still inside XLA's compiler at the interpreter's exit, it aborted the process: SIGABRT, exit 134)."""
    env = {k: v for k, v in os.environ.items() if k != "HBM_FORMULA_CACHE"} | {"HBM_FORMULA_CACHE": "0"}
    out = subprocess.run([sys.executable, "-c", _INTERRUPTED, str(ROOT / "examples" / "data" / "sleepstudy.csv")],
                         env=env, capture_output=True, text=True, timeout=600)
    assert "interrupted" in out.stdout, out.stderr[-2000:]
    assert out.returncode == 0, out.stderr[-2000:]


def test_a_cached_program_can_be_compiled_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A program kept on disk (``progcache.cached``) lowers as a jitted function does, so the auto measurement's
    passes compile on a thread too; the program is written once, and read back it gives the same values."""
    import jax

    monkeypatch.setenv("HBM_FORMULA_CACHE", str(tmp_path))
    f = jax.jit(lambda x: x * 2 + 1)
    key = ("test-compiled-behind", "0")
    x = np.arange(3, dtype=np.float32)
    first = infer.compiled_behind(progcache.cached("behind", key, f), x)
    assert first(x).tolist() == [1.0, 3.0, 5.0]
    written = sorted(p.name for p in (tmp_path / "exported").iterdir())
    assert len(written) == 1 and written[0].startswith("behind-")
    again = infer.compiled_behind(progcache.cached("behind", key, jax.jit(lambda x: x * 0)), x)  # read, not traced
    assert again(x).tolist() == [1.0, 3.0, 5.0]
