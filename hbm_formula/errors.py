"""One error hierarchy for everything a user can get wrong.

Formula and prior errors carry the offending text and a ``start``/``end`` span so
embedding tools can highlight it their own way; ``str(err)`` renders the text
with a caret line under the span.
"""

from __future__ import annotations


class HBMError(Exception):
    """Base class of every error hbm_formula raises on bad input."""


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
        line = self.text.replace("\n", " ")
        start = min(max(self.start, 0), len(line))
        width = max(1, (self.end or start + 1) - start)
        return f"{self.message}\n  {line}\n  {' ' * start}{'^' * width}"


class PriorError(FormulaError):
    """A prior string that cannot be accepted."""


class DataError(HBMError, ValueError):
    """Data that does not fit the formula or the family."""
