"""shared.outbound: the SSRF-safe client every tenant-directed request goes through.

The attacks: a host whose IDNA 2003 and UTS 46 encodings resolve to different addresses, DNS
rebinding between the check and the connect, redirects to internal services, a target that
drips its answer to hold a worker, and a target that answers with an endless body."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shared import outbound
from shared.outbound import OutboundError, OutboundRefused, OutboundTimeout

PUBLIC = "93.184.216.34"


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Target:
    port: int
    seen: list[Seen] = field(default_factory=list)
    sni: list[str | None] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _handler(target: Target) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def handle(self) -> None:
            try:
                super().handle()
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
                pass

        def _record(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            target.seen.append(Seen(self.path, headers, body))

        def do_GET(self) -> None:
            self.do_POST()

        def do_POST(self) -> None:
            self._record()
            if self.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif self.path == "/endless":
                self.send_response(500)
                self.send_header("Content-Length", str(10 * 1024 * 1024))
                self.end_headers()
                chunk = b"E" * 65536
                while not target.stop.is_set():
                    self.wfile.write(chunk)
            elif self.path == "/drip":
                # One byte of the body every 0.2 s, for ever: each read finishes well within
                # any per-read timeout.
                self.send_response(200)
                self.send_header("Content-Length", "100000")
                self.end_headers()
                while not target.stop.wait(0.2):
                    self.wfile.write(b".")
                    self.wfile.flush()
            else:
                payload = b'{"ok":true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

    return Handler


@pytest.fixture
def start_target() -> Iterator[Callable[..., Target]]:
    started: list[tuple[ThreadingHTTPServer, Target, threading.Thread]] = []

    def start(tls: ssl.SSLContext | None = None) -> Target:
        server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
        target = Target(port=server.server_address[1])
        server.RequestHandlerClass = _handler(target)
        server.daemon_threads = True
        if tls is not None:

            def remember(sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
                target.sni.append(name)

            tls.sni_callback = remember  # type: ignore[assignment]
            server.socket = tls.wrap_socket(server.socket, server_side=True)
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        thread.start()
        started.append((server, target, thread))
        return target

    yield start
    for server, target, thread in started:
        target.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


class FakeDNS:
    """Answers chosen names with chosen addresses (a list: one answer per lookup, the last
    repeated); every other name goes to the real resolver. Records each lookup."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.lookups: list[str] = []
        real = socket.getaddrinfo

        def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            # The real getaddrinfo encodes a str host with CPython's IDNA 2003 codec.
            name = host.decode() if isinstance(host, bytes) else host.encode("idna").decode()
            if name in self.answers:
                self.lookups.append(name)
                queue = self.answers[name]
                address = queue.pop(0) if len(queue) > 1 else queue[0]
                family = socket.AF_INET6 if ":" in address else socket.AF_INET
                return [(family, socket.SOCK_STREAM, 6, "", (address, port))]
            return real(host, port, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


# -- the attacks ------------------------------------------------------------------------------


def test_ssrf_idna_split_encodings_cannot_reach_an_internal_address(
    monkeypatch: pytest.MonkeyPatch, start_target: Callable[..., Target]
) -> None:
    internal = start_target()
    # IDNA 2003 maps "ß" to "ss", UTS 46 to "xn--zca": the attacker points the first at a public
    # address and the second at the internal service.
    dns = FakeDNS(
        monkeypatch, {"strasse.example": [PUBLIC], "xn--strae-oqa.example": ["127.0.0.1"]}
    )
    with pytest.raises(OutboundRefused, match="127.0.0.1 .loopback") as info:
        outbound.send(
            "POST",
            f"http://straße.example:{internal.port}/hook",
            json={"x": 1},
            deadline_s=2,
        )
    assert "ALLOW_PRIVATE_WEBHOOKS" in str(info.value)
    assert internal.seen == []
    assert dns.lookups == ["xn--strae-oqa.example"]  # one encoding, for the check and the call


def test_ssrf_idna_name_is_sent_as_the_one_encoding_it_was_resolved_with(
    monkeypatch: pytest.MonkeyPatch, start_target: Callable[..., Target]
) -> None:
    target = start_target()
    FakeDNS(monkeypatch, {"xn--strae-oqa.example": ["127.0.0.1"]})
    response = outbound.send(
        "GET", f"http://STRAßE.example:{target.port}/x?q=1", deadline_s=2, allow_private=True
    )
    assert response.status == 200 and response.address == "127.0.0.1"
    [seen] = target.seen
    assert seen.headers["host"] == f"xn--strae-oqa.example:{target.port}"
    assert seen.path == "/x?q=1"


def test_ssrf_dns_rebinding_after_the_check_is_never_connected(
    monkeypatch: pytest.MonkeyPatch, start_target: Callable[..., Target]
) -> None:
    internal = start_target()
    # Public for the check, loopback a moment later for the connect.
    dns = FakeDNS(monkeypatch, {"rebind.example": [PUBLIC, "127.0.0.1"]})
    with pytest.raises(OutboundError):
        outbound.send("POST", f"http://rebind.example:{internal.port}/", body=b"x", deadline_s=1)
    assert internal.seen == []
    assert dns.lookups == ["rebind.example"]  # resolved once: the connect used that answer


def test_ssrf_connects_to_exactly_the_vetted_address(
    monkeypatch: pytest.MonkeyPatch, start_target: Callable[..., Target]
) -> None:
    vetted, other = start_target(), start_target()
    assert vetted.port != other.port
    dns = FakeDNS(monkeypatch, {"hooks.example.test": ["127.0.0.1", "127.0.0.2"]})
    response = outbound.send(
        "POST",
        f"http://hooks.example.test:{vetted.port}/in",
        body=b"a",
        deadline_s=2,
        allow_private=True,
    )
    assert response.status == 200 and response.address == "127.0.0.1"
    assert len(vetted.seen) == 1 and dns.lookups == ["hooks.example.test"]


def test_ssrf_redirect_to_metadata_service_is_not_followed(
    start_target: Callable[..., Target],
) -> None:
    target = start_target()
    response = outbound.send(
        "POST", f"{target.url}/redirect", body=b"x", deadline_s=2, allow_private=True
    )
    assert response.status == 302
    assert [seen.path for seen in target.seen] == ["/redirect"]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://10.0.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[fd00::1]/",
        "http://0.0.0.0/",
        "http://100.64.0.1/",
        "http://224.0.0.1/",
        "http://localhost/",
    ],
)
def test_ssrf_private_targets_are_refused_naming_the_setting(url: str) -> None:
    with pytest.raises(OutboundRefused, match="ALLOW_PRIVATE_WEBHOOKS") as info:
        outbound.vet_url(url)
    assert info.value.retryable is False
    assert outbound.vet_url(url, allow_private=True).addresses


