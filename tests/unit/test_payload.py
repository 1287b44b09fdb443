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
    assert cw.dedupe_key(payload, "d-1", body_of(payload), signed=True) == EXPECTED_KEYS[name]


def test_same_message_under_two_delivery_ids_gets_one_key():
    payload = fixture("message_created_incoming")
    assert cw.dedupe_key(payload, "d-1", b"", signed=True) == cw.dedupe_key(
        payload, "d-2", b"", signed=True
    )


def test_automation_event_names_map_onto_the_account_webhooks_keys():
    payload = fixture("message_created_incoming")
    automation = {**payload, "event": "automation_event.message_created"}
    assert cw.dedupe_key(automation, None, b"", signed=True) == cw.dedupe_key(
        payload, "d-1", b"", signed=True
    )
    # Automation rules cannot sign, and an unsigned post gets keys of its own: it cannot shadow
    # the signed account webhook's delivery of the same change (and both are processed).
    assert cw.dedupe_key(automation, None, b"", signed=False) == "unsigned:message_created:1:1"


def test_message_updated_differs_when_the_message_changed():
    first = {**fixture("message_created_incoming"), "event": "message_updated"}
    later = fixture("message_created_incoming")
    later["event"] = "message_updated"
    later["conversation"]["messages"][0]["updated_at"] = "2026-09-27T02:20:00.000Z"
    assert cw.dedupe_key(first, "d-1", b"", signed=True).startswith("message_updated:1:1:")
    assert cw.dedupe_key(first, "d-1", b"", signed=True) != cw.dedupe_key(
        later, "d-2", b"", signed=True
    )


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
    assert cw.dedupe_key(survey, None, b"", signed=True) != cw.dedupe_key(
        answered, None, b"", signed=True
    )


def test_unknown_event_without_delivery_id_uses_a_body_digest():
    body = b'{"event": "contact_created", "id": 5}'
    key = cw.dedupe_key({"event": "contact_created", "id": 5}, None, body, signed=True)
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


# ---- hostile and malformed ids ----------------------------------------------------------------
HOSTILE_IDS = [
    "7/../../../2/conversations/9",
    -1,
    "-1",
    0,
    "0",
    1.5,
    1.0,
    "01",
    "7#2",
    " 7",
    "7 ",
    "7\n",
    "+7",
    "1e3",
    "",
    "١٢",  # Arabic-Indic digits: str.isdigit() says yes, Chatwoot never sends them
    True,
    False,
    "1" * 20,
    10**19,
    [7],
    {"id": 7},
]


@pytest.mark.parametrize(
    ("value", "expected"),
    [(7, "7"), ("7", "7"), (1, "1"), ("9" * 19, "9" * 19), (10**19 - 1, "9" * 19)],
)
def test_positive_integers_are_ids_in_canonical_text(value, expected):
    assert cw.canonical_id(value) == expected


@pytest.mark.parametrize("value", HOSTILE_IDS, ids=repr)
def test_anything_else_is_not_an_id(value):
    assert cw.canonical_id(value) is None


@pytest.mark.parametrize("value", HOSTILE_IDS, ids=repr)
def test_a_malformed_conversation_id_is_named_and_never_returned(value):
    payload = fixture("message_created_incoming")
    payload["conversation"]["id"] = value
    assert cw.invalid_ids(payload) == (
        "conversation id at conversation.id is not a positive integer"
    )
    assert cw.conversation_id(payload) is None
    assert cw.account_id(payload) == "1"


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (
            lambda p: p["account"].update(id="1/../2"),
            "account id at account.id is not a positive integer",
        ),
        (
            lambda p: p.update(account_id="2#1"),
            "account id at account_id is not a positive integer",
        ),
        (
            lambda p: p["conversation"]["account"].update(id=0),
            "account id at conversation.account.id is not a positive integer",
        ),
        (
            lambda p: p["conversation"].update(account_id="x"),
            "account id at conversation.account_id is not a positive integer",
        ),
        (
            lambda p: p["conversation"].update(display_id="9/../1"),
            "conversation id at conversation.display_id is not a positive integer",
        ),
        (lambda p: p.update(id="3#x"), "message id at id is not a positive integer"),
    ],
)
def test_every_id_the_pipeline_reads_is_checked(mutate, reason):
    payload = fixture("message_created_incoming")
    mutate(payload)
    assert cw.invalid_ids(payload) == reason


def test_a_conversation_event_is_its_own_conversation():
    payload = {**fixture("conversation_updated"), "id": "7/../../../2/conversations/9"}
    assert cw.invalid_ids(payload) == "conversation id at id is not a positive integer"
    assert cw.conversation_id(payload) is None


def test_a_malformed_id_does_not_fall_back_to_another_field():
    payload = fixture("message_created_incoming")
    payload["account"]["id"] = "2/../1"  # conversation.account.id still says 1
    assert cw.account_id(payload) is None


@pytest.mark.parametrize(
    "payload",
    [
        fixture("webwidget_triggered"),
        {"event": "contact_created", "id": "c-5", "account": {"id": 1}},  # not a message id
        {"event": "message_created", "account": {"id": 1}, "conversation": {"id": None}},
        {"event": "message_created", "account": None, "conversation": "not an object"},
        {"event": "conversation_updated", "id": None, "display_id": 4, "account_id": 1},
        {"event": "something_new", "account": {"id": "1"}, "whatever": {"id": "x"}},
    ],
)
def test_absent_ids_and_unknown_events_are_fine(payload):
    assert cw.invalid_ids(payload) is None


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_no_captured_payload_has_a_malformed_id(name):
    assert cw.invalid_ids(fixture(name)) is None


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_unsigned_posts_get_keys_of_their_own(name):
    payload = fixture(name)
    signed = cw.dedupe_key(payload, "d-1", body_of(payload), signed=True)
    unsigned = cw.dedupe_key(payload, "d-1", body_of(payload), signed=False)
    assert signed == EXPECTED_KEYS[name]
    assert unsigned == "unsigned:" + signed
