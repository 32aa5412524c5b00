"""Note evaluation: run a note generator over the sessions in ``bench/eval/notes/`` and score
each note, for every note kind.

    python -m bench.eval.notes_eval            # offline generator (no key), or
    ANTHROPIC_API_KEY=... python -m bench.eval.notes_eval   # the Messages API
                                                            # (ANTHROPIC_BASE_URL for another one)
    python -m bench.eval.notes_eval --kind kb_article       # one kind only

The resolution note is scored over ``bench/eval/notes/*.json``; each other kind over its own
cases in ``bench/eval/notes/<kind>/``: a KB article case names a resolved session of the set and
the customer details its article must not carry; an escalation case is an open session.

Per session and in total:

* completeness: share of the kind's sections present and non-empty;
* groundedness: share of the note's specific tokens (IP addresses, host and domain names,
  e-mail addresses, URLs, KB/CVE numbers, hex error codes, registry and file paths, version
  numbers, numbers with units) that occur in the session data;
* coverage: share of the ``confirmed``, ``root_cause`` and ``resolution`` facts the note
  reflects (the note carries at least 60 % of the fact's content words);
* length: characters and words of the delivered markdown;
* leaks: secret canaries of the session (values typed into sensitive parameters) found in it;
* identifying (KB articles): customer-identifying details (names, e-mail addresses, host names,
  IP addresses, ticket numbers) of the session found in the article.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.notes.generator import (
    SECTIONS,
    BundleFact,
    BundleFix,
    BundleScriptRun,
    GeneratedNote,
    NoteBundle,
    ResolutionNoteGenerator,
    bundle_text,
    specific_tokens,
)
from services.notes.kinds import kind_spec, kind_specs, prepared_bundle
from shared.config import DEFAULT_ANTHROPIC_MODEL
from shared.llm import LLMClient

DATA_DIR = Path(__file__).with_name("notes")
RESOLUTION_NOTE = "resolution_note"
COVERED_KINDS = ("confirmed", "root_cause", "resolution")
# A fact counts as reflected when the note carries this share of its content words.
COVERAGE_WORD_SHARE = 0.6
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'._-]*")
_STOP = frozenset(
    "a an and the of to in on for with by at from is was were be been it its this that as or "
    "not no so but into than then there their they them our we you your he she his her".split()
)


def load_sessions(directory: Path = DATA_DIR) -> list[tuple[str, NoteBundle]]:
    """Every evaluation session as ``(name, bundle)``, sorted by file name."""
    sessions = []
    for path in sorted(directory.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        sessions.append((str(data["id"]), bundle_of(data)))
    return sessions


@dataclass(frozen=True)
class Case:
    name: str
    bundle: NoteBundle
    # Customer details the note must not carry (KB articles).
    identifiers: tuple[str, ...] = ()


def load_cases(kind: str, directory: Path = DATA_DIR) -> list[Case]:
    """The evaluation cases of ``kind``, sorted by file name, each bundle prepared as the
    product prepares it (a KB article's generalised)."""
    if kind == RESOLUTION_NOTE:
        return [Case(name, bundle) for name, bundle in load_sessions(directory)]
    cases = []
    for path in sorted((directory / kind).glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("session"):
            session = json.loads((directory / f"{data['session']}.json").read_text("utf-8"))
            session["facts"] = [*session["facts"], *(data.get("extra_facts") or [])]
            data = {**session, **{k: v for k, v in data.items() if k != "extra_facts"}}
        bundle = bundle_of(data, kind=kind)
        cases.append(
            Case(
                name=str(data["id"]),
                bundle=prepared_bundle(bundle, ticket_ref=data.get("ticket_ref")),
                identifiers=tuple(data.get("identifiers") or ()),
            )
        )
    return cases


def bundle_of(data: dict[str, Any], *, kind: str = RESOLUTION_NOTE) -> NoteBundle:
    stamp = "2026-12-01T09:{:02d}:00+00:00".format
    facts = tuple(
        BundleFact(kind=f["kind"], text=f["text"], created_at=stamp(n), id=f"fact-{n}")
        for n, f in enumerate(data.get("facts") or [], start=1)
    )
    fix = data.get("fix")
    runs = tuple(
        BundleScriptRun(
            template_name=r["template_name"],
            parameters=dict(r.get("parameters") or {}),
            created_at=stamp(40 + n),
        )
        for n, r in enumerate(data.get("script_runs") or [], start=1)
    )
    return NoteBundle(
        kind=kind,
        session_id=str(data["id"]),
        account_id="eval",
        state_version=1,
        title=data.get("title"),
        problem=data.get("problem"),
        facts=facts,
        active_fix=None
        if not fix
        else BundleFix(
            title=fix["title"],
            summary=fix.get("summary"),
            steps=tuple(fix.get("steps") or ()),
            script=None,
            confidence=fix.get("confidence"),
            decision=fix.get("decision"),
            created_at=stamp(30),
        ),
        script_runs=runs,
        forbidden_values=frozenset(data.get("canaries") or ()),
    )


def _words(text: str) -> set[str]:
    return {w.casefold().strip("._-'") for w in _WORD.findall(text)} - _STOP - {""}


@dataclass(frozen=True)
class Score:
    name: str
    generator: str
    completeness: float
    groundedness: float
    coverage: float
    chars: int
    words: int
    leaks: int
    tokens: int
    ungrounded: tuple[str, ...]
    # Customer details found in a KB article (always 0 for the other kinds).
    identifying: int = 0
    identified: tuple[str, ...] = ()


def _sections(markdown: str) -> dict[str, str]:
    found: dict[str, list[str]] = {}
    current: str | None = None
    for line in markdown.splitlines():
        if line.startswith("## "):
            current = line[3:].strip()
            found.setdefault(current, [])
        elif current is not None:
            found[current].append(line)
    return {name: "\n".join(lines).strip() for name, lines in found.items()}


def _titles(kind: str) -> tuple[str, ...]:
    spec = kind_spec(kind)
    return SECTIONS if spec is None else spec.titles


def _covered_kinds(kind: str) -> tuple[str, ...]:
    spec = kind_spec(kind)
    return COVERED_KINDS if spec is None else spec.fact_kinds()


def _mentions(markdown: str, value: str) -> bool:
    """Whether ``value`` appears as a word of its own (a single-word name case-sensitively:
    "Mark" is a name, "mark" a word)."""
    flags = 0 if re.fullmatch(r"[A-Za-z]+", value) else re.IGNORECASE
    return re.search(rf"(?<![\w@.-]){re.escape(value)}(?![\w@-])", markdown, flags) is not None


def score(
    name: str, bundle: NoteBundle, note: GeneratedNote, *, identifiers: tuple[str, ...] = ()
) -> Score:
    markdown = note.markdown
    sections = _sections(markdown)
    titles = _titles(bundle.kind)
    complete = sum(1 for s in titles if sections.get(s)) / len(titles)

    hay = "".join(bundle_text(bundle).split()).casefold()
    tokens = specific_tokens(markdown)
    ungrounded = tuple(t for _c, t in tokens if "".join(t.split()).casefold() not in hay)
    grounded = 1.0 if not tokens else 1 - len(ungrounded) / len(tokens)

    note_words = _words(markdown)
    refs = bundle.fact_refs()
    covered_kinds = _covered_kinds(bundle.kind)
    wanted = [f for f in refs.values() if f.kind in covered_kinds]
    covered = 0
    for fact in wanted:
        words = _words(fact.text)
        if not words:
            covered += 1
            continue
        share = len(words & note_words) / len(words)
        if share >= COVERAGE_WORD_SHARE:
            covered += 1
    coverage = 1.0 if not wanted else covered / len(wanted)

    leaks = sum(
        1
        for canary in bundle.forbidden_values
        if canary and canary.casefold() in markdown.casefold()
    )
    identified = tuple(
        sorted(v for v in {*identifiers, *bundle.withheld} if v and _mentions(markdown, v))
    )
    return Score(
        name=name,
        generator=note.generator,
        completeness=complete,
        groundedness=grounded,
        coverage=coverage,
        chars=len(markdown),
        words=len(markdown.split()),
        leaks=leaks,
        tokens=len(tokens),
        ungrounded=ungrounded,
        identifying=len(identified),
        identified=identified,
    )


def evaluate(generator: ResolutionNoteGenerator, kind: str = RESOLUTION_NOTE) -> list[Score]:
    return [
        score(case.name, case.bundle, generator.generate(case.bundle), identifiers=case.identifiers)
        for case in load_cases(kind)
    ]


def note_kinds() -> tuple[str, ...]:
    """Every kind the evaluation scores: the resolution note, then the data-defined kinds."""
    return (RESOLUTION_NOTE, *kind_specs())


@dataclass(frozen=True)
class Totals:
    sessions: int
    completeness: float
    groundedness: float
    coverage: float
    mean_chars: float
    mean_words: float
    leaks: int
    identifying: int = 0


def totals(scores: list[Score]) -> Totals:
    n = len(scores) or 1
    tokens = sum(s.tokens for s in scores)
    ungrounded = sum(len(s.ungrounded) for s in scores)
    return Totals(
        sessions=len(scores),
        completeness=sum(s.completeness for s in scores) / n,
        # Token-weighted: every specific token of every note counts once.
        groundedness=1.0 if not tokens else 1 - ungrounded / tokens,
        coverage=sum(s.coverage for s in scores) / n,
        mean_chars=sum(s.chars for s in scores) / n,
        mean_words=sum(s.words for s in scores) / n,
        leaks=sum(s.leaks for s in scores),
        identifying=sum(s.identifying for s in scores),
    )


def client_from_env() -> LLMClient:
    return LLMClient(
        api_key=os.environ.get("ANTHROPIC_API_KEY") or None,
        base_url=os.environ.get("ANTHROPIC_BASE_URL") or None,
        model=os.environ.get("ANTHROPIC_MODEL") or DEFAULT_ANTHROPIC_MODEL,
        timeout_s=float(os.environ.get("LLM_TIMEOUT_S") or 60),
        max_retries=int(os.environ.get("LLM_MAX_RETRIES") or 3),
    )


def _pct(value: float) -> str:
    return f"{100 * value:5.1f}%"


def _print_kind(kind: str, scores: list[Score]) -> None:
    generalised = kind != RESOLUTION_NOTE and bool(getattr(kind_spec(kind), "generalised", False))
    extra = f" {'identifying':>11}" if generalised else ""
    header = (
        f"{'session':<28} {'generator':<17} {'complete':>8} {'grounded':>8} {'coverage':>8} "
        f"{'chars':>6} {'words':>5} {'leaks':>5}" + extra
    )
    print(header)
    print("-" * len(header))
    for s in scores:
        print(
            f"{s.name[:28]:<28} {s.generator:<17} {_pct(s.completeness):>8} "
            f"{_pct(s.groundedness):>8} {_pct(s.coverage):>8} {s.chars:>6} {s.words:>5} "
            f"{s.leaks:>5}" + (f" {s.identifying:>11}" if generalised else "")
        )
        for token in s.ungrounded:
            print(f"{'':<28}   not in the session: {token}")
        for value in s.identified:
            print(f"{'':<28}   identifies the customer: {value}")
    t = totals(scores)
    print("-" * len(header))
    print(
        f"{'TOTAL (' + str(t.sessions) + ' sessions)':<28} {'':<17} {_pct(t.completeness):>8} "
        f"{_pct(t.groundedness):>8} {_pct(t.coverage):>8} {t.mean_chars:>6.0f} "
        f"{t.mean_words:>5.0f} {t.leaks:>5}" + (f" {t.identifying:>11}" if generalised else "")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.eval.notes_eval")
    parser.add_argument("--kind", choices=note_kinds(), help="score one kind only")
    args = parser.parse_args(argv)
    kinds = [args.kind] if args.kind else list(note_kinds())
    llm = client_from_env()
    try:
        generator = ResolutionNoteGenerator(llm)
        for n, kind in enumerate(kinds):
            if n:
                print()
            if kind != RESOLUTION_NOTE or len(kinds) == 1:
                print(f"kind: {kind}")
            _print_kind(kind, evaluate(generator, kind))
    finally:
        llm.close()
    print("(chars and words: mean per note)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
