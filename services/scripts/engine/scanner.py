"""Body scanning: a small PowerShell lexer that finds each placeholder, the context it stands
in (code, a string, a here-string, a comment) and the end of the `#Requires` / `using`
preamble. It only refuses placeholders that could never expand; the injection guarantee does
not depend on it."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from services.scripts.engine.spec import (
    _MAX_NESTING,
    _PLACEHOLDER_RE,
    _PREAMBLE_LINE_RE,
    _RESERVED_RE,
    _SURROGATE_RE,
    _USING_LINE_RE,
    DOUBLE_QUOTE_CHARS,
    RESERVED_VARIABLE_PREFIX,
    SINGLE_QUOTE_CHARS,
)

_CTX_CODE = "code"
_CTX_DQ = "double-quoted string"
_CTX_DQ_HERE = "double-quoted here-string"
_CTX_SQ = "single-quoted string"
_CTX_SQ_HERE = "single-quoted here-string"
_CTX_COMMENT = "comment"
_CTX_BRACED = "${...} variable name"


@dataclass(frozen=True)
class _Placeholder:
    start: int
    end: int
    key: str
    context: str


@dataclass(frozen=True)
class _ScanResult:
    preamble_end: int
    placeholders: tuple[_Placeholder, ...]
    problems: tuple[str, ...]
    newline: str


class _Nesting(Exception):
    pass


class _BodyScanner:
    """Just enough of PowerShell's tokenizer to know, for each ``{{key}}``, whether it sits in
    code, a comment, an expandable string or a verbatim (single-quoted) string."""

    _COMMENT_PREV = frozenset(" \t\r\n;(){}|&,=")

    def __init__(self, body: str) -> None:
        self.s = body
        self.n = len(body)
        self.placeholders: list[_Placeholder] = []
        self.problems: list[str] = []
        self.depth = 0

    # -- helpers -----------------------------------------------------------------------------
    def _match_placeholder(self, i: int, context: str) -> int | None:
        m = _PLACEHOLDER_RE.match(self.s, i)
        if m is None:
            return None
        self.placeholders.append(_Placeholder(m.start(), m.end(), m.group(1), context))
        return m.end()

    def _scan_plain_region(self, start: int, end: int, context: str) -> None:
        for m in _PLACEHOLDER_RE.finditer(self.s, start, end):
            self.placeholders.append(_Placeholder(m.start(), m.end(), m.group(1), context))

    def _here_header_end(self, i: int) -> int | None:
        """``i`` is just after ``@'`` / ``@"``: return the start of the first content line if
        only whitespace follows on this line (a valid here-string header), else None."""
        j = i
        while j < self.n and self.s[j] in " \t":
            j += 1
        if j < self.n and self.s[j] == "\n":
            return j + 1
        if j < self.n and self.s[j] == "\r":
            return j + 2 if self.s.startswith("\r\n", j) else j + 1
        return None

    def _at_line_start(self, i: int) -> bool:
        return i > 0 and self.s[i - 1] in "\r\n"

    def _push(self) -> None:
        self.depth += 1
        if self.depth > _MAX_NESTING:
            raise _Nesting

    # -- states ------------------------------------------------------------------------------
    def scan_code(self, i: int, in_subexpression: bool) -> int:
        """Scan code from ``i``. In a ``$(...)`` subexpression, return just past its ``)``."""
        s, n = self.s, self.n
        self._push()
        parens = 0
        braces = 0
        while i < n:
            c = s[i]
            if c == "{" and s.startswith("{{", i):
                end = self._match_placeholder(i, _CTX_CODE)
                if end is not None:
                    if i > 0 and s[i - 1] == "$":
                        self.problems.append(
                            f"placeholder '{{{{{self.placeholders[-1].key}}}}}' directly after "
                            "'$' would not be a valid variable reference; write it on its own"
                        )
                    i = end
                    continue
            if c == "`":
                i += 2
            elif c == "<" and s.startswith("<#", i):
                end = s.find("#>", i + 2)
                end = n if end < 0 else end + 2
                self._scan_plain_region(i, end, _CTX_COMMENT)
                i = end
            elif c == "#" and (i == 0 or s[i - 1] in self._COMMENT_PREV):
                end = i
                while end < n and s[end] not in "\r\n":
                    end += 1
                self._scan_plain_region(i, end, _CTX_COMMENT)
                i = end
            elif c in SINGLE_QUOTE_CHARS:
                i = self.scan_single_quoted(i + 1)
            elif c in DOUBLE_QUOTE_CHARS:
                i = self.scan_double_quoted(i + 1)
            elif c == "@" and i + 1 < n and s[i + 1] in SINGLE_QUOTE_CHARS + DOUBLE_QUOTE_CHARS:
                content = self._here_header_end(i + 2)
                if content is None:
                    i += 1
                elif s[i + 1] in SINGLE_QUOTE_CHARS:
                    i = self.scan_single_here(content)
                else:
                    i = self.scan_double_here(content)
            elif c == "$" and s.startswith("${", i) and not _PLACEHOLDER_RE.match(s, i + 1):
                i = self.scan_braced_variable(i + 2)
            elif c == "(":
                parens += 1
                i += 1
            elif c == ")":
                if in_subexpression and parens == 0:
                    self.depth -= 1
                    return i + 1
                parens -= 1
                i += 1
            elif c == "{":
                braces += 1
                i += 1
            elif c == "}":
                braces -= 1
                i += 1
            elif (
                self.depth == 1
                and parens == 0
                and braces == 0
                and c in "pP"
                and s[i : i + 5].lower() == "param"
                and (i == 0 or not (s[i - 1].isalnum() or s[i - 1] in "_-$:.\\/"))
            ):
                j = i + 5
                while j < n and s[j] in " \t\r\n":
                    j += 1
                if j < n and s[j] == "(":
                    self.problems.append(
                        "a script-level param() block is not supported: declare parameters in "
                        "the parameter schema and use {{placeholders}}"
                    )
                i += 5
            else:
                i += 1
        self.depth -= 1
        return n

    def scan_braced_variable(self, i: int) -> int:
        s, n = self.s, self.n
        while i < n:
            c = s[i]
            if c == "`":
                i += 2
                continue
            if c == "}":
                return i + 1
            if c == "{" and _PLACEHOLDER_RE.match(s, i):
                end = self._match_placeholder(i, _CTX_BRACED)
                i = end if end is not None else i + 1
                continue
            i += 1
        return n

    def scan_single_quoted(self, i: int) -> int:
        s, n = self.s, self.n
        while i < n:
            c = s[i]
            if c in SINGLE_QUOTE_CHARS:
                if i + 1 < n and s[i + 1] in SINGLE_QUOTE_CHARS:
                    i += 2
                    continue
                return i + 1
            if c == "{" and s.startswith("{{", i):
                end = self._match_placeholder(i, _CTX_SQ)
                if end is not None:
                    i = end
                    continue
            i += 1
        return n

    def scan_single_here(self, i: int) -> int:
        s, n = self.s, self.n
        while i < n:
            c = s[i]
            if c in SINGLE_QUOTE_CHARS and self._at_line_start(i) and i + 1 < n and s[i + 1] == "@":
                return i + 2
            if c == "{" and s.startswith("{{", i):
                end = self._match_placeholder(i, _CTX_SQ_HERE)
                if end is not None:
                    i = end
                    continue
            i += 1
        return n

    def _double_common(self, i: int, context: str) -> int | None:
        """Shared handling of backticks, ``$(...)``, ``${...}`` and placeholders in expandable
        strings; returns the next index, or None when ``s[i]`` is an ordinary character."""
        s = self.s
        c = s[i]
        if c == "`":
            return i + 2
        if c == "$" and s.startswith("$(", i):
            return self.scan_code(i + 2, in_subexpression=True)
        if c == "$" and s.startswith("${", i) and not _PLACEHOLDER_RE.match(s, i + 1):
            return self.scan_braced_variable(i + 2)
        if c == "{" and s.startswith("{{", i):
            end = self._match_placeholder(i, context)
            if end is not None:
                if i > 0 and s[i - 1] == "$":
                    self.problems.append(
                        f"placeholder '{{{{{self.placeholders[-1].key}}}}}' directly after '$' "
                        "would not be a valid variable reference; write it on its own"
                    )
                return end
        return None

    def scan_double_quoted(self, i: int) -> int:
        s, n = self.s, self.n
        self._push()
        while i < n:
            c = s[i]
            if c in DOUBLE_QUOTE_CHARS:
                if i + 1 < n and s[i + 1] in DOUBLE_QUOTE_CHARS:
                    i += 2
                    continue
                self.depth -= 1
                return i + 1
            nxt = self._double_common(i, _CTX_DQ)
            i = i + 1 if nxt is None else nxt
        self.depth -= 1
        return n

    def scan_double_here(self, i: int) -> int:
        s, n = self.s, self.n
        self._push()
        while i < n:
            c = s[i]
            if c in DOUBLE_QUOTE_CHARS and self._at_line_start(i) and i + 1 < n and s[i + 1] == "@":
                self.depth -= 1
                return i + 2
            nxt = self._double_common(i, _CTX_DQ_HERE)
            i = i + 1 if nxt is None else nxt
        self.depth -= 1
        return n


def _preamble_end(body: str) -> int:
    """Index just past the leading ``#Requires`` / ``using`` lines (0 when there are none)."""
    pos = 0
    end = 0
    n = len(body)
    if body.startswith("\ufeff"):
        pos = end = 1
    while pos < n:
        nl = body.find("\n", pos)
        line_end = n if nl < 0 else nl
        line = body[pos:line_end].rstrip("\r")
        m = _PREAMBLE_LINE_RE.fullmatch(line)
        if m is None:
            break
        next_pos = n if nl < 0 else nl + 1
        if line.strip():
            end = next_pos
        pos = next_pos
    return end


