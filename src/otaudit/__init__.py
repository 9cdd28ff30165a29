"""otaudit: a SOC 2 audit trail built from OpenTelemetry traces and logs."""

from otaudit.errors import OtauditError, VerificationError

__version__ = "0.1.0"
__all__ = ["OtauditError", "VerificationError", "__version__"]
