"""The package version, in one place: pyproject.toml reads it, results and reports record it."""

__version__ = "0.1.0"
