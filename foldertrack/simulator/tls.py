"""The simulator's HTTPS listener: a throw-away CA made at start, a server certificate for 127.0.0.1 and
localhost signed by it, and a server class that does the TLS handshake on the connection's own thread.

MSAL refuses authorities that are not ``https``, and clients must keep TLS verification on, so tests pass
``verify=sim.ca_path``. Keys are ECDSA P-256: generating them takes microseconds, so every simulator gets
its own CA without slowing the suite.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import shutil
import socket
import ssl
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from foldertrack.simulator.server import SimHTTPServer

if TYPE_CHECKING:
    from foldertrack.simulator.simulator import Simulator

HANDSHAKE_TIMEOUT = 10.0


@dataclass
class CertificateFiles:
    """PEM files in a private temporary directory; ``remove()`` deletes them."""

    directory: Path
    ca_path: Path
    cert_path: Path
    key_path: Path

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "foldertrack simulator"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def make_certificates(hosts: tuple[str, ...] = ("127.0.0.1", "localhost", "::1")) -> CertificateFiles:
    """A fresh CA and a server certificate for ``hosts`` (IPs become IP SANs), written as PEM files."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("foldertrack simulator CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory = Path(tempfile.mkdtemp(prefix="foldertrack-sim-tls-"))
    files = CertificateFiles(directory, directory / "ca.pem", directory / "server.pem", directory / "key.pem")
    files.ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert_path.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(serialization.Encoding.PEM)
    )
    files.key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    files.key_path.chmod(0o600)
    return files


class SimHTTPSServer(SimHTTPServer):
    """The same routes as :class:`SimHTTPServer`, over TLS. The handshake runs on the connection thread
    (never in the accept loop), and the TLS socket replaces the raw one in the tracked connections so
    ``stop()`` can still cut open streams."""

    def __init__(self, address: tuple[str, int], sim: Simulator, files: CertificateFiles):
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.context.load_cert_chain(str(files.cert_path), str(files.key_path))
        super().__init__(address, sim)

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"https://{host}:{port}"

    def finish_request(self, request, client_address) -> None:  # type: ignore[override]
        request.settimeout(HANDSHAKE_TIMEOUT)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return  # a client that hung up or does not trust our CA: nothing to serve
        tls.settimeout(None)
        with self._track:
            self.connections.add(tls)  # type: ignore[arg-type]
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            with self._track:
                self.connections.discard(tls)  # type: ignore[arg-type]
            with contextlib.suppress(OSError):
                tls.shutdown(socket.SHUT_RDWR)
            tls.close()


class TlsListener:
    """The HTTPS side of a :class:`Simulator`: its own CA, server and accept thread; same routes as HTTP.

    On start the org URL (``base_url``) becomes a resource the token endpoint issues tokens for.
    """

    def __init__(self, sim: Simulator, host: str, port: int = 0):
        self.sim, self.host, self.port = sim, host, port
        self.files: CertificateFiles | None = None
        self._server: SimHTTPSServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the simulator's HTTPS listener is not running (start the simulator first)")
        return self._server.base_url

    @property
    def ca_path(self) -> str:
        if self.files is None:
            raise RuntimeError("the simulator's HTTPS listener is not running (start the simulator first)")
        return str(self.files.ca_path)

    def start(self) -> None:
        hosts = tuple(dict.fromkeys((self.host, "127.0.0.1", "localhost", "::1")))
        self.files = make_certificates(hosts)
        try:
            self._server = SimHTTPSServer((self.host, self.port), self.sim, self.files)
        except BaseException:
            self.files.remove()
            self.files = None
            raise
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="sim-https-server",
            daemon=True,
        )
        self._thread.start()
        self.sim.identity.add_resource(self._server.base_url)

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            server.close_connections()
            server.join_threads()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        if self.files is not None:
            self.files.remove()
            self.files = None
