"""``python -m hbm_formula`` is ``hbmfit``."""

from .cli import console_main

console_main()
