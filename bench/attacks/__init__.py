"""Hostile but well-formed traffic beside an honest client (issue 14).

Run it alone with ``python -m bench attacks [--quick]``.
"""

from bench.attacks.harness import SCENARIOS, run

__all__ = ["SCENARIOS", "run"]
