"""How many examples a hypothesis property runs: the full count in `make test`, a fraction in
`make test-unit`.

tests/conftest.py registers two profiles: `full` (the default, hypothesis's own 100 examples
per property) and `fast` (FAST_EXAMPLES per property, no deadline), which `make test-unit`
selects with `--hypothesis-profile=fast`. A property that asks for more than the default
writes `@settings(max_examples=examples(150))`: 150 under `full`, the same share of the fast
profile's count under `fast` (an explicit `max_examples` would otherwise override the profile).
"""

from __future__ import annotations

from hypothesis import settings

FULL_EXAMPLES = 100
FAST_EXAMPLES = 20


def examples(full: int) -> int:
    """`full` examples under the full profile, scaled by the loaded profile's count otherwise."""
    return max(1, full * settings.default.max_examples // FULL_EXAMPLES)
