"""services.notes.delivery: retry schedule, classification, signing, URL safety and delivery
against a local receiver."""

from __future__ import annotations

import base64
import json
import random
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from services.notes import delivery
from services.notes.delivery import (
    MAX_RETRY_AFTER_S,
    AttemptResult,
    Outcome,
    WebhookURLError,
    build_payload,
    classify,
    deliver,
    generate_secret,
    next_delay,
    parse_retry_after,
    parse_retry_schedule,
    sign_headers,
    validate_webhook_url,
)
from shared.config import DEFAULT_WEBHOOK_RETRY_SCHEDULE
from shared.outbound import OutboundError, OutboundTimeout

SCHEDULE = (0, 5, 300, 1800)

# -- retry schedule --------------------------------------------------------------------------


def test_parse_retry_schedule() -> None:
    assert parse_retry_schedule("0, 5,300 ,1800") == (0, 5, 300, 1800)
    assert parse_retry_schedule([0, 5]) == (0, 5)
    assert parse_retry_schedule((7,)) == (7,)
    assert parse_retry_schedule(",".join(map(str, DEFAULT_WEBHOOK_RETRY_SCHEDULE))) == (
        DEFAULT_WEBHOOK_RETRY_SCHEDULE
    )


@pytest.mark.parametrize("raw", ["", " , ", "5,-1", "5,abc", "1.5", [], [1, -2], [True], ["5"]])
def test_parse_retry_schedule_rejects(raw: Any) -> None:
    with pytest.raises(ValueError):
        parse_retry_schedule(raw)


def test_next_delay_follows_the_schedule_without_jitter() -> None:
    assert next_delay(0, SCHEDULE, jitter=0) == 0
    assert next_delay(1, SCHEDULE, jitter=0) == 5
    assert next_delay(3, SCHEDULE, jitter=0) == 1800
    assert next_delay(4, SCHEDULE, jitter=0) is None  # exhausted: give up
    assert next_delay(40, SCHEDULE) is None
    with pytest.raises(ValueError):
        next_delay(-1, SCHEDULE)


def test_next_delay_jitter_stays_within_ten_percent() -> None:
    rng = random.Random(1234)
    samples = [next_delay(2, SCHEDULE, rng=rng) for _ in range(500)]
    assert all(s is not None and 270 <= s <= 330 for s in samples)
    assert len({round(s or 0, 6) for s in samples}) > 100  # really jittered
    assert min(s or 0 for s in samples) < 285 and max(s or 0 for s in samples) > 315
    assert all(next_delay(0, SCHEDULE, rng=rng) == 0 for _ in range(50))  # 0 stays 0


def test_next_delay_honours_retry_after_seconds() -> None:
    assert next_delay(1, SCHEDULE, "120", jitter=0) == 120  # later than scheduled: wait longer
    assert next_delay(2, SCHEDULE, "2", jitter=0) == 300  # earlier: the schedule wins
    assert next_delay(1, SCHEDULE, "999999", jitter=0) == MAX_RETRY_AFTER_S  # capped at 24 h
    assert next_delay(1, SCHEDULE, "soon", jitter=0) == 5  # unparseable: ignored
    assert next_delay(4, SCHEDULE, "10") is None  # never extends an exhausted schedule
    jittered = next_delay(1, SCHEDULE, "60", rng=random.Random(1))
    assert jittered == 60  # Retry-After is a floor, not jittered


def test_next_delay_honours_retry_after_http_date() -> None:
    now = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=600), usegmt=True)
    assert later.endswith("GMT")
    assert next_delay(1, SCHEDULE, later, jitter=0, now=now) == 600
    past = format_datetime(now - timedelta(hours=1), usegmt=True)
    assert next_delay(1, SCHEDULE, past, jitter=0, now=now) == 5
    assert parse_retry_after(later, now=now) == 600
    assert parse_retry_after(None) is None
    assert parse_retry_after("-5") == 0


