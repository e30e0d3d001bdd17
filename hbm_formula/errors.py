"""One error hierarchy for everything a user can get wrong.

Formula and prior errors carry the offending text and a ``start``/``end`` span so
embedding tools can highlight it their own way; ``str(err)`` renders the text
with a caret line under the span.
"""

from __future__ import annotations


class HBMError(Exception):
    """Base class of every error hbm_formula raises on bad input."""


#: a formula shown under its message: what would break or widen its line, as a space (one character for one)
_ONE_LINE = dict.fromkeys(map(ord, "\t\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"), " ")


class FormulaError(HBMError, ValueError):
    """A formula (or prior, or non-linear expression) that cannot be accepted."""

    def __init__(
        self,
        message: str,
        text: str | None = None,
        start: int | None = None,
        end: int | None = None,
    ) -> None:
        self.message = message
        self.text = text
        self.start = start
        self.end = end if end is not None else (None if start is None else start + 1)
        super().__init__(self._render())

    def _render(self) -> str:
        if self.text is None or self.start is None:
            return self.message
        # one line, each character in its place: every character that breaks a line (for str.splitlines, which the CLI
        # uses) or widens it (a tab) shown as a space
        line = self.text.translate(_ONE_LINE)
        start = min(max(self.start, 0), len(line))
        width = max(1, (self.end or start + 1) - start)
        return f"{self.message}\n  {line}\n  {' ' * start}{'^' * width}"


class PriorError(FormulaError):
    """A prior string that cannot be accepted."""


class DataError(HBMError, ValueError):
    """Data that does not fit the formula or the family."""


def whole_number(name: str, value: object, minimum: int = 0) -> None:
    """Refuse a count that is not a whole number of at least ``minimum`` (``draws='10'``, ``ndraws=2.5``)."""
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise HBMError(f"{name} must be a whole number, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise HBMError(f"{name} must be at least {minimum}, got {value}")


def probability(name: str, value: object) -> None:
    """Refuse an interval probability outside (0, 1)."""
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < float(value) < 1:
        raise HBMError(f"{name} must be a number between 0 and 1 (exclusive), e.g. 0.95; got {value!r}")


def warn(message: str) -> None:
    """A ``UserWarning`` attributed to the first frame outside this package (the user's ``hf.fit`` line), however
    deep inside it the cause was found: Python shows a warning once per place, so the place must be the user's."""
    import os
    import sys
    import warnings

    here = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame, level = sys._getframe(1), 2  # (stacklevel 2: the caller of this function)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(here):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, UserWarning, stacklevel=level)