_INSERTION_MARK = "{{rfinsertionpoint}}"


class _InsertionProbe(_BodyScanner):
    """The scanner, remembering the context and nesting depth at the insertion mark."""

    context: str | None = None
    mark_depth = -1

    def _match_placeholder(self, i: int, context: str) -> int | None:
        end = super()._match_placeholder(i, context)
        if end is not None and self.s.startswith(_INSERTION_MARK, i):
            self.context, self.mark_depth = context, self.depth
        return end


def insertion_point_problems(body: str, preamble_end: int) -> list[str]:
    """Why the generated assignments could not go at ``preamble_end``: the point must be
    plain top-level code with no comment, string, here-string or subexpression open, and no
    `using` statement may follow it (PowerShell allows them only before any other code)."""
    head = body[:preamble_end]
    if head and not head.endswith(("\n", "\r")):
        head += "\n"
    probe = _InsertionProbe(head + _INSERTION_MARK + "\n")
    try:
        probe.scan_code(0, in_subexpression=False)
    except _Nesting:
        pass
    problems: list[str] = []
    if probe.context != _CTX_CODE or probe.mark_depth != 1:
        problems.append(
            "the #Requires / using lines must leave nothing open (a block comment, string or "
            "here-string) where the generated parameter lines go"
        )
    rest = body[preamble_end:].lstrip("\r\n\t ")
    if _USING_LINE_RE.match(rest):
        problems.append(
            "a using statement must read `using namespace|module|assembly NAME`, with nothing "
            "after it but a complete comment, and come before any other code"
        )
    return problems


@functools.lru_cache(maxsize=512)
def _scan_body(body: str) -> _ScanResult:
    newline = "\r\n" if "\r\n" in body else "\n"
    preamble_end = _preamble_end(body)
    scanner = _BodyScanner(body)
    problems: list[str] = []
    if "\x00" in body:
        problems.append("must not contain NUL characters")
    if _SURROGATE_RE.search(body):
        problems.append("must be valid Unicode text (it contains an unpaired surrogate)")
    if _RESERVED_RE.search(_PLACEHOLDER_RE.sub("", body)):
        problems.append(
            f"names starting with '{RESERVED_VARIABLE_PREFIX}' are reserved for generated "
            "parameter variables; rename the variable"
        )
    try:
        scanner.scan_code(0, in_subexpression=False)
    except _Nesting:
        problems.append(f"strings and subexpressions are nested more than {_MAX_NESTING} deep")
    problems.extend(scanner.problems)
    problems.extend(insertion_point_problems(body, preamble_end))
    placeholders = tuple(sorted(scanner.placeholders, key=lambda p: p.start))
    return _ScanResult(preamble_end, placeholders, tuple(problems), newline)
