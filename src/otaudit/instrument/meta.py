"""What the helpers need of their own, so that they import nothing else of otaudit: their
version (the instrumentation scope's) and their configuration error.

Application teams install them alone as the ``otaudit-instrument`` distribution
(``packages/otaudit-instrument``), which ships this package and depends on the
OpenTelemetry API and SDK only.
"""

from __future__ import annotations

from typing import Final

#: The helpers' version: the instrumentation scope version of what they emit; the same
#: as otaudit's (a test holds them, and the light distribution's, together).
VERSION: Final = "0.1.0"


class ConfigError(ValueError):
    """An option of the helpers is unusable (a trusted proxy that is no address, say)."""
