"""The password policy: every path that sets a password (the CLI's `create-user --password` and
`set-password` today, any API route later) calls `check_password()` before hashing.

Rules (NIST SP 800-63B's, no composition rules): at least `MIN_LENGTH` characters, at most
`MAX_LENGTH` (a bound on what one hash costs), not one of the 30,000 most common passwords (the
ranked list the pinned `zxcvbn` package ships, compared case-insensitively), and not the
account's own e-mail address or its local part.
"""

from __future__ import annotations

from functools import lru_cache

MIN_LENGTH = 12
MAX_LENGTH = 256


class WeakPassword(ValueError):
    """The password breaks the policy; the message says which rule, never the password."""


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(word.lower() for word in FREQUENCY_LISTS["passwords"])


def check_password(password: str, *, email: str | None = None) -> None:
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"password must be at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"password must be at most {MAX_LENGTH} characters")
    folded = password.strip().lower()
    if folded in common_passwords():
        raise WeakPassword("password is one of the most common passwords; choose another")
    if email:
        address = email.strip().lower()
        if folded in {address, address.partition("@")[0]}:
            raise WeakPassword("password must not be the e-mail address")
