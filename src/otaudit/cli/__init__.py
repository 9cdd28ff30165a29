"""The ``otaudit`` command line: one module per command group."""

from otaudit.cli.main import main

__all__ = ["main"]
