"""Generalising a session's customer-identifying details, for notes that outlive the ticket (the
knowledge-base article): people's names, user accounts, e-mail addresses, computer and domain
names, IP addresses and ticket numbers become placeholders (``[user]``, ``[computer-2]``...).

Deterministic and offline: the values are found with the rules of ``generalise.yaml`` (beside
this module) in the texts and script-run parameters of a session, then every occurrence of each
value is replaced, longest first, so ``jane.doe@contoso.com`` becomes ``[email]`` and not
``[user]@[domain]``. The same value always gets the same placeholder within one session, so an
article still says that two steps happened on the same machine.

People's names come first from what the session itself knows, not from a list: a name after a
cue word ("user Jane Doe", "Contact: Xiomara Quispe", "requester - Ana Lima"), the parts of a
``first.last`` e-mail local part or account, and any capitalised word that is one of the
session's own accounts (an e-mail or UPN local part, a ``DOMAIN\\user`` account, a profile
folder, a user parameter of a script run) or that account's surname or given name
(``kmensah`` makes "Mensah" a name, ``priyam`` "Priya"). The list of common given names in the
rules is only the fallback, for a name the session writes on its own and nowhere else.

No Flask, no database: :func:`find_identifiers` takes plain strings, and
:meth:`Generalisation.apply` rewrites one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import yaml

RULES_FILE = Path(__file__).with_name("generalise.yaml")

CATEGORIES = ("user", "email", "computer", "domain", "ip_address", "ticket")
# A name part shorter than this is not replaced on its own ("Al" would hit ordinary words).
MIN_NAME_PART = 3

_EMAIL = re.compile(r"\b[\w.+'-]+@(?P<domain>[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)\b")
_FQDN = re.compile(
    r"(?<![\w@.-])(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z][A-Za-z0-9-]{1,62}\b"
)
# NetBIOS-style names: PRINT-SRV01, LAPTOP-ACC-07, DC01, WS-TOM-OLD.
_COMPUTER = re.compile(r"\b[A-Z][A-Z0-9]*(?:-[A-Z0-9]+)+\b|\b[A-Z]{2,}\d{2,}[A-Z0-9]*\b")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.]*\d)")
_UNC = re.compile(r"\\\\(?P<host>[A-Za-z0-9][\w.-]*)\\")
_PROFILE = re.compile(r"(?i:\b[A-Z]:\\Users\\)(?P<user>[^\\\s,;\"']+)")
# CONTOSO\\jdoe (not a registry or file path: nothing may follow the account name).
_DOWN_LEVEL = re.compile(
    r"(?<![\\\w])(?P<domain>[A-Z][A-Z0-9-]{1,14})\\(?P<user>[A-Za-z][\w.-]{1,63})(?![\\\w.-])"
)
_NOT_DOMAINS = frozenset({"HKLM", "HKCU", "HKCR", "HKU", "HKCC", "WINDOWS", "SYSTEM32"})
_CAPITALISED = r"[A-Z][a-z]+(?:-[A-Z][a-z]+)?"


@dataclass(frozen=True)
class Rules:
    version: str
    placeholders: dict[str, str]
    user_parameters: frozenset[str]
    computer_parameters: frozenset[str]
    person_cues: frozenset[str]
    first_names: frozenset[str]
    not_names: frozenset[str]
    vendor_domains: tuple[str, ...]
    tenant_domains: tuple[str, ...]
    top_level_domains: frozenset[str]
    generic_ip_addresses: frozenset[str]
    not_computers: tuple[re.Pattern[str], ...]
    ticket_patterns: tuple[re.Pattern[str], ...]


def _words(values: Iterable[Any]) -> frozenset[str]:
    return frozenset(str(v).casefold() for v in values)


@cache
def rules() -> Rules:
    raw = RULES_FILE.read_text(encoding="utf-8")
    header, _, body = raw.partition("\n")
    key, _, version = header.partition(":")
    if key.strip() != "rules-version" or not version.strip():
        raise RuntimeError(f"{RULES_FILE.name} must start with 'rules-version: NAME'")
    data: dict[str, Any] = yaml.safe_load(body)
    return Rules(
        version=version.strip(),
        placeholders={str(k): str(v) for k, v in data["placeholders"].items()},
        user_parameters=_words(data["user_parameters"]),
        computer_parameters=_words(data["computer_parameters"]),
        person_cues=_words(data["person_cues"]),
        first_names=_words(data["first_names"]),
        not_names=_words(data["not_names"]),
        vendor_domains=tuple(str(d).casefold() for d in data["vendor_domains"]),
        tenant_domains=tuple(str(d).casefold() for d in data["tenant_domains"]),
        top_level_domains=_words(data["top_level_domains"]),
        generic_ip_addresses=_words(data["generic_ip_addresses"]),
        not_computers=tuple(re.compile(p) for p in data["not_computers"]),
        ticket_patterns=tuple(re.compile(p) for p in data["ticket_patterns"]),
    )


@dataclass(frozen=True)
class Identifier:
    value: str
    category: str
    placeholder: str


@dataclass(frozen=True)
class Generalisation:
    """The identifiers of one session and how each is written once generalised."""

    identifiers: tuple[Identifier, ...]

    @property
    def values(self) -> frozenset[str]:
        """The original values: none of them may appear in a generalised note."""
        return frozenset(i.value for i in self.identifiers)

    def placeholder_of(self, value: str) -> str | None:
        folded = value.casefold()
        return next((i.placeholder for i in self.identifiers if i.value.casefold() == folded), None)

    @property
    def _pattern(self) -> re.Pattern[str] | None:
        return _replacement_pattern(self.identifiers)

    def apply(self, text: str) -> str:
        """``text`` with every identifier replaced by its placeholder."""
        pattern = self._pattern
        if pattern is None or not text:
            return text
        lookup = {i.value.casefold(): i.placeholder for i in self.identifiers}
        return pattern.sub(lambda m: lookup.get(m.group(0).casefold(), m.group(0)), text)

    def apply_any(self, value: Any) -> Any:
        """``apply`` through strings, lists and mappings (mapping keys are kept)."""
        if isinstance(value, str):
            return self.apply(value)
        if isinstance(value, Mapping):
            return {k: self.apply_any(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.apply_any(v) for v in value]
        return value


# Bounded: a worker generalises many sessions, each with its own identifiers.
@lru_cache(maxsize=256)
def _replacement_pattern(identifiers: tuple[Identifier, ...]) -> re.Pattern[str] | None:
    if not identifiers:
        return None
    values = sorted({i.value for i in identifiers}, key=lambda v: (-len(v), v))
    # Not inside a longer word, address or name: "DC01" is not replaced inside "DC010".
    alternatives = "|".join(re.escape(v) for v in values)
    return re.compile(rf"(?<![\w@.\-\[])(?:{alternatives})(?![\w@\-\]]|\.\w)", re.IGNORECASE)


def _domain_of(host: str, r: Rules) -> str | None:
    """The customer's domain behind a host or e-mail domain, or None for a vendor's."""
    folded = host.casefold().rstrip(".")
    labels = folded.split(".")
    if len(labels) < 2 or labels[-1] not in r.top_level_domains:
        return None
    for tenant in r.tenant_domains:
        if folded.endswith("." + tenant):
            # contoso.sharepoint.com: the tenant label is the customer's.
            prefix = folded[: -len(tenant) - 1]
            return prefix.split(".")[-1] if prefix else None
    if any(folded == v or folded.endswith("." + v) for v in r.vendor_domains):
        return None
    # The registrable part: the last two labels (three for co.uk-style names).
    if len(labels) >= 3 and labels[-2] in {"co", "com", "org", "net", "ac", "gov"}:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


class _Collector:
    def __init__(self, r: Rules) -> None:
        self.rules = r
        self.found: dict[str, tuple[str, str]] = {}  # casefolded value -> (value, category)
        # The session's own single-word account names (casefolded): e-mail and UPN local
        # parts, DOMAIN\\user accounts, profile folders, user parameters.
        self.accounts: set[str] = set()

    def account(self, name: str) -> None:
        folded = name.strip().casefold()
        if (
            len(folded) >= MIN_NAME_PART + 1
            and folded.isalpha()
            and folded not in self.rules.not_names
        ):
            self.accounts.add(folded)

    def add(self, value: str, category: str) -> None:
        value = value.strip().strip(".,;:'\"()[]")
        if len(value) < 2 or value.casefold() in self.found:
            return
        self.found[value.casefold()] = (value, category)

    def person(self, name: str) -> None:
        words = [w for w in re.split(r"[\s._]+", name.strip()) if w]
        if not words or any(w.casefold() in self.rules.not_names for w in words):
            return
        full = " ".join(w[:1].upper() + w[1:] for w in words)
        self.add(full, "user")
        for word in words:
            if len(word) >= MIN_NAME_PART:
                self.add(word[:1].upper() + word[1:], "user")

    def host(self, host: str) -> None:
        r = self.rules
        domain = _domain_of(host, r)
        if domain is None:
            return
        labels = host.split(".")
        if labels[-1].casefold() not in r.top_level_domains:
            return
        if host.casefold() != domain:
            self.add(host, "computer" if len(labels) >= 3 else "domain")
        self.add(domain, "domain")

    def computer(self, token: str) -> None:
        # PRINT-SRV01, DC01 and WS-TOM-OLD are computers; WI-FI and CORP-WIFI are not.
        if not any(ch.isdigit() for ch in token) and token.count("-") < 2:
            return
        if any(p.search(token.upper()) for p in self.rules.not_computers):
            return
        self.add(token, "computer")


def _scan(text: str, c: _Collector) -> None:
    r = c.rules
    for pattern in r.ticket_patterns:
        for match in pattern.finditer(text):
            c.add(match.groupdict().get("ticket") or match.group(0), "ticket")
    for match in _EMAIL.finditer(text):
        address = match.group(0)
        c.add(address, "email")
        local = address.split("@", 1)[0]
        domain = match.group("domain")
        if "." in local or "_" in local:
            c.person(local)
        elif len(local) >= MIN_NAME_PART and local.casefold() not in r.not_names:
            # A mailbox like sales@ or accounts@ names a team, not a person; one the session
            # also writes as a name ("Xiomara", "Mensah") is found by _scan_accounts.
            c.account(local)
            if local.casefold() in r.first_names:
                c.person(local)
        c.host(domain)
    for match in _UNC.finditer(text):
        c.add(match.group("host"), "computer")
    for match in _PROFILE.finditer(text):
        if match.group("user").casefold() not in {"public", "default", "all users"}:
            c.add(match.group("user"), "user")
            c.account(match.group("user"))
    for match in _DOWN_LEVEL.finditer(text):
        if match.group("domain") not in _NOT_DOMAINS:
            c.add(match.group(0), "user")
            c.add(match.group("user"), "user")
            c.add(match.group("domain"), "domain")
            user = match.group("user")
            if "." in user or "_" in user:
                c.person(user)
            else:
                c.account(user)
    for match in _FQDN.finditer(text):
        c.host(match.group(0))
    for match in _IPV4.finditer(text):
        ip = match.group(0)
        if ip not in r.generic_ip_addresses and all(int(p) <= 255 for p in ip.split(".")):
            c.add(ip, "ip_address")
    for match in _COMPUTER.finditer(text):
        c.computer(match.group(0))
    _scan_names(text, c)


def _scan_names(text: str, c: _Collector) -> None:
    r = c.rules
    # "user Jane Doe", "Ms Patel", "thanks to Ali", "Contact: Ana Lima", "requester - Ana":
    # cue word, then capitalised words.
    cue = re.compile(
        r"\b(?P<cue>[A-Za-z]+)(?:\.|\s*[:=\u2013\u2014-])?\s+(?:to\s+)?"
        rf"(?P<name>{_CAPITALISED}(?:\s+{_CAPITALISED})?)\b"
    )
    for match in cue.finditer(text):
        if match.group("cue").casefold() in r.person_cues:
            c.person(match.group("name"))
    # "Sarah's laptop", "Tom's account".
    for match in re.finditer(rf"\b(?P<name>{_CAPITALISED}(?:\s+{_CAPITALISED})?)['’]s\b", text):
        c.person(match.group("name"))
    # A known given name, with the capitalised word after it when there is one.
    for match in re.finditer(rf"\b(?P<first>{_CAPITALISED})(?:\s+(?P<last>{_CAPITALISED}))?", text):
        first, last = match.group("first"), match.group("last")
        if first.casefold() in r.first_names:
            if last and last.casefold() not in r.not_names:
                c.person(f"{first} {last}")
            else:
                c.person(first)


def _account_of(word: str, accounts: set[str]) -> str | None:
    """The account ``word`` is, or whose surname (``kmensah``, ``jrdoe``) or given name
    (``priyam``) it is, with at most two initials; None when it is none of them."""
    folded = word.casefold()
    for account in sorted(accounts):
        if folded == account:
            return account
        extra = len(account) - len(folded)
        if 1 <= extra <= 2 and len(folded) >= MIN_NAME_PART + 1:
            if account.endswith(folded) or account.startswith(folded):
                return account
    return None


def _scan_accounts(text: str, c: _Collector) -> None:
    """A capitalised word that is one of the session's own accounts (or its surname or given
    name) names that person, with the capitalised word next to it when that is the rest of
    the name: "Xiomara Quispe" for ``xiomara@``, "Kofi Mensah" for ``kmensah``."""
    if not c.accounts:
        return
    r = c.rules
    pattern = rf"\b(?P<first>{_CAPITALISED})(?:\s+(?P<last>{_CAPITALISED}))?"
    for match in re.finditer(pattern, text):
        first, last = match.group("first"), match.group("last")
        if first.casefold() in r.not_names:
            first_account = None
        else:
            first_account = _account_of(first, c.accounts)
        last_account = (
            _account_of(last, c.accounts)
            if last is not None and last.casefold() not in r.not_names
            else None
        )
        if first_account is not None:
            if last and last.casefold() not in r.not_names:
                c.person(f"{first} {last}")
            else:
                c.person(first)
        elif last is not None and last_account is not None:
            # "Kofi Mensah" for kmensah: the given name before a surname shares its initial.
            if last_account[0] == first[0].casefold() and last_account.endswith(last.casefold()):
                c.person(f"{first} {last}")
            else:
                c.person(last)


def _normal_key(key: str) -> str:
    return key.replace("-", "").replace("_", "").casefold()


def find_identifiers(
    texts: Iterable[str],
    *,
    parameters: Iterable[Mapping[str, Any]] = (),
    tickets: Iterable[str | None] = (),
) -> Generalisation:
    """The customer-identifying values in ``texts`` and in script-run ``parameters`` (a user
    or computer parameter's value is one by its name), plus the session's own ``tickets``."""
    r = rules()
    c = _Collector(r)
    for ticket in tickets:
        if ticket and ticket.strip():
            c.add(ticket.strip(), "ticket")
    all_texts: list[str] = [t for t in texts if t]
    for params in parameters:
        for key, value in params.items():
            values = value if isinstance(value, list | tuple) else [value]
            for v in values:
                # A redacted value, or one already generalised ([user]), names nobody.
                if not isinstance(v, str) or not v.strip() or v.lstrip().startswith("["):
                    continue
                name = _normal_key(str(key))
                if name in r.user_parameters:
                    if "@" in v:
                        all_texts.append(v)
                    elif " " in v.strip():
                        c.person(v)
                    else:
                        c.add(v, "user")
                        if "." in v or "_" in v:
                            c.person(v)
                        else:
                            c.account(v.split("\\")[-1])
                elif name in r.computer_parameters:
                    if "." in v:
                        c.host(v)
                    c.add(v, "computer")
                else:
                    all_texts.append(v)
    for text in all_texts:
        _scan(text, c)
    # Second pass, once every text has told what accounts the session has.
    for text in all_texts:
        _scan_accounts(text, c)
    return _numbered(c)


def _name_parts(value: str) -> set[str]:
    return {w.casefold() for w in re.split(r"[\s._\\]+", value) if len(w) >= MIN_NAME_PART}


def _same_person(known: set[str], parts: set[str]) -> bool:
    """A shared name part, or an account made of the other's surname or given name
    (``oadeyemi`` and "Oluwaseun Adeyemi")."""
    if known & parts:
        return True
    for a, b in ((known, parts), (parts, known)):
        if len(a) == 1:
            (account,) = a
            if account.isalpha() and any(_account_of(part, {account}) for part in b):
                return True
    return False


def _numbered(c: _Collector) -> Generalisation:
    """Placeholders in order of first finding. A person's name and its parts share one
    ("Jane Doe", "Jane" and "Doe" are all [user]), and so do an account and its e-mail's
    local part."""
    r = c.rules
    counts: dict[str, int] = {}
    people: list[tuple[set[str], str]] = []
    out: list[Identifier] = []
    for value, category in c.found.values():
        placeholder: str | None = None
        parts = _name_parts(value) if category == "user" else set()
        if parts:
            placeholder = next((p for known, p in people if _same_person(known, parts)), None)
        if placeholder is None:
            counts[category] = counts.get(category, 0) + 1
            n = counts[category]
            base = r.placeholders[category]
            placeholder = f"[{base}]" if n == 1 else f"[{base}-{n}]"
        if parts:
            people.append((parts, placeholder))
        out.append(Identifier(value=value, category=category, placeholder=placeholder))
    return Generalisation(identifiers=tuple(out))
