"""The default :class:`Transport`: vet the URL's addresses, then one request with no redirects,
no proxy settings from the environment, a deadline and a capped response body.

It is the seam where the shared SSRF-safe outbound client plugs in: adapters only ever see the
``Transport`` protocol.
"""

from __future__ import annotations

from collections.abc import Mapping

import requests

from services.notes import delivery
from services.notes.adapters.base import HttpResponse, TransportError

MAX_RESPONSE_BYTES = 1024 * 1024
PRIVATE_HINT = "set ALLOW_PRIVATE_WEBHOOKS=true to allow private and loopback addresses"


def vet_url(url: str, *, allow_private: bool) -> str:
    """``url`` if it may be called; raises :class:`TransportError` naming the switch."""
    try:
        return delivery.validate_webhook_url(url, allow_private=allow_private)
    except delivery.WebhookURLError as exc:
        message = str(exc).replace("webhook URL", "URL").replace("webhook host", "host")
        if "only public addresses" in message:
            message = f"{message} ({PRIVATE_HINT})"
        raise TransportError(message, retryable=exc.retryable) from exc


class RequestsTransport:
    def __init__(self, *, allow_private: bool) -> None:
        self.allow_private = allow_private

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None = None,
        timeout_s: float,
    ) -> HttpResponse:
        checked = vet_url(url, allow_private=self.allow_private)
        with requests.Session() as http:
            http.trust_env = False
            try:
                response = http.request(
                    method,
                    checked,
                    headers=dict(headers),
                    data=body,
                    timeout=timeout_s,
                    allow_redirects=False,
                    stream=True,
                )
            except requests.exceptions.InvalidURL as exc:
                raise TransportError(f"invalid URL: {exc}", retryable=False) from exc
            except requests.RequestException as exc:
                raise TransportError(f"{type(exc).__name__}: {exc}"[:300]) from exc
            try:
                try:
                    raw = response.raw.read(MAX_RESPONSE_BYTES, decode_content=True) or b""
                except Exception as exc:  # noqa: BLE001 - a body cut short is a lost answer
                    raise TransportError(f"the answer was cut short: {exc}"[:300]) from exc
                return HttpResponse(
                    status=response.status_code,
                    headers={k.lower(): v for k, v in response.headers.items()},
                    body=raw,
                )
            finally:
                response.close()
