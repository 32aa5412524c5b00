"""services.pilot.suggest_fix: the [SUGGEST_FIX] parser and the streaming filter."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.pilot.suggest_fix import (
    CLOSE_TAG,
    MAX_STEPS,
    MAX_TITLE,
    OPEN_TAG,
    ParsedReply,
    SuggestedFixProposal,
    SuggestFixStreamFilter,
    parse_suggest_fix,
)
from tests.support.examples import examples


def block(payload: Any, *, fence: bool = False, pad: str = "\n") -> str:
    body = payload if isinstance(payload, str) else json.dumps(payload)
    if fence:
        body = f"```json\n{body}\n```"
    return f"{OPEN_TAG}{pad}{body}{pad}{CLOSE_TAG}"


GOOD = {
    "title": "Restart the print spooler",
    "summary": "The spooler hangs on a corrupt job.",
    "steps": ["Clear C:\\Windows\\System32\\spool\\PRINTERS", "Start-Service Spooler"],
    "script": "Restart-Service Spooler -WhatIf",
    "template_id": "tpl-spooler",
    "confidence": 80,
}


def squash(text: str) -> str:
    return "".join(text.split())


def stream_through(chunks: list[str]) -> tuple[str, list[str]]:
    filt = SuggestFixStreamFilter()
    emitted = [filt.feed(chunk) for chunk in chunks]
    emitted.append(filt.finish())
    return "".join(emitted), emitted


# -- parse_suggest_fix ------------------------------------------------------------------------


def test_well_formed_block() -> None:
    reply = f"The spooler is stuck.\n\nHere is the fix.\n\n{block(GOOD)}"
    parsed = parse_suggest_fix(reply)
    assert parsed == ParsedReply(
        text="The spooler is stuck.\n\nHere is the fix.",
        fix=SuggestedFixProposal(
            title="Restart the print spooler",
            summary="The spooler hangs on a corrupt job.",
            steps=["Clear C:\\Windows\\System32\\spool\\PRINTERS", "Start-Service Spooler"],
            script="Restart-Service Spooler -WhatIf",
            template_id="tpl-spooler",
            confidence=80,
        ),
        malformed_blocks=0,
    )


def test_reply_without_block() -> None:
    parsed = parse_suggest_fix("  Check the event log first.  \n")
    assert parsed == ParsedReply(text="Check the event log first.", fix=None, malformed_blocks=0)


def test_minimal_block_defaults() -> None:
    fix = parse_suggest_fix(block({"title": "  Reboot  "})).fix
    assert fix == SuggestedFixProposal(
        title="Reboot", summary=None, steps=[], script=None, template_id=None, confidence=None
    )


def test_last_well_formed_block_wins() -> None:
    reply = f"A {block({'title': 'first'})} B {block({'title': 'second'})} C"
    parsed = parse_suggest_fix(reply)
    assert parsed.fix is not None and parsed.fix.title == "second"
    assert parsed.text == "A  B  C"
    assert parsed.malformed_blocks == 0


@pytest.mark.parametrize(
    "bad_body",
    [
        "{not json}",
        "[1, 2, 3]",
        '"just a string"',
        "{}",
        '{"title": ""}',
        '{"title": "   "}',
        '{"title": 42}',
        '{"summary": "no title"}',
        '{"title": "x", "summary": 5}',
        '{"title": "x", "script": ["a"]}',
        '{"title": "x", "steps": {"a": 1}}',
        '{"title": "x", "steps": 3}',
        '{"title": "x", "template_id": {"id": 1}}',
        "",
    ],
)
def test_malformed_blocks_are_ignored_and_counted(
    bad_body: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="services.pilot.suggest_fix"):
        parsed = parse_suggest_fix(f"Text. {block(bad_body)}")
    assert parsed.fix is None
    assert parsed.malformed_blocks == 1
    assert parsed.text == "Text."
    record = next(r for r in caplog.records if r.name == "services.pilot.suggest_fix")
    assert record.__dict__["malformed_blocks"] == 1
    assert bad_body.strip() == "" or bad_body not in record.getMessage()


def test_later_malformed_block_does_not_beat_an_earlier_good_one() -> None:
    reply = f"{block(GOOD)}\nmore\n{block('{oops')}\n{block({'title': ''})}"
    parsed = parse_suggest_fix(reply)
    assert parsed.fix is not None and parsed.fix.title == GOOD["title"]
    assert parsed.malformed_blocks == 2
    assert parsed.text == "more"


@pytest.mark.parametrize(
    ("confidence", "expected"),
    [
        (80, 80),
        (150, 100),
        (-5, 0),
        (72.6, 73),
        (72.5, 73),
        (0.4, 0),
        ("85", 85),
        (" 85.5 ", 86),
        ("90%", 90),
        ("abc", None),
        ("", None),
        (True, None),
        (False, None),
        (None, None),
        ([80], None),
        ({"v": 1}, None),
    ],
)
def test_confidence_is_clamped(confidence: Any, expected: int | None) -> None:
    fix = parse_suggest_fix(block({"title": "t", "confidence": confidence})).fix
    assert fix is not None and fix.confidence == expected


def test_missing_confidence_is_none() -> None:
    fix = parse_suggest_fix(block({"title": "t"})).fix
    assert fix is not None and fix.confidence is None


def test_non_finite_confidence_is_none() -> None:
    fix = parse_suggest_fix(block('{"title": "t", "confidence": NaN}')).fix
    assert fix is not None and fix.confidence is None
    fix = parse_suggest_fix(block('{"title": "t", "confidence": Infinity}')).fix
    assert fix is not None and fix.confidence is None


def test_steps_normalised() -> None:
    fix = parse_suggest_fix(
        block({"title": "t", "steps": ["  one  ", 2, None, "", "   ", {"x": 1}, "two"]})
    ).fix
    assert fix is not None and fix.steps == ["one", "two"]
    single = parse_suggest_fix(block({"title": "t", "steps": "just one"})).fix
    assert single is not None and single.steps == ["just one"]
    none = parse_suggest_fix(block({"title": "t", "steps": None})).fix
    assert none is not None and none.steps == []


def test_lengths_are_bounded() -> None:
    fix = parse_suggest_fix(
        block(
            {
                "title": "T" * 500,
                "summary": "S" * 5000,
                "steps": ["x" * 2000] * 80,
                "script": "Y" * 30000,
            }
        )
    ).fix
    assert fix is not None
    assert len(fix.title) == MAX_TITLE == 200
    assert fix.summary is not None and len(fix.summary) == 4000
    assert len(fix.steps) == MAX_STEPS == 50 and all(len(s) == 1000 for s in fix.steps)
    assert fix.script is not None and len(fix.script) == 20000


def test_blank_optional_strings_become_none_and_integer_template_id_is_text() -> None:
    fix = parse_suggest_fix(
        block({"title": "t", "summary": "  ", "script": "", "template_id": 17})
    ).fix
    assert fix is not None
    assert (fix.summary, fix.script, fix.template_id) == (None, None, "17")


def test_text_around_blocks_is_preserved_and_no_fragments_remain() -> None:
    reply = (
        "Line one.\n\n"
        f"{block(GOOD)}\n\n\n\n"
        "Line two with [brackets] and a stray close tag "
        f"{CLOSE_TAG} here.   \n"
        f"{block('{bad')}"
    )
    parsed = parse_suggest_fix(reply)
    assert parsed.text == "Line one.\n\nLine two with [brackets] and a stray close tag  here."
    assert "SUGGEST_FIX" not in parsed.text
    assert parsed.fix is not None and parsed.malformed_blocks == 1


@pytest.mark.parametrize(
    "wrapped",
    [
        block(GOOD, fence=True),
        block(GOOD, fence=True, pad="\n\n   "),
        block(GOOD, pad=""),
        block(GOOD, pad="  \r\n\t"),
        f"{OPEN_TAG}```{json.dumps(GOOD)}```{CLOSE_TAG}",
        f"{OPEN_TAG}\n```JSON\n{json.dumps(GOOD, indent=2)}\n```\n{CLOSE_TAG}",
    ],
)
def test_whitespace_and_code_fences_are_tolerated(wrapped: str) -> None:
    parsed = parse_suggest_fix(f"Fix below.\n{wrapped}")
    assert parsed.fix is not None and parsed.fix.title == GOOD["title"]
    assert parsed.text == "Fix below."


def test_unterminated_block_is_stripped_to_the_end() -> None:
    parsed = parse_suggest_fix(f'Start. {block({"title": "ok"})} Middle. {OPEN_TAG}\n{{"title": ')
    assert parsed.text == "Start.  Middle."
    assert parsed.fix is not None and parsed.fix.title == "ok"
    assert parsed.malformed_blocks == 1


def test_opening_tag_cut_off_at_the_end_is_stripped() -> None:
    parsed = parse_suggest_fix("All done. [SUGGEST_FIX")
    assert parsed == ParsedReply(text="All done.", fix=None, malformed_blocks=1)
    assert parse_suggest_fix("See [SUGG").text == "See [SUGG"


def test_tags_are_case_sensitive() -> None:
    reply = '[suggest_fix]{"title": "x"}[/suggest_fix]'
    parsed = parse_suggest_fix(reply)
    assert parsed.fix is None and parsed.text == reply


def test_block_body_cannot_span_past_its_first_closing_tag() -> None:
    reply = f'{OPEN_TAG}{{"title": "a {CLOSE_TAG} b"}}{CLOSE_TAG} tail'
    parsed = parse_suggest_fix(reply)
    assert parsed.fix is None and parsed.malformed_blocks == 1
    assert parsed.text == 'b"} tail'  # what follows the first closing tag is text again


def test_abandoned_opening_tag_before_a_complete_block() -> None:
    reply = f"Text {OPEN_TAG} oops {block({'title': 'real'})} after"
    parsed = parse_suggest_fix(reply)
    assert parsed.fix is not None and parsed.fix.title == "real"
    assert parsed.malformed_blocks == 1
    assert parsed.text == "Text  after"


# -- SuggestFixStreamFilter -------------------------------------------------------------------

SAMPLE = (
    "Check the spooler first.\n\n"
    f"{block(GOOD)}\n"
    "Then [reboot]. Stray [/SUGG text and "
    f"{CLOSE_TAG} gone. "
    f"{block('{broken json')}"
    "End [SUGG"
)


def test_stream_filter_single_characters() -> None:
    output, emitted = stream_through(list(SAMPLE))
    assert squash(output) == squash(parse_suggest_fix(SAMPLE).text)
    assert all("[SUGGEST_FIX" not in piece for piece in emitted)


def test_stream_filter_every_single_and_double_split() -> None:
    expected = squash(parse_suggest_fix(SAMPLE).text)
    n = len(SAMPLE)
    for i in range(n + 1):
        output, _ = stream_through([SAMPLE[:i], SAMPLE[i:]])
        assert squash(output) == expected, i
    for i in range(0, n + 1, 3):
        for j in range(i, n + 1):
            output, emitted = stream_through([SAMPLE[:i], SAMPLE[i:j], SAMPLE[j:]])
            assert squash(output) == expected, (i, j)
            assert "Restart" not in output and "broken" not in output


def test_stream_filter_holds_back_a_possible_tag() -> None:
    filt = SuggestFixStreamFilter()
    assert filt.feed("Here is the fix [SUGG") == "Here is the fix "
    assert not filt.in_block
    assert filt.feed("EST_FIX]") == ""
    assert filt.in_block
    assert filt.feed('{"title": "x"}[/SUGGEST_') == ""
    assert filt.feed("FIX] thanks") == " thanks"
    assert filt.finish() == ""


def test_stream_filter_releases_a_false_alarm() -> None:
    filt = SuggestFixStreamFilter()
    assert filt.feed("array[S") == "array"
    assert filt.feed("] ok") == "[S] ok"
    assert filt.feed(" [") == " "
    assert filt.finish() == "["


def test_stream_filter_drops_unterminated_block_on_finish() -> None:
    filt = SuggestFixStreamFilter()
    assert filt.feed('Fix: [SUGGEST_FIX]{"title": "never closed') == "Fix: "
    assert filt.finish() == ""
    with pytest.raises(RuntimeError):
        filt.feed("late")


def test_stream_filter_drops_cut_off_opening_tag_on_finish() -> None:
    filt = SuggestFixStreamFilter()
    assert filt.feed("Done. [SUGGEST_FIX") == "Done. "
    assert filt.finish() == ""


# -- property: any reply, any chunking --------------------------------------------------------

# Prose never contains "@" or "_", so it cannot form a tag on its own, and "@" marks block
# content that must never be shown.
PROSE_PIECES = st.sampled_from(
    [
        "Check DNS. ",
        "\n",
        "\n\n",
        "  ",
        "[",
        "]",
        "[S",
        "[SUGG",
        "[SUGGEST",
        "[/",
        "[/SUGG",
        "[/SUGGEST",
        "{",
        "}",
        "```",
        "json",
        "ok",
        "Restart it.",
    ]
)
PROSE = st.lists(PROSE_PIECES, max_size=6).map("".join)
TITLE = st.text(alphabet="abcdef @", min_size=0, max_size=8).map(lambda s: "@" + s)
PAYLOAD = st.fixed_dictionaries(
    {"title": TITLE},
    optional={
        "summary": st.just("@summary"),
        "steps": st.lists(st.just("@step"), max_size=3),
        "script": st.just("Get-Service @spooler"),
        "confidence": st.one_of(st.integers(-50, 200), st.floats(-10, 110), st.just("85")),
    },
)
WELL_FORMED = st.builds(
    lambda payload, fence, pad: block(payload, fence=fence, pad=pad),
    PAYLOAD,
    st.booleans(),
    st.sampled_from(["", "\n", "  \n  "]),
)
MALFORMED = st.sampled_from(
    [
        block("{@broken"),
        block('{"title": ""}'),
        block('["@list"]'),
        block('{"summary": "@no title"}'),
        f"{OPEN_TAG}@no close here",
    ]
)


@st.composite
def replies(draw: st.DrawFn) -> str:
    parts: list[str] = []
    for _ in range(draw(st.integers(0, 4))):
        parts.append(draw(PROSE))
        parts.append(draw(st.one_of(WELL_FORMED, MALFORMED, st.just(CLOSE_TAG))))
    parts.append(draw(PROSE))
    ending = draw(st.sampled_from(["", "", f"{OPEN_TAG} @cut off", "[SUGGEST_FIX", "[SUGG"]))
    return "".join(parts) + ending


@settings(max_examples=examples(300), deadline=None)
@given(reply=replies(), data=st.data())
def test_stream_filter_matches_parser_for_any_chunking(reply: str, data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(reply)), max_size=12)))
    bounds = [0, *cuts, len(reply)]
    chunks = [reply[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    output, emitted = stream_through(chunks)
    parsed = parse_suggest_fix(reply)
    assert squash(output) == squash(parsed.text)
    for text in (output, parsed.text, *emitted):
        assert "[SUGGEST_FIX" not in text
        assert "[/SUGGEST_FIX" not in text
        assert "@" not in text


@settings(max_examples=examples(200), deadline=None)
@given(reply=replies())
def test_parser_picks_the_last_well_formed_block(reply: str) -> None:
    parsed = parse_suggest_fix(reply)
    good_titles = []
    for piece in reply.split(OPEN_TAG)[1:]:
        if CLOSE_TAG not in piece:
            continue
        body = piece.split(CLOSE_TAG, 1)[0].strip()
        body = body.removeprefix("```json").removesuffix("```").strip()
        try:
            payload = json.loads(body)
        except ValueError:
            continue
        if isinstance(payload, dict) and isinstance(payload.get("title"), str):
            if payload["title"].strip():
                good_titles.append(payload["title"].strip())
    if good_titles:
        assert parsed.fix is not None and parsed.fix.title == good_titles[-1]
        assert parsed.fix.confidence is None or 0 <= parsed.fix.confidence <= 100
    else:
        assert parsed.fix is None
