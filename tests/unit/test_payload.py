import pytest

from support_pipeline.chatwoot import payload as cw
from tests.support import ALL_FIXTURES, body_of, fixture

EXPECTED_KEYS = {
    "conversation_status_changed_resolved": "conversation_status_changed:1:1:1790475376.9969482",
    "conversation_updated": "conversation_updated:1:1:1790475334.762634",
    "message_created_incoming": "message_created:1:1",
    "message_created_incoming_attachment": "message_created:1:2",
    "message_created_outgoing_agent": "message_created:1:3",
    "message_created_outgoing_agent_bot": "message_created:1:5",
    "message_created_private_note": "message_created:1:4",
    "webwidget_triggered": "delivery:d-1",
}


def test_every_fixture_has_an_expected_key():
    assert set(EXPECTED_KEYS) == set(ALL_FIXTURES)


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_dedupe_key_for_each_fixture(name):
    payload = fixture(name)
    assert cw.dedupe_key(payload, "d-1", body_of(payload)) == EXPECTED_KEYS[name]


def test_same_message_under_two_delivery_ids_gets_one_key():
    payload = fixture("message_created_incoming")
    assert cw.dedupe_key(payload, "d-1", b"") == cw.dedupe_key(payload, "d-2", b"")


def test_automation_rule_post_of_the_same_message_shares_the_key():
    payload = fixture("message_created_incoming")
    automation = {**payload, "event": "automation_event.message_created"}
    assert cw.dedupe_key(automation, None, b"") == cw.dedupe_key(payload, "d-1", b"")


def test_message_updated_differs_when_the_message_changed():
    first = {**fixture("message_created_incoming"), "event": "message_updated"}
    later = fixture("message_created_incoming")
    later["event"] = "message_updated"
    later["conversation"]["messages"][0]["updated_at"] = "2026-09-27T02:20:00.000Z"
    assert cw.dedupe_key(first, "d-1", b"").startswith("message_updated:1:1:")
    assert cw.dedupe_key(first, "d-1", b"") != cw.dedupe_key(later, "d-2", b"")


def test_csat_answer_without_updated_at_is_not_a_duplicate():
    survey = {
        "event": "message_updated",
        "id": 77,
        "account": {"id": 1},
        "conversation": {"id": 9},
        "content_type": "input_csat",
        "message_type": "template",
        "content_attributes": {},
    }
    answered = {
        **survey,
        "content_attributes": {"submitted_values": {"csat_survey_response": {"rating": 5}}},
    }
    assert cw.dedupe_key(survey, None, b"") != cw.dedupe_key(answered, None, b"")


def test_unknown_event_without_delivery_id_uses_a_body_digest():
    body = b'{"event": "contact_created", "id": 5}'
    key = cw.dedupe_key({"event": "contact_created", "id": 5}, None, body)
    assert key.startswith("sha256:") and len(key) == len("sha256:") + 64


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-09-27T02:14:22.880Z", 1790475262.88),
        (1790475262, 1790475262.0),
        (1790475262.887449, 1790475262.887449),
        ("1790475262", 1790475262.0),
        (0, None),
        (None, None),
        ("", None),
        ("not a time", None),
        (True, None),
    ],
)
def test_timestamps_in_every_shape_chatwoot_sends(value, expected):
    result = cw.to_epoch(value)
    assert result == pytest.approx(expected) if expected is not None else result is None


def test_ids_of_message_and_conversation_events():
    message = fixture("message_created_incoming")
    assert (cw.account_id(message), cw.conversation_id(message), cw.message_id(message)) == (
        "1",
        "1",
        "1",
    )
    conversation = fixture("conversation_updated")
    assert (
        cw.account_id(conversation),
        cw.conversation_id(conversation),
        cw.message_id(conversation),
    ) == ("1", "1", None)
    widget = fixture("webwidget_triggered")
    assert (cw.account_id(widget), cw.conversation_id(widget)) == ("1", None)


def test_message_type_both_spellings():
    assert cw.message_type({"message_type": "incoming"}) == "incoming"
    assert cw.message_type({"message_type": 1}) == "outgoing"
    assert cw.message_type({"message_type": 3}) == "template"
    assert cw.message_type({}) is None
