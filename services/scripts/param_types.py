"""Structured text parameter types: one entry per type, each a checker that returns the value
to render (normalised where PowerShell has one spelling) or says what would be accepted.

The engine treats every type here as single-line text: it refuses control characters and
unpaired surrogates first, then calls the checker, then applies the parameter's own
``pattern`` / ``min_length`` / ``max_length``. Rendering is the engine's usual single-quoted
literal, so the checkers decide only what is *meaningful*, never what is *safe*.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from urllib.parse import urlsplit

__all__ = ["TYPES", "ParamType", "Refused", "check", "comparable"]


class Refused(ValueError):
    """The value is not of the type; the message says what would be."""


@dataclass(frozen=True)
class ParamType:
    name: str
    #: What a person should type, for messages and the schema's description.
    accepts: str
    check: Callable[[str], str]
    #: Whether ``after:`` can compare two values of this type.
    ordered: bool = False


_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DATETIME_RE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?"
    r"(?:Z|[+-][0-9]{2}:[0-9]{2})?"
)
_GUID_RE = re.compile(r"\{?[0-9A-Fa-f]{8}-(?:[0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}\}?")
_SID_RE = re.compile(r"S-1-[0-9]{1,14}(?:-[0-9]{1,10}){1,15}", re.IGNORECASE)
_MAC_RE = re.compile(
    r"(?:[0-9A-Fa-f]{2}([:-]))(?:[0-9A-Fa-f]{2}\1){4}[0-9A-Fa-f]{2}"
    r"|[0-9A-Fa-f]{12}|(?:[0-9A-Fa-f]{4}\.){2}[0-9A-Fa-f]{4}"
)
_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN_RE = re.compile(rf"(?=.{{1,253}}\Z){_HOST_LABEL}(?:\.{_HOST_LABEL})+")
# A UPN's prefix: letters, digits and the punctuation AD allows there (no quotes, spaces or @).
_UPN_PREFIX_RE = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
)
_REGISTRY_ROOTS = {
    "HKLM": "HKLM",
    "HKEY_LOCAL_MACHINE": "HKLM",
    "HKCU": "HKCU",
    "HKEY_CURRENT_USER": "HKCU",
    "HKCR": "HKCR",
    "HKEY_CLASSES_ROOT": "HKCR",
    "HKU": "HKU",
    "HKEY_USERS": "HKU",
    "HKCC": "HKCC",
    "HKEY_CURRENT_CONFIG": "HKCC",
}
# The PowerShell drives; the other hives are reached through the Registry:: provider path.
_REGISTRY_DRIVES = {"HKLM", "HKCU"}
_REGISTRY_LONG = {
    "HKLM": "HKEY_LOCAL_MACHINE",
    "HKCU": "HKEY_CURRENT_USER",
    "HKCR": "HKEY_CLASSES_ROOT",
    "HKU": "HKEY_USERS",
    "HKCC": "HKEY_CURRENT_CONFIG",
}
_REGISTRY_KEY_MAX = 255


def _date(value: str) -> str:
    if not _DATE_RE.fullmatch(value):
        raise Refused("must be a date as YYYY-MM-DD, e.g. 2025-01-31")
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise Refused(f"'{value}' is not a calendar date (YYYY-MM-DD, e.g. 2025-01-31)") from None


def _datetime(value: str) -> str:
    if not _DATETIME_RE.fullmatch(value):
        raise Refused(
            "must be an ISO 8601 date and time, e.g. 2025-01-31T17:30 or 2025-01-31T17:30:00Z"
        )
    try:
        return datetime.fromisoformat(value).isoformat()
    except ValueError:
        raise Refused(f"'{value}' is not a real date and time (ISO 8601)") from None


def _guid(value: str) -> str:
    if not _GUID_RE.fullmatch(value) or (value.startswith("{") != value.endswith("}")):
        raise Refused("must be a GUID, e.g. 3f2504e0-4f89-41d3-9a0c-0305e82c3301")
    return str(uuid.UUID(value.strip("{}")))


def _sid(value: str) -> str:
    if not _SID_RE.fullmatch(value):
        raise Refused(
            "must be a security identifier, e.g. S-1-5-21-3623811015-3361044348-30300820-1013"
        )
    parts = value.split("-")
    if int(parts[2]) >= 2**48 or any(int(part) >= 2**32 for part in parts[3:]):
        raise Refused("has an authority or sub-authority out of range for a SID")
    return "S-" + "-".join(parts[1:])


def _cidr(value: str) -> str:
    if "/" not in value or "%" in value:
        raise Refused("must be a network in CIDR notation, e.g. 10.20.0.0/16 or 2001:db8::/48")
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise Refused(
            "must be a network in CIDR notation, e.g. 10.20.0.0/16 or 2001:db8::/48"
        ) from None
    if network.network_address != ipaddress.ip_address(value.split("/", 1)[0]):
        raise Refused(f"has host bits set: the network is {network.with_prefixlen}")
    return network.with_prefixlen


def _url(value: str) -> str:
    hint = "must be an http or https URL, e.g. https://intranet.example.com/path"
    if not value.isascii() or any(c.isspace() for c in value):
        raise Refused(hint + " (no spaces; percent-encode other characters)")
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise Refused(hint) from None
    if parts.scheme.lower() not in ("http", "https") or not host:
        raise Refused(hint)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not re.fullmatch(rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*\.?", host):
            raise Refused(hint + f" ('{host}' is not a valid host name)") from None
    return value


def _upn(value: str) -> str:
    prefix, at, suffix = value.rpartition("@")
    if not at or not value.isascii() or len(value) > 1024:
        raise Refused("must be a user principal name, e.g. jane.doe@contoso.com")
    if not prefix or len(prefix) > 64 or not _UPN_PREFIX_RE.fullmatch(prefix):
        raise Refused(
            "must be a user principal name, e.g. jane.doe@contoso.com (the part before @ may "
            "not have spaces, quotes or a leading, trailing or doubled dot)"
        )
    if not _DOMAIN_RE.fullmatch(suffix):
        raise Refused(f"must end in a domain name after @, e.g. contoso.com (not '{suffix}')")
    return value


def _mac(value: str) -> str:
    if not _MAC_RE.fullmatch(value):
        raise Refused("must be a MAC address, e.g. 00-1A-2B-3C-4D-5E or 00:1a:2b:3c:4d:5e")
    digits = re.sub(r"[^0-9A-Fa-f]", "", value).upper()
    # Windows' own spelling (Get-NetAdapter, ipconfig /all).
    return "-".join(digits[i : i + 2] for i in range(0, 12, 2))


def _registry_path(value: str) -> str:
    hint = r"must be a registry key path, e.g. HKLM:\SOFTWARE\Contoso or HKEY_USERS\.DEFAULT"
    path = value
    if path.lower().startswith("registry::"):
        path = path[len("registry::") :]
    root, sep, rest = path.replace("/", "\\").partition("\\")
    root = root.rstrip(":")
    short = _REGISTRY_ROOTS.get(root.upper())
    if short is None:
        raise Refused(hint + f" ('{root}' is not a registry hive)")
    keys = rest.split("\\") if rest else []
    if keys and keys[-1] == "":
        keys.pop()
    for key in keys:
        if not key:
            raise Refused(hint + " (empty key name: a doubled backslash)")
        if len(key) > _REGISTRY_KEY_MAX:
            raise Refused(f"has a key name longer than {_REGISTRY_KEY_MAX} characters")
        if key in (".", "..") and short != "HKU":
            raise Refused(hint + " ('.' and '..' are not key names)")
        if any(c in key for c in "*?"):
            raise Refused("must not contain wildcards (* or ?): name one key")
    tail = "\\".join(keys)
    if short in _REGISTRY_DRIVES:
        return f"{short}:\\{tail}" if tail else f"{short}:\\"
    return f"Registry::{_REGISTRY_LONG[short]}" + (f"\\{tail}" if tail else "")


TYPES: dict[str, ParamType] = {
    t.name: t
    for t in (
        ParamType("date", "a calendar date, YYYY-MM-DD", _date, ordered=True),
        ParamType("datetime", "an ISO 8601 date and time", _datetime, ordered=True),
        ParamType("guid", "a GUID", _guid),
        ParamType("sid", "a security identifier (S-1-...)", _sid),
        ParamType("cidr", "a network in CIDR notation", _cidr),
        ParamType("url", "an http or https URL", _url),
        ParamType("upn", "a user principal name (name@domain)", _upn),
        ParamType("mac", "a MAC address", _mac),
        ParamType("registry_path", "a registry key path", _registry_path),
    )
}


def check(type_name: str, value: str) -> tuple[str | None, str | None]:
    """(normalised value, None) or (None, message)."""
    if not value.isprintable():
        # DEL, C1 controls, zero-width and bidi marks: never part of a date, key or address,
        # and they make a value look like something it is not.
        return None, "must be printable text (no control or invisible formatting characters)"
    try:
        return TYPES[type_name].check(value), None
    except Refused as exc:
        return None, str(exc)


def comparable(type_name: str, value: object) -> object:
    """A value ``after:`` can order: datetimes compare as instants when both carry an offset."""
    if type_name == "date" and isinstance(value, str):
        return date.fromisoformat(value)
    if type_name == "datetime" and isinstance(value, str):
        return datetime.fromisoformat(value)
    return value
