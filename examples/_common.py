"""Shared argument handling for the example scripts (tiny runs in tests)."""

import argparse
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"


def sampler_args(argv=None) -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--warmup", type=int, default=1000)
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    return dict(chains=a.chains, warmup=a.warmup, draws=a.draws, progress=not a.no_progress)
