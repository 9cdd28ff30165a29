"""TLS and mutual TLS on every listener, with the OpenTelemetry SDK exporters as clients."""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter

from otaudit.demo import free_port
from support import audit_request, otaudit


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


Issuer = tuple[x509.Name, ec.EllipticCurvePrivateKey]
EC = ec.SECP256R1()


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: Issuer | None,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    """A certificate with the extensions strict X.509 verification wants."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = issuer if issuer else (name, key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if not ca:
        usage = (
            x509.oid.ExtendedKeyUsageOID.SERVER_AUTH
            if server
            else (x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH)
        )
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path  # a client certificate from another CA
    stranger_key: Path


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())  # fmt: skip


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca_key, other_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca = _cert("otaudit test CA", ca_key, None, ca=True)
    other = _cert("another CA", other_key, None, ca=True)
    server_key, client_key, stranger_key = (
        ec.generate_private_key(ec.SECP256R1()) for _ in range(3)
    )
    server = _cert("localhost", server_key, (ca.subject, ca_key), server=True)
    client = _cert("exporter", client_key, (ca.subject, ca_key))
    stranger = _cert("stranger", stranger_key, (other.subject, other_key))
    return Pki(
        _write(d / "ca.pem", _pem(ca)),
        _write(d / "server.pem", _pem(server)),
        _write(d / "server.key", _pem_key(server_key)),
        _write(d / "client.pem", _pem(client)),
        _write(d / "client.key", _pem_key(client_key)),
        _write(d / "stranger.pem", _pem(stranger)),
        _write(d / "stranger.key", _pem_key(stranger_key)),
    )


@dataclass
class TlsServer:
    proc: subprocess.Popen[bytes]
    data: Path
    http: int
    grpc: int
    read_api: int


def _context(pki: Pki, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None and key is not None:
        context.load_cert_chain(cert, key)
    return context


@pytest.fixture
def tls_server(request: pytest.FixtureRequest, pki: Pki, tmp_path: Path) -> Iterator[TlsServer]:
    mutual = bool(getattr(request, "param", False))
    ports = free_port(), free_port(), free_port()
    args = [sys.executable, "-m", "otaudit", "serve", "--data", str(tmp_path / "data"),
            "--http", f"127.0.0.1:{ports[0]}", "--grpc", f"127.0.0.1:{ports[1]}",
            "--read-api", f"127.0.0.1:{ports[2]}", "--checkpoint-interval", "0.1",
            "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)]  # fmt: skip
    if mutual:
        args += ["--tls-client-ca", str(pki.ca)]
    proc = subprocess.Popen(args, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    context = _context(pki, pki.client_cert, pki.client_key)
    for _ in range(300):
        try:
            if httpx.get(f"https://127.0.0.1:{ports[0]}/healthz", verify=context, timeout=1):
                break
        except httpx.HTTPError:
            assert proc.poll() is None, "otaudit serve exited"
            time.sleep(0.1)
    yield TlsServer(proc, tmp_path / "data", *ports)
    proc.terminate()
    assert proc.wait(timeout=30) == 0


@pytest.fixture(autouse=True)
def _no_ca_bundle_override(monkeypatch: pytest.MonkeyPatch) -> None:
    """requests (under the SDK's OTLP/HTTP exporter) lets REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE
    override the exporter's certificate_file; with either set, the CA given is ignored."""
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


def _send(exporter: SpanExporter) -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("t").start_as_current_span("login") as span:
        span.set_attribute("audit.action", "login")
        span.set_attribute("enduser.id", "alice")
    provider.shutdown()


def _count(server: TlsServer, context: ssl.SSLContext) -> int:
    response = httpx.post(f"https://127.0.0.1:{server.read_api}/api/v1/sql", verify=context,
                          json={"sql": "SELECT count(*) FROM audit_spans"}, timeout=30)  # fmt: skip
    assert response.status_code == 200, response.text
    return int(response.json()["rows"][0][0])


def test_tls_on_every_listener(tls_server: TlsServer, pki: Pki) -> None:
    _send(HttpSpanExporter(endpoint=f"https://127.0.0.1:{tls_server.http}/v1/traces",
                           certificate_file=str(pki.ca)))  # fmt: skip
    credentials = grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes())
    _send(GrpcSpanExporter(endpoint=f"127.0.0.1:{tls_server.grpc}", credentials=credentials))
    assert _count(tls_server, _context(pki)) == 2
    with pytest.raises(httpx.HTTPError):  # plain HTTP to a TLS listener gets nowhere
        httpx.post(f"http://127.0.0.1:{tls_server.http}/v1/traces", content=audit_request(1),
                   headers={"content-type": "application/x-protobuf"}, timeout=5)  # fmt: skip


@pytest.mark.parametrize("tls_server", [True], indirect=True, ids=["mutual"])
def test_mutual_tls_needs_a_client_certificate_from_the_ca(tls_server: TlsServer, pki: Pki) -> None:
    _send(
        HttpSpanExporter(
            endpoint=f"https://127.0.0.1:{tls_server.http}/v1/traces",
            certificate_file=str(pki.ca),
            client_certificate_file=str(pki.client_cert),
            client_key_file=str(pki.client_key),
        )
    )
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.ca.read_bytes(),
        private_key=pki.client_key.read_bytes(),
        certificate_chain=pki.client_cert.read_bytes(),
    )
    _send(GrpcSpanExporter(endpoint=f"127.0.0.1:{tls_server.grpc}", credentials=credentials))
    assert _count(tls_server, _context(pki, pki.client_cert, pki.client_key)) == 2
    body = audit_request(1)
    headers = {"content-type": "application/x-protobuf"}
    for context in (_context(pki), _context(pki, pki.stranger_cert, pki.stranger_key)):
        with pytest.raises(httpx.HTTPError):
            httpx.post(f"https://127.0.0.1:{tls_server.http}/v1/traces", verify=context,
                       timeout=5, content=body, headers=headers)  # fmt: skip
    untrusted = grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes())
    with grpc.secure_channel(f"127.0.0.1:{tls_server.grpc}", untrusted) as channel:
        export = channel.unary_unary(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            request_serializer=None,
            response_deserializer=None,
        )
        with pytest.raises(grpc.RpcError) as refused:
            export(audit_request(1), timeout=10)
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
    assert _count(tls_server, _context(pki, pki.client_cert, pki.client_key)) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--tls-cert", "missing.pem", "--tls-key", "server.key"],
            "--tls-cert missing.pem: no such file",
        ),
        (["--tls-cert", "server.pem", "--tls-key", "client.key"], "cannot use them together"),
        (["--tls-cert", "server.pem"], "--tls-cert and --tls-key go together"),
        (["--tls-client-ca", "ca.pem"], "--tls-client-ca needs --tls-cert and --tls-key"),
    ],
)
def test_bad_tls_settings_stop_serve(
    pki: Pki, tmp_path: Path, args: list[str], message: str
) -> None:
    where = pki.ca.parent
    resolved = [str(where / a) if a.endswith((".pem", ".key")) and a != "missing.pem" else a
                for a in args]  # fmt: skip
    listen = ["--http", f"127.0.0.1:{free_port()}", "--grpc", f"127.0.0.1:{free_port()}"]
    result = otaudit("serve", "--data", str(tmp_path / "data"), *listen, *resolved)
    assert result.returncode == 2
    assert message in result.stderr, result.stderr
