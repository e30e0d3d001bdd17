"""Every example script runs, with tiny sample counts."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted(p for p in (Path(__file__).resolve().parents[1] / "examples").glob("*.py") if not p.name.startswith("_"))


# the default run keeps the dose-response example (test_cli fits the radon example through hbmfit --example);
# -m slow runs them all
QUICK_EXAMPLES = ("dose_response",)


@pytest.mark.parametrize("script", [pytest.param(p, marks=() if p.stem in QUICK_EXAMPLES else pytest.mark.slow)
                                    for p in EXAMPLES], ids=[p.stem for p in EXAMPLES])
def test_example_script_runs(script: Path) -> None:
    res = subprocess.run(
        [sys.executable, script.name, "--chains", "2", "--warmup", "60", "--draws", "60", "--no-progress"],
        cwd=script.parent, capture_output=True, text=True, timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "mean" in res.stdout and "r_hat" in res.stdout
