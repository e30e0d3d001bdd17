"""The package version, in one place (generated code and fit files name it)."""

__version__ = "0.5.0"
