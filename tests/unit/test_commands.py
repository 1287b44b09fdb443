"""Agents' commands parse totally: any note is "not a command" or a Command, never an exception.

A crash while parsing an agent's note is an unexpected error, retried until the event is
dead-lettered (issue 15, part 6): ``"²".isdigit()`` is true and ``int("²")`` raises, a
5,000-digit grade is beyond ``int()``'s limit, and a long or odd word quoted back in the
answer could make the answer itself fail. Every malformed command gets a short answer saying how
to write it instead.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support_pipeline.drafts.commands import COMMANDS, MAX_TEXT, Command, parse
from support_pipeline.escalation import MANUAL_COMMAND, MAX_REASON, manual_reason

MAX_ANSWER = 300  # characters: an answer to a malformed command is a short note


def assert_well_formed(command: Command | None) -> None:
    if command is None:
        return
    assert isinstance(command, Command) and command.name in COMMANDS
    if command.error is not None:
        assert command.error.strip() and len(command.error) < MAX_ANSWER, command.error
        assert command.error.isprintable(), command.error
        return
    assert all(isinstance(v, int) and 1 <= v <= 5 for v in command.grades.values())
    assert len(command.reason) <= MAX_TEXT and len(command.comment) <= MAX_TEXT
    for text in (command.reason, command.comment):
        assert "\x00" not in text and not any(0xD800 <= ord(c) <= 0xDFFF for c in text)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("/grade tone=² accuracy=3 policy=4", "tone"),  # "²".isdigit() is True
        ("/grade tone=5 accuracy=\uff15 policy=4", "accuracy"),  # fullwidth five
        ("/grade tone=٣ accuracy=3 policy=4", "tone"),  # Arabic-Indic three
        ("/grade tone=5 accuracy=4 policy=" + "9" * 5000, "policy"),  # beyond int()'s digits
        ("/grade tone=99999999999999999999 accuracy=3 policy=4", "tone"),
        ("/grade tone=0 accuracy=3 policy=4", "tone"),
        ("/grade tone=6 accuracy=3 policy=4", "tone"),
        ("/grade tone=-1 accuracy=3 policy=4", "tone"),
        ("/grade tone=+3 accuracy=3 policy=4", "tone"),
        ("/grade tone=3.0 accuracy=3 policy=4", "tone"),
        ("/grade tone= accuracy=3 policy=4", "tone"),
        ("/grade tone=3\x00 accuracy=3 policy=4", "tone"),
    ],
)
def test_a_grade_that_is_not_an_ascii_digit_1_to_5_is_answered_with_how_to_write_it(text, field):
    command = parse(text)
    assert command is not None and command.name == "/grade" and command.grades == {}
    assert command.error is not None
    assert command.error.startswith(f"{field} must be a whole number from 1 to 5.")
    assert "/grade tone=1-5 accuracy=1-5 policy=1-5" in command.error
    assert_well_formed(command)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/grade tone=5 accuracy=4 policy=5 clear and kind", ((5, 4, 5), "clear and kind")),
        ("/GRADE TONE=1 Accuracy=2 POLICY=3", ((1, 2, 3), "")),
        ("/grade\u00a0tone=4\u2003accuracy=4\u3000policy=4", ((4, 4, 4), "")),
    ],
)
def test_well_formed_grades_and_unicode_whitespace_between_words(text, expected):
    command = parse(text)
    assert command is not None and command.error is None
    (tone, accuracy, policy), comment = expected
    assert command.grades == {"tone": tone, "accuracy": accuracy, "policy": policy}
    assert command.comment == comment


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "\u00a0\u2003\u3000\n\t",  # unicode whitespace only
        "\x00",
        "hello /send",
        "/sendnow",
        "/send\u200b",  # a zero-width space is not whitespace: not the word /send
        "\uff0fsend",  # fullwidth solidus
        "/\u0455end",  # Cyrillic dze
        "/escalate it",  # the escalation rules' command, not a draft command
    ],
)
def test_notes_that_are_not_commands(text):
    assert parse(text) is None


def test_send_in_capitals_and_after_unicode_whitespace_is_send():
    assert parse("/SEND") == Command("/send")
    assert parse("\u2003/Send\u00a0") == Command("/send")
    assert parse("/send d-4K7Q2M") == Command("/send", "d-4k7q2m")


@pytest.mark.parametrize(
    "text",
    [
        "/send d-XXXXXX extra",
        "/send thanks",
        "/send d-4k7q2m d-4k7q2m",
    ],
)
def test_send_with_anything_after_it_is_refused(text):
    command = parse(text)
    assert command is not None and command.name == "/send" and command.error
    assert "takes nothing else" in command.error
    assert_well_formed(command)


@pytest.mark.parametrize(
    "word",
    [
        "d-",
        "d-abc",
        "d-1234567",
        "d-ilo0ab",  # letters draft ids never use
        "d-\uff14k7q2m",  # fullwidth four
        "d-\u212aaaaaa",  # Kelvin sign: lowercases to an ASCII k, still not an id
        "d-" + "x" * 150_000,
        "d-\x00\x01\x02\x03\x04\x05",
        "d-`rm`",
    ],
)
def test_a_word_that_looks_like_a_draft_id_and_is_not_gets_a_short_answer(word):
    for name in COMMANDS:
        command = parse(f"{name} {word} tone=5 accuracy=5 policy=5")
        assert command is not None and command.error and command.draft_id is None
        assert "is not a draft id" in command.error
        assert_well_formed(command)


def test_a_150000_character_note_is_parsed_and_what_is_kept_is_bounded():
    long = "/reject " + " ".join(["palabra"] * 18_750)  # 150,000 characters, Chatwoot's limit
    assert len(long) == 150_007
    command = parse(long)
    assert command is not None and command.error is None and len(command.reason) <= MAX_TEXT
    emoji = "/grade tone=5 accuracy=4 policy=5 " + "😀" * 150_000  # 600 kB of UTF-8
    command = parse(emoji)
    assert command is not None and command.error is None
    assert len(command.comment) == MAX_TEXT
    assert parse("/send " + "x" * 150_000).error  # type: ignore[union-attr]


def test_control_characters_and_lone_surrogates_are_not_kept():
    command = parse("/reject tiene\x00 un\x07 error \ud800aquí")
    assert command is not None and command.reason == "tiene un error aquí"


# ---- the property: parse() is total --------------------------------------------------------
WORDS = st.sampled_from(
    ["/send", "/SEND", "/reject", "/grade", "/Grade", "/escalate", "d-4k7q2m", "d-", "=", "\x00"]
)
GRADE_WORDS = st.builds(
    lambda key, value: key + value,
    st.sampled_from(["tone=", "accuracy=", "policy=", "TONE=", "Policy="]),
    st.sampled_from(["1", "5", "0", "6", "²", "\uff15", "٣", "9" * 5000, "", "\x00"])
    | st.text(max_size=4),
)
SEPARATORS = st.sampled_from([" ", " ", "\u00a0", "\n", "\u3000", "\u200b", ""])
TEXTS = st.text() | st.lists(
    st.tuples(WORDS | GRADE_WORDS | st.text(max_size=12), SEPARATORS), max_size=12
).map(lambda pairs: "".join(word + separator for word, separator in pairs))


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=TEXTS)
def test_parse_never_raises_and_every_error_is_a_short_answer(text):
    assert_well_formed(parse(text))


@settings(max_examples=500, deadline=None)
@given(name=st.sampled_from(COMMANDS), tail=st.text())
def test_any_tail_after_a_command_word_parses(name, tail):
    command = parse(f"{name} {tail}")
    assert command is not None and command.name == name
    assert_well_formed(command)


# ---- /escalate, the escalation rules' own command ------------------------------------------
@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("/escalate cliente amenaza con irse", "cliente amenaza con irse"),
        ("/ESCALATE: customer threatens to cancel", "customer threatens to cancel"),
        ("  /escalate  ", "no reason given"),
        ("/escalate\u00a0urgente\u2003ya", "urgente ya"),
        ("/escalate tiene\x00 un\x07 error", "tiene un error"),
    ],
)
def test_escalate_gives_its_reason(text, why):
    assert manual_reason(text) == why


@pytest.mark.parametrize(
    "text", ["", "escalate now", "/escalated", "/escalate2", "/escalateme", "/escalat", "/send"]
)
def test_other_notes_are_not_escalate(text):
    assert manual_reason(text) is None


def test_a_150000_character_escalate_reason_is_quoted_short():
    why = manual_reason(MANUAL_COMMAND + " " + "😀" * 150_000)
    assert why is not None and len(why) == MAX_REASON and why.endswith("…")


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=TEXTS | st.text().map(lambda t: MANUAL_COMMAND + t))
def test_manual_reason_never_raises(text):
    why = manual_reason(text)
    if why is not None:
        assert why.strip() and len(why) <= MAX_REASON and why.isprintable()
