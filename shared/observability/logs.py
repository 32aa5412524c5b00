"""Logging: structlog and every stdlib logger through one processor chain (redaction included)
that ends in one JSON object per line on stdout."""

from __future__ import annotations

import json as _json
import logging
import sys
from collections.abc import Iterable
from typing import Any, TextIO

import structlog
from structlog.types import EventDict, Processor

from shared.observability.redaction import redact, set_sensitive_keys


class _StdoutHandler(logging.StreamHandler[TextIO]):
    """A handler that writes to whatever `sys.stdout` is at emit time (test capture included)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


_HANDLER_NAME = "rf-structlog"
ACCESS_LOGGER_NAME = "rf.access"


class _AccessLineWriter:
    """Writes one rendered access line to stdout under the stdout handler's lock, as that
    handler would."""

    def __init__(self, handler: logging.Handler) -> None:
        self.handler = handler

    def write(self, line: str) -> None:
        lock = self.handler.lock
        if lock is None:
            sys.stdout.write(line)
            sys.stdout.flush()
            return
        with lock:
            stream = sys.stdout
            stream.write(line)
            stream.flush()


# The access line's short path, set by configure_logging: (the stdout handler, its writer).
# The access line is written once per request, and the general path (structlog's bound
# logger, a stdlib LogRecord, the handler's formatter, redaction a second time for exception
# text it never has) was the gateway's largest cost. The short path (:func:`access_line`)
# builds the same event (context, level, logger name, timestamp), redacts it with the same
# processor and renders the same JSON.
_access_fast: tuple[logging.Handler, _AccessLineWriter] | None = None
_iso_utc_stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)


def access_line(fields: dict[str, Any], level: int) -> str:
    """The access line as the general chain renders it: the event, the request's context,
    level, logger name and timestamp, redacted, as one JSON line."""
    event: EventDict = {"event": "request", **fields}
    structlog.contextvars.merge_contextvars(None, "", event)
    event["level"] = "debug" if level == logging.DEBUG else "info"
    event["logger"] = ACCESS_LOGGER_NAME
    _iso_utc_stamp(None, "", event)
    redact(None, "", event)
    return _json.dumps(event, default=str) + "\n"


def configure_logging(
    level: str = "INFO",
    json: bool = True,
    *,
    sensitive_keys: Iterable[str] | None = None,
) -> None:
    """Route structlog and stdlib logging to stdout as JSON lines (or console text).

    Idempotent: calling it again replaces the handler it installed and nothing else.
    """
    if sensitive_keys is not None:
        set_sensitive_keys(sensitive_keys)
    numeric_level = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric_level, int):
        numeric_level = logging.INFO

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer(default=str)
        if json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            # Redact before the event leaves structlog, so no other handler on the way (a test
            # runner's log capture, a handler a library adds) ever holds the raw values; the
            # formatter redacts again after formatting exceptions.
            redact,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # Exceptions become text before `redact`, so a traceback that quotes a sensitive
            # value is scrubbed too.
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
    )
    handler = _StdoutHandler()
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    global _access_fast
    _access_fast = (handler, _AccessLineWriter(handler)) if json else None

    root = logging.getLogger()
    for existing in list(root.handlers):
        # Ours from an earlier call, and plain console handlers (logging.basicConfig) that would
        # print every line a second time, unredacted. Other handlers (a test runner's capture,
        # an error reporter) stay.
        if existing.get_name() == _HANDLER_NAME or type(existing) is logging.StreamHandler:
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(numeric_level)
    # Python warnings (a library's DeprecationWarning, Celery's SecurityWarning) become log
    # events in the same JSON chain instead of free text on stderr.
    logging.captureWarnings(True)
    # Libraries that install their own handlers would print unstructured, unredacted lines.
    for name in ("werkzeug", "gunicorn.error", "gunicorn.access", "celery", "celery.task"):
        lib = logging.getLogger(name)
        lib.handlers.clear()
        lib.propagate = True


def get_logger(name: str | None = None) -> Any:
    return structlog.stdlib.get_logger(name)


def bind_context(**values: Any) -> None:
    """Add values to the log context of the current request or task."""
    structlog.contextvars.bind_contextvars(**values)
