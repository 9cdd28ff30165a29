"""TLS for every listener: OTLP/HTTP, OTLP/gRPC and the read API.

``--tls-cert`` and ``--tls-key`` (PEM) turn TLS on; ``--tls-client-ca``
also requires each client to present a certificate signed by that CA
(mutual TLS). The files are read and checked at start, so a wrong path, a
key that does not match the certificate or an unreadable CA stops
``otaudit serve`` with a message naming the file.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc

from otaudit.errors import ConfigError


@dataclass(frozen=True)
class TlsSettings:
    """The certificate, its key and (for mutual TLS) the CA of the clients."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    def check(self) -> None:
        """ConfigError unless the files load into a server context as given."""
        for option, path in (("--tls-cert", self.cert), ("--tls-key", self.key),
                             ("--tls-client-ca", self.client_ca)):  # fmt: skip
            if path is not None and not path.is_file():
                raise ConfigError(f"{option} {path}: no such file")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(self.cert, self.key)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"--tls-cert {self.cert} / --tls-key {self.key}: cannot use them together: {exc}"
            ) from exc
        if self.client_ca is not None:
            try:
                context.load_verify_locations(self.client_ca)
            except (ssl.SSLError, OSError) as exc:
                raise ConfigError(f"--tls-client-ca {self.client_ca}: {exc}") from exc

    def uvicorn_options(self) -> dict[str, object]:
        """The ``uvicorn.Config`` arguments for these settings."""
        options: dict[str, object] = {"ssl_certfile": str(self.cert), "ssl_keyfile": str(self.key)}
        if self.client_ca is not None:
            options |= {"ssl_ca_certs": str(self.client_ca), "ssl_cert_reqs": ssl.CERT_REQUIRED}
        return options

    def grpc_credentials(self) -> grpc.ServerCredentials:
        """gRPC server credentials for these settings."""
        return grpc.ssl_server_credentials(
            [(self.key.read_bytes(), self.cert.read_bytes())],
            root_certificates=None if self.client_ca is None else self.client_ca.read_bytes(),
            require_client_auth=self.client_ca is not None,
        )
