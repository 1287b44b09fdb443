import base64
import hashlib
import hmac

import pytest

from support_pipeline.chatwoot.signature import (
    SignatureError,
    SignedDelivery,
    parse_secrets,
    sign,
    token_matches,
    verify,
)
from support_pipeline.ingest import WebhookRequest
from tests.support import NOW, SECRET, body_of, fixture, webhook_event

BODY = body_of(fixture("message_created_incoming"))


def delivery(signature: str | None, timestamp: str | None = str(int(NOW)), body: bytes = BODY):
    return SignedDelivery(signature_header=signature, timestamp_header=timestamp, body=body)


def test_sign_matches_chatwoots_scheme_over_timestamp_dot_raw_body():
    expected = hmac.new(SECRET.encode(), f"{int(NOW)}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, int(NOW), BODY) == f"sha256={expected}"


def test_good_signature_verifies():
    verify(delivery(sign(SECRET, int(NOW), BODY)), [SECRET], NOW, 300)


def test_uppercase_hex_and_surrounding_spaces_verify():
    header = " sha256=" + sign(SECRET, int(NOW), BODY)[7:].upper() + " "
    verify(delivery(header), [SECRET], NOW, 300)


@pytest.mark.parametrize(
    ("signature", "timestamp", "now", "reason"),
    [
        (sign("wrong-secret", int(NOW), BODY), str(int(NOW)), NOW, "signature mismatch"),
        (sign(SECRET, int(NOW) - 301, BODY), str(int(NOW) - 301), NOW, "stale timestamp"),
        (sign(SECRET, int(NOW) + 301, BODY), str(int(NOW) + 301), NOW, "timestamp in the future"),
        (None, str(int(NOW)), NOW, "missing signature"),
        ("", str(int(NOW)), NOW, "missing signature"),
        ("sha1=abc", str(int(NOW)), NOW, "malformed signature header"),
        ("sha256=" + "z" * 64, str(int(NOW)), NOW, "malformed signature header"),
        (sign(SECRET, int(NOW), BODY)[7:], str(int(NOW)), NOW, "malformed signature header"),
        (sign(SECRET, int(NOW), BODY), None, NOW, "missing timestamp"),
        (sign(SECRET, int(NOW), BODY), "yesterday", NOW, "malformed timestamp"),
    ],
)
def test_bad_deliveries_are_refused_with_a_named_reason(signature, timestamp, now, reason):
    with pytest.raises(SignatureError) as error:
        verify(delivery(signature, timestamp), [SECRET], now, 300)
    assert error.value.reason == reason


def test_timestamp_on_the_tolerance_edge_is_accepted():
    ts = int(NOW) - 300
    verify(delivery(sign(SECRET, ts, BODY), str(ts)), [SECRET], NOW, 300)


def test_body_tampered_after_signing_fails():
    header = sign(SECRET, int(NOW), BODY)
    with pytest.raises(SignatureError, match="mismatch"):
        verify(delivery(header, body=BODY.replace(b"anillo", b"collar")), [SECRET], NOW, 300)


def test_rotated_secret_any_configured_secret_may_match():
    old, new = "old-secret-aaaa", "new-secret-bbbb"
    secrets = parse_secrets(f"{old}, {new} ,")
    assert secrets == [old, new]
    verify(delivery(sign(old, int(NOW), BODY)), secrets, NOW, 300)
    verify(delivery(sign(new, int(NOW), BODY)), secrets, NOW, 300)


def test_base64_body_is_decoded_before_verifying():
    event = webhook_event(BODY)
    event["body"] = base64.b64encode(BODY).decode()
    event["isBase64Encoded"] = True
    request = WebhookRequest.from_api_gateway(event)
    assert request.base64_encoded
    assert base64.b64decode(request.raw_body) == BODY


def test_token_matching_is_exact():
    assert token_matches(SECRET, ["other", SECRET])
    assert not token_matches(SECRET + "x", [SECRET])
    assert not token_matches("", [SECRET])
    assert not token_matches(None, [SECRET])


def test_a_secret_bound_to_an_account_signs_for_that_account_only():
    secrets = ["1:secret-one", "2:secret-two", "plain-secret"]
    assert verify(delivery(sign("secret-one", int(NOW), BODY)), secrets, NOW, 300).accounts == {"1"}
    anyone = verify(delivery(sign("plain-secret", int(NOW), BODY)), secrets, NOW, 300)
    assert anyone.accounts is None and anyone.allows("7")
    # the scope is not part of the secret: "1:secret-one" itself signs nothing
    with pytest.raises(SignatureError):
        verify(delivery(sign("1:secret-one", int(NOW), BODY)), secrets, NOW, 300)
    assert token_matches("secret-two", secrets).allows("2")
    assert not token_matches("secret-two", secrets).allows("1")
