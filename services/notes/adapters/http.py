"""The adapters' :class:`Transport` over the one outbound client (`shared.outbound`): the host is
encoded and resolved once, every address vetted (public only unless ALLOW_PRIVATE_WEBHOOKS),
the connection made to exactly that address, no redirects followed, one total deadline."""

from __future__ import annotations

from collections.abc import Mapping

from services.notes.adapters.base import HttpResponse, TransportError
from shared import outbound

# Enough for a page of a ticket's history; an answer cut at this size parses as no JSON.
MAX_RESPONSE_BYTES = 1024 * 1024


def vet_url(url: str, *, allow_private: bool) -> str:
    """``url`` if it may be called (its message names ALLOW_PRIVATE_WEBHOOKS otherwise)."""
    try:
        return outbound.vet_url(url, allow_private=allow_private).url
    except outbound.OutboundRefused as exc:
        raise TransportError(str(exc), retryable=exc.retryable) from exc


class OutboundTransport:
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
        try:
            response = outbound.send(
                method,
                url,
                headers=headers,
                body=body,
                deadline_s=timeout_s,
                allow_private=self.allow_private,
                max_body_bytes=MAX_RESPONSE_BYTES,
            )
        except outbound.OutboundRefused as exc:
            raise TransportError(str(exc), retryable=exc.retryable) from exc
        except outbound.OutboundTimeout as exc:
            raise TransportError(f"timeout: {exc.reason}") from exc
        except outbound.OutboundError as exc:
            raise TransportError(f"connection failed: {exc.reason}") from exc
        return HttpResponse(
            status=response.status,
            headers=dict(response.headers),
            body=b"" if response.truncated else response.body,
        )
