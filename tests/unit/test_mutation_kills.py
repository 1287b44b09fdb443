"""Tests that kill mutants `make mutate` found surviving (docs/testing.md, "Mutation testing").

Each test names the mutant it kills; each asserts what an agent or a customer would see.
"""

from __future__ import annotations

from support_pipeline.drafts.commands import MAX_SHOWN, MAX_TEXT, parse


def test_a_long_word_is_quoted_back_cut_to_max_shown_characters_with_an_ellipsis():
    # commands.py _shown: `printable[: MAX_SHOWN - 1]` -> `+ 1`, `// 1`, `>> 1`; and
    # `MAX_SHOWN = 24` -> 23 / 25 (the documented 24 characters, ellipsis included)
    word = "d-" + "x" * 40
    command = parse(f"/send {word}")
    assert command is not None and command.error is not None
    quoted = command.error.split("`")[1]
    assert quoted == word[:23] + "…"
    assert len(quoted) == 24 == MAX_SHOWN


def test_control_characters_do_not_shorten_a_kept_reason_below_max_text():
    # commands.py _kept: `[: MAX_TEXT * 2]` -> `[: MAX_TEXT + 2]` cut the text before the
    # control characters were dropped, keeping fewer than MAX_TEXT characters
    command = parse("/reject " + "\x01" * 10 + "a" * (2 * MAX_TEXT))
    assert command is not None and command.error is None
    assert command.reason == "a" * MAX_TEXT


def test_a_reason_that_sorts_before_a_draft_id_is_a_reason():
    # commands.py parse: `rest[0][:2].lower() == "d-"` -> `<= "d-"` took "ab..." for an id
    command = parse("/reject about the refund policy")
    assert command is not None and command.error is None
    assert command.draft_id is None and command.reason == "about the refund policy"


def test_a_reason_keeps_its_first_1000_characters():
    # commands.py: `MAX_TEXT = 1000` -> `999` (tests that import MAX_TEXT cannot see it); the
    # number is the documented limit of a rejection reason or a grade comment
    command = parse("/reject " + "a" * 5000)
    assert command is not None and command.reason == "a" * 1000


def test_a_short_word_that_is_not_a_draft_id_is_quoted_back_as_written():
    # commands.py _shown: `return printable or "?"` -> `printable and "?"`
    command = parse("/send d-zz")
    assert command is not None and command.error is not None
    assert command.error.startswith("`d-zz` is not a draft id.")


def test_what_is_kept_comes_from_the_first_2000_characters_of_the_note():
    # commands.py _kept: `[: MAX_TEXT * 2]` -> `[: MAX_TEXT * 3]`: a note can hold 150,000
    # characters; only twice what is kept is read and cleaned
    command = parse("/reject " + "\x01" * 1500 + "a" * 2000)
    assert command is not None and command.reason == "a" * 500


def test_a_parsed_command_cannot_be_changed():
    # commands.py: `@dataclass(frozen=True)` on Command -> `frozen=False`: what was parsed
    # from the agent's note is what is acted on
    import dataclasses

    import pytest

    command = parse("/reject d-abcdef too vague")
    assert command is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        command.draft_id = "d-bcdefg"  # type: ignore[misc]


def test_a_word_of_exactly_24_characters_is_quoted_whole():
    # commands.py _shown: `len(printable) > MAX_SHOWN` -> `>=`
    word = "d-" + "x" * 22
    command = parse(f"/send {word}")
    assert command is not None and command.error is not None
    assert command.error.startswith(f"`{word}` is not a draft id.")


def test_the_word_quoted_back_is_the_one_after_the_command():
    # commands.py parse: `_shown(rest[0])` -> `_shown(rest[-1])`
    command = parse("/reject d-zz because")
    assert command is not None and command.error is not None
    assert command.error.startswith("`d-zz` is not a draft id.")


def test_a_message_update_without_a_message_id_is_keyed_by_its_delivery():
    # payload.py _semantic_key: `event == "message_updated" and message` -> `or message`
    from support_pipeline.chatwoot.payload import dedupe_key

    payload = {"event": "message_updated", "account": {"id": 1}, "content": "edited"}
    assert dedupe_key(payload, "d-1", b"{}", signed=True) == "delivery:d-1"
    assert dedupe_key(payload, "d-2", b"{}", signed=True) == "delivery:d-2"


def test_signed_is_said_by_name_by_every_caller_of_dedupe_key():
    # payload.py dedupe_key: `*, signed` -> `/, signed` (a caller could pass a bare True)
    import pytest

    from support_pipeline.chatwoot.payload import dedupe_key

    with pytest.raises(TypeError):
        dedupe_key({}, "d-1", b"{}", True)  # type: ignore[misc]


def test_only_a_numeric_account_with_a_secret_scopes_a_secret():
    # signature.py scoped: `separator and account.isdigit() and secret` -> `separator or ...`
    from support_pipeline.chatwoot.signature import scoped

    assert scoped("7:s3cret") == ("7", "s3cret")
    assert scoped("abc:s3cret") == (None, "abc:s3cret")  # a secret that holds a colon
    assert scoped("7:") == (None, "7:")


def test_a_signed_delivery_cannot_be_changed_after_it_is_read():
    # signature.py: `@dataclass(frozen=True)` on SignedDelivery -> `frozen=False`: the body
    # that was verified is the body that is parsed
    import dataclasses

    import pytest

    from support_pipeline.chatwoot.signature import SignedDelivery

    delivery = SignedDelivery("sha256=00", "1", b"{}")
    with pytest.raises(dataclasses.FrozenInstanceError):
        delivery.body = b'{"event": "forged"}'  # type: ignore[misc]


def test_a_conversation_change_without_updated_at_is_keyed_by_its_delivery():
    # payload.py _semantic_key: `conversation and updated not in (None, "")` -> `or`
    from support_pipeline.chatwoot.payload import conversation_id, dedupe_key

    payload = {"event": "conversation_updated", "account": {"id": 1}, "id": 5}
    payload["conversation"] = {"id": 5}
    assert conversation_id(payload) == "5"
    assert dedupe_key(payload, "d-1", b"{}", signed=True) == "delivery:d-1"
    assert dedupe_key(payload, "d-2", b"{}", signed=True) == "delivery:d-2"


def test_a_credential_cannot_be_widened_after_it_is_granted():
    # signature.py: `@dataclass(frozen=True)` on Credential -> `frozen=False`
    import dataclasses

    import pytest

    from support_pipeline.chatwoot.signature import Credential

    credential = Credential(frozenset({"7"}))
    with pytest.raises(dataclasses.FrozenInstanceError):
        credential.accounts = None  # type: ignore[misc]
    assert not credential.allows("8")