# -- classification ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [
        (200, None, Outcome.DELIVERED),
        (201, None, Outcome.DELIVERED),
        (204, None, Outcome.DELIVERED),
        (299, None, Outcome.DELIVERED),
        (301, None, Outcome.FAILED),
        (302, None, Outcome.FAILED),
        (307, None, Outcome.FAILED),
        (400, None, Outcome.FAILED),
        (401, None, Outcome.FAILED),
        (403, None, Outcome.FAILED),
        (404, None, Outcome.FAILED),
        (408, None, Outcome.RETRY),
        (410, None, Outcome.DISABLED),
        (413, None, Outcome.FAILED),
        (422, None, Outcome.FAILED),
        (429, None, Outcome.RETRY),
        (500, None, Outcome.RETRY),
        (502, None, Outcome.RETRY),
        (503, None, Outcome.RETRY),
        (599, None, Outcome.RETRY),
        (None, OutboundError("connection refused"), Outcome.RETRY),
        (None, OutboundTimeout("no answer within the 15 s deadline"), Outcome.RETRY),
        (None, OSError("reset"), Outcome.RETRY),
        (None, ValueError("bad"), Outcome.FAILED),
        (None, WebhookURLError("private address"), Outcome.FAILED),
        (None, WebhookURLError("no DNS", retryable=True), Outcome.RETRY),
    ],
)
def test_classify(status: int | None, error: Exception | None, expected: Outcome) -> None:
    assert classify(status, error) is expected


def test_classify_needs_something() -> None:
    with pytest.raises(ValueError):
        classify(None, None)


# -- payload and signature -------------------------------------------------------------------


def test_build_payload() -> None:
    stamp = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    body = build_payload(
        note_id="n1",
        session_id="s1",
        ticket_ref="INC-42",
        state_version=9,
        markdown="## Problem\nx",
        generated_at=stamp,
    )
    assert body == {
        "type": "resolution_note.created",
        "note_id": "n1",
        "session_id": "s1",
        "ticket_ref": "INC-42",
        "state_version": 9,
        "markdown": "## Problem\nx",
        "generated_at": "2026-01-02T01:04:05+00:00",
    }
    as_text = build_payload(
        note_id="n1",
        session_id="s1",
        ticket_ref=None,
        state_version=1,
        markdown="m",
        generated_at="t",
    )
    assert as_text["generated_at"] == "t" and as_text["ticket_ref"] is None


def test_generate_secret_is_accepted_and_random() -> None:
    first, second = generate_secret(), generate_secret()
    assert first != second
    assert first.startswith("whsec_")
    assert len(base64.b64decode(first.removeprefix("whsec_"))) >= 24
    Webhook(first)  # accepted


def test_sign_headers_verify_with_the_library() -> None:
    secret = generate_secret()
    body = delivery.encode_body({"type": "resolution_note.created", "markdown": "Grüße ✓"})
    now = datetime.now(UTC)
    headers = sign_headers(secret, "msg_abc", body, now)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature", "content-type"}
    assert headers["content-type"] == "application/json"
    assert headers["webhook-timestamp"] == str(int(now.timestamp()))
    assert Webhook(secret).verify(body, headers)["markdown"] == "Grüße ✓"
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body + b" ", headers)


def test_sign_headers_handles_non_utc_and_naive_timestamps() -> None:
    secret = generate_secret()
    body = b'{"a":1}'
    instant = datetime.now(UTC).replace(microsecond=0)
    local = instant.astimezone(timezone(timedelta(hours=-5)))
    naive = instant.replace(tzinfo=None)
    expected = sign_headers(secret, "m1", body, instant)
    assert sign_headers(secret, "m1", body, local) == expected
    assert sign_headers(secret, "m1", body, naive) == expected
    Webhook(secret).verify(body, sign_headers(secret, "m1", body, local))


