"""The one HTTP client for every request the product makes on a tenant's behalf (webhooks,
ticketing adapters, OAuth token and zone-lookup URLs).

Why a client of its own rather than `requests`: a guard that resolves a name and then hands the
URL to a library that resolves it again checks one address and connects to another. Two ways in
were reproduced: the check encoding an internationalised name with CPython's IDNA 2003 codec
(`ß` -> `ss`) while `requests` uses UTS 46 (`ß` -> `xn--zca`), and DNS rebinding between the
check and the connect. Here a request

1. encodes the host once, with the `idna` package's UTS 46 mapping (the encoding `requests` and
   browsers use), and uses that one ASCII name for resolution, SNI and the `Host` header;
2. resolves it once and vets every address (no loopback, private, link-local, multicast,
   reserved, unspecified or otherwise non-global address, IPv4-mapped IPv6 judged by its IPv4
   address), unless `allow_private` (the ALLOW_PRIVATE_WEBHOOKS setting: dev and tests only);
3. connects to exactly a vetted address; TLS verifies the certificate against the name;
4. never follows a redirect (a 3xx comes back as a response), ignores proxy settings from the
   environment, and reads at most `max_body_bytes` of the answer;
5. holds a total deadline per request: connect, TLS, send and the whole response. A watchdog
   shuts the socket down when it passes, so a target that drips one byte every few seconds is
   cut off at the deadline rather than after each read's timeout.

`vet_url` runs steps 1-2 alone, for save-time checks. Both raise :class:`OutboundRefused` for a
target that must not be called; `send` raises :class:`OutboundError` (or its subclass
:class:`OutboundTimeout`) for a transport failure. Neither message contains anything the target
sent.
"""

from __future__ import annotations

import http.client
import ipaddress
import json as jsonlib
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import certifi
import idna

DEFAULT_MAX_BODY_BYTES = 64 * 1024
USER_AGENT = "ResolutionFlow/1"
PRIVATE_SETTING = "ALLOW_PRIVATE_WEBHOOKS"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class OutboundRefused(ValueError):
    """A target that must not be called. ``retryable`` is True only when the host could not be
    resolved (DNS can recover); every other refusal is permanent."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class OutboundError(OSError):
    """The request could not be completed (connection refused or reset, TLS failure, broken
    answer). ``reason`` is a short description the product wrote, never the target's words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class OutboundTimeout(OutboundError):
    """The request's total deadline passed."""


@dataclass(frozen=True)
class VettedTarget:
    """A URL whose host was encoded once and resolved once to addresses that may be called."""

    url: str
    scheme: str
    host: str  # the ASCII (A-label) host name or the IP literal, without brackets
    port: int
    target: str  # path and query sent in the request line
    addresses: tuple[str, ...]

    @property
    def host_header(self) -> str:
        name = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return name if self.port == default else f"{name}:{self.port}"

    @property
    def origin(self) -> str:
        """scheme://host[:port]: safe to show and to log (no path, query or credentials)."""
        return f"{self.scheme}://{self.host_header}"


