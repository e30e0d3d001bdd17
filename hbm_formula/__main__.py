"""``python -m hbm_formula`` is ``hbmfit``."""

import sys

from .cli import main

sys.exit(main())