def test_webhook_id_is_stable_across_retries() -> None:
    secret = generate_secret()
    body = b'{"a":1}'
    now = datetime.now(UTC)
    first = sign_headers(secret, "msg_note-1", body, now - timedelta(seconds=30))
    retry = sign_headers(secret, "msg_note-1", body, now)
    assert first["webhook-id"] == retry["webhook-id"] == "msg_note-1"
    assert first["webhook-signature"] != retry["webhook-signature"]  # the timestamp is signed


def test_sign_headers_rejects_a_bad_secret_or_id() -> None:
    with pytest.raises(ValueError):
        sign_headers("whsec_", "m", b"{}", datetime.now(UTC))
    with pytest.raises(ValueError):
        sign_headers(generate_secret(), "", b"{}", datetime.now(UTC))


# -- URL validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://127.8.9.10:8080/hook",
        "https://10.1.2.3/hook",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0/",
        "http://100.64.0.1/",
        "http://224.0.0.1/",
        "http://240.0.0.1/",
        "http://[::1]/hook",
        "http://[fd00::1]/hook",
        "http://[fe80::1]/hook",
        "http://[::]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[::ffff:10.0.0.1]/hook",
        "http://localhost:8000/hook",
    ],
)
def test_non_public_addresses_are_refused_unless_allowed(url: str) -> None:
    with pytest.raises(WebhookURLError) as info:
        validate_webhook_url(url, allow_private=False)
    assert "only public addresses" in str(info.value)
    assert info.value.retryable is False
    assert validate_webhook_url(url, allow_private=True) == url


def test_ipv4_mapped_address_is_named_in_the_message() -> None:
    with pytest.raises(WebhookURLError, match="IPv4-mapped loopback"):
        validate_webhook_url("http://[::ffff:127.0.0.1]/", allow_private=False)


@pytest.mark.parametrize(
    "url", ["https://1.1.1.1/hook", "http://8.8.8.8:8443/x?y=1", "https://[2606:4700:4700::1111]/h"]
)
def test_public_addresses_are_allowed(url: str) -> None:
    assert validate_webhook_url(f"  {url} ", allow_private=False) == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://1.1.1.1/x", "http or https"),
        ("file:///etc/passwd", "http or https"),
        ("javascript:alert(1)", "http or https"),
        ("1.1.1.1/hook", "http or https"),
        ("http:///path", "no host"),
        ("https://user:pw@1.1.1.1/", "credentials"),
        ("https://user@1.1.1.1/", "credentials"),
        ("http://1.1.1.1:99999/", "malformed"),
        ("http://1.1.1.1/a b", "whitespace"),
        ("", "empty"),
    ],
)
def test_malformed_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(WebhookURLError, match=message):
        validate_webhook_url(url, allow_private=True)


def test_every_resolved_address_must_be_public(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        assert host == "hooks.example.com" and port == 443
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.5", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    with pytest.raises(WebhookURLError, match="10.0.0.5"):
        validate_webhook_url("https://hooks.example.com/in", allow_private=False)


def test_unresolvable_host_is_a_retryable_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any, **kwargs: Any) -> list[Any]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    with pytest.raises(WebhookURLError, match="could not be resolved") as info:
        validate_webhook_url("https://nowhere.invalid/", allow_private=False)
    assert info.value.retryable is True
    result = deliver(
        "https://nowhere.invalid/",
        generate_secret(),
        {},
        msg_id="m",
        timeout_s=1,
        allow_private=False,
    )
    assert result.outcome is Outcome.RETRY and result.status_code is None


# -- delivery against a local receiver ------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: Any