@dataclass(frozen=True)
class OutboundResponse:
    status: int
    reason: str
    headers: Mapping[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes  # at most max_body_bytes
    truncated: bool  # the target sent more than was read
    address: str  # the vetted address the request was sent to
    elapsed_ms: int
    _json: Any = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        """The body parsed as JSON; raises ``ValueError`` when it is not (or was truncated)."""
        if self.truncated:
            raise ValueError("the response body was larger than the client reads")
        return jsonlib.loads(self.body.decode("utf-8"))

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


# -- vetting ----------------------------------------------------------------------------------


def non_public_reason(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public address, or None when it is."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        reason = non_public_reason(ip.ipv4_mapped)
        return f"IPv4-mapped {reason}" if reason else None
    if ip.is_unspecified:
        return "unspecified address"
    if ip.is_loopback:
        return "loopback address"
    if ip.is_link_local:
        return "link-local address"
    if ip.is_multicast:
        return "multicast address"
    if ip.is_private:
        return "private address"
    if ip.is_reserved:
        return "reserved address"
    if not ip.is_global:
        return "non-public address"
    return None


def encode_host(host: str) -> str:
    """The one ASCII form of ``host`` used for DNS, SNI and ``Host``: UTS 46 (non-transitional,
    as `requests` and browsers), lower case, no trailing dot. IP literals are returned as they
    are. Raises :class:`OutboundRefused` for a name that cannot be encoded."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    name = host.rstrip(".")
    if not name:
        raise OutboundRefused("the URL has no host")
    try:
        return idna.encode(name, uts46=True, transitional=False).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError) as exc:
        raise OutboundRefused(f"host {host!r} is not a valid host name: {exc}") from exc


def _split(url: str) -> tuple[str, str, int, str]:
    if not isinstance(url, str) or not url.strip():
        raise OutboundRefused("the URL is empty")
    url = url.strip()
    if any(ord(ch) < 0x21 or ch == "\x7f" for ch in url):
        raise OutboundRefused("the URL must not contain whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise OutboundRefused(f"the URL is malformed: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise OutboundRefused(f"the URL must use http or https, not {scheme or 'nothing'!r}")
    if "@" in parts.netloc:
        raise OutboundRefused("the URL must not contain credentials (user:password@)")
    host = parts.hostname
    if not host:
        raise OutboundRefused("the URL has no host")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return scheme, host, port or (443 if scheme == "https" else 80), target


def origin(url: str) -> str:
    """scheme://host[:port] of ``url`` (its host encoded as for a request), with no path, query
    or credentials: what may be stored and shown of a target. Resolves nothing."""
    try:
        scheme, raw_host, port, _ = _split(url)
        host = encode_host(raw_host)
    except OutboundRefused:
        return "(invalid URL)"
    name = f"[{host}]" if ":" in host else host
    default = 443 if scheme == "https" else 80
    return f"{scheme}://{name}" + ("" if port == default else f":{port}")


def vet_url(url: str, *, allow_private: bool = False) -> VettedTarget:
    """Encode, resolve and vet ``url`` once; raise :class:`OutboundRefused` if it must not be
    called. Every address the name resolves to must be public unless ``allow_private``."""
    scheme, raw_host, port, target = _split(url)
    host = encode_host(raw_host)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except UnicodeError as exc:
        raise OutboundRefused(f"host {host!r} is not a valid host name: {exc}") from exc
    except socket.gaierror as exc:
        raise OutboundRefused(f"host {host!r} could not be resolved", retryable=True) from exc
    addresses: list[str] = []
    for info in infos:
        raw_address = str(info[4][0]).split("%", 1)[0]  # drop an IPv6 zone id
        try:
            address = ipaddress.ip_address(raw_address)
        except ValueError as exc:
            raise OutboundRefused(f"host {host!r} resolved to {raw_address!r}") from exc
        reason = non_public_reason(address)
        if reason and not allow_private:
            raise OutboundRefused(
                f"host {host!r} resolves to {address} ({reason}); only public addresses may "
                f"be called (the {PRIVATE_SETTING} setting allows private ones, in dev and "
                "tests)"
            )
        if str(address) not in addresses:
            addresses.append(str(address))
    if not addresses:
        raise OutboundRefused(f"host {host!r} resolved to no address", retryable=True)
    return VettedTarget(url.strip(), scheme, host, port, target, tuple(addresses))


# -- sending ----------------------------------------------------------------------------------


class _Deadline:
    """A total deadline for one request: the remaining time for each blocking step, and a
    watchdog that shuts the socket down when the deadline passes mid-read."""

    def __init__(self, seconds: float) -> None:
        if seconds <= 0:
            raise ValueError("deadline_s must be positive")
        self.seconds = seconds
        self.ends = time.monotonic() + seconds
        self.expired = threading.Event()
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def start(self) -> None:
        self._timer.start()

    def remaining(self) -> float:
        left = self.ends - time.monotonic()
        if left <= 0:
            raise OutboundTimeout(f"no answer within the {self.seconds:g} s deadline")
        return left

    def passed(self) -> bool:
        """The deadline is over: the watchdog fired, or the socket's own timeout (set to the
        time remaining) went off first, before the watchdog's thread ran."""
        return self.expired.is_set() or time.monotonic() >= self.ends

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sock = sock
            if self.expired.is_set():
                self._shutdown(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired.set()
            if self._sock is not None:
                self._shutdown(self._sock)

    @staticmethod
    def _shutdown(sock: socket.socket) -> None:
        # The base class's shutdown on purpose: SSLSocket.shutdown would drop the TLS object
        # under a reader in another thread; shutting the descriptor down wakes that reader.
        try:
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass

    def cancel(self) -> None:
        self._timer.cancel()


def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=certifi.where())


def _connect(
    vetted: VettedTarget, deadline: _Deadline, tls_context: ssl.SSLContext | None
) -> tuple[socket.socket, str]:
    last: OSError | None = None
    for address in vetted.addresses:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            deadline.watch(sock)
            sock.settimeout(deadline.remaining())
            sock.connect((address, vetted.port))
            if vetted.scheme == "https":
                context = tls_context or _tls_context()
                # The name, not the address: SNI and the certificate check (CPython sends no
                # SNI for an IP literal but still checks the certificate against it).
                tls = context.wrap_socket(sock, server_hostname=vetted.host)
                deadline.watch(tls)
                return tls, address
            return sock, address
        except OutboundTimeout:
            sock.close()
            raise
        except OSError as exc:
            sock.close()
            if deadline.passed():
                raise OutboundTimeout(
                    f"no answer within the {deadline.seconds:g} s deadline"
                ) from exc
            last = exc
    raise OutboundError(_describe_os_error(last))


def _describe_os_error(exc: BaseException | None) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "TLS certificate verification failed"
    if isinstance(exc, ssl.SSLError):
        return "TLS handshake failed"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by the target"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, http.client.HTTPException):
        return "the target's answer was not valid HTTP"
    return "the connection failed"


class _VettedConnection(http.client.HTTPConnection):
    """An HTTPConnection over a socket that is already connected to the vetted address."""

    def __init__(self, vetted: VettedTarget, sock: socket.socket) -> None:
        super().__init__(vetted.host, vetted.port)
        self.sock = sock

    def connect(self) -> None:  # pragma: no cover - the socket is connected before use
        raise RuntimeError("a vetted connection never connects by itself")


def send(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes | str | None = None,
    json: Any = None,
    deadline_s: float,
    allow_private: bool = False,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    tls_context: ssl.SSLContext | None = None,
) -> OutboundResponse:
    """One HTTP request to ``url``, connected to exactly the address that was vetted, within
    ``deadline_s`` seconds in all. Redirects are returned, never followed.

    Raises :class:`OutboundRefused` (target not allowed), :class:`OutboundTimeout` (deadline) or
    :class:`OutboundError` (any other transport failure). ``tls_context`` replaces the default
    (certifi's CA bundle, hostname checked), e.g. for a private CA.
    """
    if body is not None and json is not None:
        raise ValueError("pass body or json, not both")
    start = time.monotonic()
    vetted = vet_url(url, allow_private=allow_private)
    payload: bytes | None
    if json is not None:
        payload = jsonlib.dumps(json, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    elif isinstance(body, str):
        payload = body.encode("utf-8")
    else:
        payload = body
    request_headers = {
        "Host": vetted.host_header,
        "User-Agent": USER_AGENT,
        "Accept-Encoding": "identity",
        "Connection": "close",
    }
    if json is not None:
        request_headers["Content-Type"] = "application/json"
    # The caller's headers win, except Host: it always names the vetted host.
    given = {key: value for key, value in (headers or {}).items() if key.lower() != "host"}
    lowered = {key.lower() for key in given}
    for key in list(request_headers):
        if key.lower() in lowered:
            del request_headers[key]
    request_headers.update(given)

    deadline = _Deadline(deadline_s)
    deadline.start()
    conn: _VettedConnection | None = None
    try:
        sock, address = _connect(vetted, deadline, tls_context)
        conn = _VettedConnection(vetted, sock)
        try:
            conn.putrequest(
                method.upper(), vetted.target, skip_host=True, skip_accept_encoding=True
            )
            for key, value in request_headers.items():
                conn.putheader(key, value)
            if payload is not None and "content-length" not in lowered:
                conn.putheader("Content-Length", str(len(payload)))
            conn.endheaders(payload)
            response = conn.getresponse()
            data = response.read(max_body_bytes + 1) if max_body_bytes >= 0 else b""
            names: dict[str, str] = {}
            for key, value in response.getheaders():
                name = key.lower()
                names[name] = f"{names[name]}, {value}" if name in names else value
        except (OSError, http.client.HTTPException) as exc:
            if deadline.passed():
                raise OutboundTimeout(
                    f"no answer within the {deadline.seconds:g} s deadline"
                ) from exc
            raise OutboundError(_describe_os_error(exc)) from exc
        if deadline.expired.is_set():
            raise OutboundTimeout(f"no answer within the {deadline.seconds:g} s deadline")
        return OutboundResponse(
            status=response.status,
            reason=response.reason or "",
            headers=names,
            body=data[:max_body_bytes],
            truncated=len(data) > max_body_bytes,
            address=address,
            elapsed_ms=int((time.monotonic() - start) * 1000),
        )
    finally:
        deadline.cancel()
        if conn is not None:
            conn.close()
