"""Small instrumented services used by ``otaudit demo`` and shown in ``examples/``."""