@dataclass
class Receiver:
    url: str
    secret: str
    requests: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def handle(self) -> None:
            try:
                super().handle()
            except ConnectionResetError:  # the client closed with the error body unread
                pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                verified = Webhook(receiver.secret).verify(body, headers)
            except WebhookVerificationError:
                verified = None
            receiver.requests.append(Received(self.path, headers, body, verified))
            if self.path == "/hang":
                receiver.release.wait(10)
                return self._reply(200)
            replies: dict[str, tuple[int, dict[str, str], bytes]] = {
                "/ok": (200, {}, b"thanks"),
                "/accepted": (202, {}, b""),
                "/fail": (500, {}, b"database is down"),
                "/huge": (503, {}, b"E" * 100_000),
                "/gone": (410, {}, b"endpoint removed"),
                "/slow-down": (429, {"Retry-After": "7"}, b"too many"),
                "/bad": (400, {}, b"bad signature"),
                "/redirect": (302, {"Location": "/ok"}, b""),
            }
            status, extra, payload = replies.get(self.path, (404, {}, b"no such hook"))
            self._reply(status, extra, payload)

        def _reply(
            self, status: int, extra: dict[str, str] | None = None, body: bytes = b""
        ) -> None:
            try:
                self.send_response(status)
                for key, value in (extra or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="", secret=generate_secret())
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield state
    state.release.set()
    server.shutdown()
    server.server_close()
    thread.join(5)


PAYLOAD = build_payload(
    note_id="note-1",
    session_id="sess-1",
    ticket_ref="INC-7",
    state_version=12,
    markdown="## Problem\nPrinter offline.",
    generated_at="2026-01-01T00:00:00+00:00",
)


def send(receiver: Receiver, path: str, **kwargs: Any) -> AttemptResult:
    options: dict[str, Any] = {"msg_id": "msg_note-1", "timeout_s": 5.0, "allow_private": True}
    options.update(kwargs)
    return deliver(f"{receiver.url}{path}", receiver.secret, PAYLOAD, **options)


@pytest.mark.parametrize("path", ["/ok", "/accepted"])
def test_deliver_success_is_signed_and_verified(receiver: Receiver, path: str) -> None:
    result = send(receiver, path)
    assert result.outcome is Outcome.DELIVERED
    assert result.status_code in (200, 202) and result.error is None
    assert result.duration_ms >= 0
    [got] = receiver.requests
    assert got.verified == PAYLOAD  # the receiver verified the Standard Webhooks signature
    assert got.headers["webhook-id"] == "msg_note-1"
    assert got.headers["content-type"] == "application/json"
    assert json.loads(got.body) == PAYLOAD


def test_deliver_retries_server_errors_with_our_reason_and_the_body_apart(
    receiver: Receiver,
) -> None:
    result = send(receiver, "/fail")
    assert result.outcome is Outcome.RETRY and result.status_code == 500
    assert result.error == "HTTP 500: the endpoint failed"  # our words, never the target's
    assert result.detail == "database is down"  # the excerpt, kept apart for owners
    assert receiver.requests[0].verified == PAYLOAD


def test_target_body_is_bounded_and_kept_out_of_the_error(receiver: Receiver) -> None:
    result = send(receiver, "/huge")
    assert result.outcome is Outcome.RETRY and result.status_code == 503
    assert result.error == "HTTP 503: the endpoint failed"
    assert result.detail is not None and result.detail.startswith("EEE")
    assert len(result.detail) == delivery.MAX_DETAIL_CHARS


def test_target_excerpt_is_sanitised() -> None:
    raw = b"<script>alert(1)</script>\x1b[31m\r\nline two\xe2\x80\xae" + b"x" * 500
    excerpt = delivery.sanitise_excerpt(raw)
    assert excerpt is not None and len(excerpt) == delivery.MAX_DETAIL_CHARS
    assert all(" " <= ch <= "~" for ch in excerpt)  # no controls, no bidi overrides
    assert "line two?" in excerpt and "\x1b" not in excerpt


def test_deliver_gone_disables(receiver: Receiver) -> None:
    result = send(receiver, "/gone")
    assert (result.outcome, result.status_code) == (Outcome.DISABLED, 410)