def test_ssrf_one_private_address_among_public_ones_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = socket.getaddrinfo

    def two(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "mixed.example":
            return real(host, port, *args, **kwargs)
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", (PUBLIC, port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.5", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", two)
    with pytest.raises(OutboundRefused, match="10.0.0.5"):
        outbound.vet_url("https://mixed.example/in")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://1.1.1.1/", "http or https"),
        ("file:///etc/passwd", "http or https"),
        ("https://user:pw@1.1.1.1/", "credentials"),
        ("http://1.1.1.1/a b", "whitespace"),
        ("http://1.1.1.1:99999/", "malformed"),
        ("http://xn--/", "not a valid host name"),
        ("", "empty"),
    ],
)
def test_malformed_targets_are_refused(url: str, message: str) -> None:
    with pytest.raises(OutboundRefused, match=message):
        outbound.vet_url(url, allow_private=True)


def test_unresolvable_host_is_a_retryable_refusal() -> None:
    with pytest.raises(OutboundRefused, match="could not be resolved") as info:
        outbound.vet_url("https://nowhere.invalid/")
    assert info.value.retryable is True


def test_slow_drip_target_is_cut_at_the_total_deadline(
    start_target: Callable[..., Target],
) -> None:
    target = start_target()
    started = time.monotonic()
    with pytest.raises(OutboundTimeout, match="1 s deadline"):
        outbound.send("POST", f"{target.url}/drip", body=b"x", deadline_s=1, allow_private=True)
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 30, elapsed  # not "0.2 s per read, for ever" (loose: a busy machine)


def test_endless_answer_is_read_up_to_the_bound(start_target: Callable[..., Target]) -> None:
    target = start_target()
    response = outbound.send(
        "POST",
        f"{target.url}/endless",
        body=b"x",
        deadline_s=5,
        allow_private=True,
        max_body_bytes=4096,
    )
    assert response.status == 500
    assert len(response.body) == 4096 and response.truncated


def test_environment_proxies_are_ignored(
    monkeypatch: pytest.MonkeyPatch, start_target: Callable[..., Target]
) -> None:
    target = start_target()
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens there
    response = outbound.send("GET", f"{target.url}/ok", deadline_s=2, allow_private=True)
    assert response.ok and response.json() == {"ok": True}


def test_caller_cannot_override_the_host_header(start_target: Callable[..., Target]) -> None:
    target = start_target()
    outbound.send(
        "GET",
        f"{target.url}/ok",
        headers={"Host": "internal.admin"},
        deadline_s=2,
        allow_private=True,
    )
    assert target.seen[0].headers["host"] == f"127.0.0.1:{target.port}"


# -- TLS: SNI and certificate checked against the name, connection to the vetted address ------


def _certificate(tmp_path: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_tls_sni_host_and_certificate_carry_the_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, start_target: Callable[..., Target]
) -> None:
    cert, key = _certificate(tmp_path, "hooks.example.test")
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    target = start_target(tls=server_tls)
    FakeDNS(monkeypatch, {"hooks.example.test": ["127.0.0.1"], "other.example.test": ["127.0.0.1"]})
    client_tls = ssl.create_default_context(cafile=str(cert))

    response = outbound.send(
        "POST",
        f"https://hooks.example.test:{target.port}/in",
        body=b"hi",
        deadline_s=3,
        allow_private=True,
        tls_context=client_tls,
    )
    assert response.status == 200 and response.address == "127.0.0.1"
    assert target.sni == ["hooks.example.test"]
    assert target.seen[0].headers["host"] == f"hooks.example.test:{target.port}"

    # The same address under another name: the certificate does not match, nothing is sent.
    with pytest.raises(OutboundError, match="certificate"):
        outbound.send(
            "POST",
            f"https://other.example.test:{target.port}/in",
            body=b"hi",
            deadline_s=3,
            allow_private=True,
            tls_context=client_tls,
        )
    assert len(target.seen) == 1


def test_non_public_reason_covers_mapped_addresses() -> None:
    reason = outbound.non_public_reason(ipaddress.ip_address("::ffff:10.0.0.1"))
    assert reason == "IPv4-mapped private address"
    assert outbound.non_public_reason(ipaddress.ip_address(PUBLIC)) is None


def test_origin_keeps_no_path_query_or_credentials() -> None:
    assert outbound.origin("https://Hooks.Example.com/t/SECRET?token=abc") == (
        "https://hooks.example.com"
    )
    assert outbound.origin("http://straße.example:8080/x") == "http://xn--strae-oqa.example:8080"
