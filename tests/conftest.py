"""Test setup: CPU only, 4 host devices (so 4 chains run in parallel, as on a
user's machine), fixed seeds, and the shipped example data."""

import os
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in flags:
    flags = (flags + " --xla_force_host_platform_device_count=4").strip()
os.environ["XLA_FLAGS"] = flags
os.environ.setdefault("HBM_FORMULA_CACHE", "0")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "data"
FORMULAS = Path(__file__).resolve().parent / "formulas"


def corpus(name: str) -> list[str]:
    lines = (FORMULAS / name).read_text().splitlines()
    return [ln for ln in lines if ln.strip() and not ln.startswith("#")]


@pytest.fixture(scope="session")
def radon() -> pd.DataFrame:
    return pd.read_csv(DATA / "radon.csv")


@pytest.fixture(scope="session")
def sleepstudy() -> pd.DataFrame:
    return pd.read_csv(DATA / "sleepstudy.csv")


@pytest.fixture(scope="session")
def cbpp() -> pd.DataFrame:
    return pd.read_csv(DATA / "cbpp.csv")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261122)


def simulate_grouped(rng: np.random.Generator, n_groups: int = 12, per_group: int = 20) -> pd.DataFrame:
    """A small data set with a predictor, a grouping factor and several responses."""
    g = np.repeat(np.arange(n_groups), per_group)
    x = rng.normal(size=g.size)
    a = rng.normal(0, 0.5, n_groups)
    eta = 0.3 + 0.8 * x + a[g]
    return pd.DataFrame(
        {
            "g": [f"grp{i:02d}" for i in g],
            "x": x,
            "y": eta + rng.normal(0, 0.7, g.size),
            "yb": (rng.uniform(size=g.size) < 1 / (1 + np.exp(-eta))).astype(int),
            "yc": rng.poisson(np.exp(0.5 + 0.3 * x + 0.5 * a[g])),
            "n": np.full(g.size, 10),
            "ys": rng.binomial(10, 1 / (1 + np.exp(-eta))),
        }
    )


@pytest.fixture
def grouped(rng: np.random.Generator) -> pd.DataFrame:
    return simulate_grouped(rng)