def test_deliver_client_error_fails(receiver: Receiver) -> None:
    result = send(receiver, "/bad")
    assert (result.outcome, result.status_code) == (Outcome.FAILED, 400)
    assert result.error == "HTTP 400: the endpoint refused the delivery"
    assert result.detail == "bad signature"


def test_deliver_rate_limited_reports_retry_after(receiver: Receiver) -> None:
    result = send(receiver, "/slow-down")
    assert (result.outcome, result.status_code, result.retry_after) == (Outcome.RETRY, 429, "7")
    assert next_delay(1, SCHEDULE, result.retry_after, jitter=0) == 7


def test_deliver_does_not_follow_redirects(receiver: Receiver) -> None:
    result = send(receiver, "/redirect")
    assert (result.outcome, result.status_code) == (Outcome.FAILED, 302)
    assert result.error is not None and "not followed" in result.error
    assert "/ok" not in (result.error or "") and result.detail is None  # no Location kept
    assert receiver.paths() == ["/redirect"]  # /ok was never requested


def test_deliver_timeout_is_retried(receiver: Receiver) -> None:
    # 1 s: long enough that the loopback connect itself never times out on a busy machine (that
    # is a ConnectionError, not the read timeout this test is about).
    result = send(receiver, "/hang", timeout_s=1.0)
    assert result.outcome is Outcome.RETRY
    assert result.status_code is None
    assert result.error is not None and "Timeout" in result.error
    assert 900 <= result.duration_ms < 10_000
    assert receiver.paths() == ["/hang"]


def test_deliver_connection_refused_is_retried() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = deliver(
        f"http://127.0.0.1:{port}/x",
        generate_secret(),
        PAYLOAD,
        msg_id="m",
        timeout_s=2,
        allow_private=True,
    )
    assert result.outcome is Outcome.RETRY and result.status_code is None
    assert result.error is not None and "ConnectionError" in result.error


def test_deliver_refuses_private_targets_without_sending(receiver: Receiver) -> None:
    result = send(receiver, "/ok", allow_private=False)
    assert result.outcome is Outcome.FAILED and result.status_code is None
    assert result.error is not None and "only public addresses" in result.error
    assert receiver.requests == []


def test_deliver_revalidates_at_send_time(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The name was public at registration; now it resolves to loopback (DNS rebinding).
    def rebound(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebound)
    result = deliver(
        "http://hooks.example.com/ok",
        receiver.secret,
        PAYLOAD,
        msg_id="m",
        timeout_s=2,
        allow_private=False,
    )
    assert result.outcome is Outcome.FAILED and "127.0.0.1" in (result.error or "")
    assert receiver.requests == []


def test_deliver_with_a_bad_secret_fails_without_raising(receiver: Receiver) -> None:
    result = deliver(
        f"{receiver.url}/ok", "not base64!!", PAYLOAD, msg_id="m", timeout_s=2, allow_private=True
    )
    assert result.outcome is Outcome.FAILED and "secret" in (result.error or "")
    assert receiver.requests == []


def test_ssrf_idna_split_webhook_never_reaches_the_internal_receiver(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # IDNA 2003 ("ss") resolves public, UTS 46 ("xn--zca") resolves to the internal receiver.
    port = int(receiver.url.rsplit(":", 1)[1])
    real = socket.getaddrinfo

    def split(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str):
            host = host.encode("idna").decode("ascii")  # what the real getaddrinfo does
        answers = {"strasse.example": "93.184.216.34", "xn--strae-oqa.example": "127.0.0.1"}
        if host in answers:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", split)
    result = deliver(
        f"http://straße.example:{port}/ok",
        receiver.secret,
        PAYLOAD,
        msg_id="m",
        timeout_s=2,
        allow_private=False,
    )
    assert result.outcome is Outcome.FAILED and "127.0.0.1" in (result.error or "")
    assert receiver.requests == []
    with pytest.raises(WebhookURLError, match="loopback"):
        validate_webhook_url(f"http://straße.example:{port}/ok", allow_private=False)
