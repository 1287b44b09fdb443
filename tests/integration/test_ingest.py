"""The webhook endpoint against moto: what reaches the queue, and what never does."""

import base64
import json

import boto3
import pytest

from support_pipeline.chatwoot.signature import sign
from support_pipeline.ingest import WebhookRequest
from tests.support import (
    ALL_FIXTURES,
    NOW,
    SECRET,
    attributes_of,
    body_of,
    fixture,
    load_handler,
    signed_headers,
    webhook_event,
)


def post_raw(pipeline, event, **changes):
    response = pipeline.ingest(**changes).handle(WebhookRequest.from_api_gateway(event))
    return response.status, response.body


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_signed_fixture_is_queued_with_its_attributes_and_raw_body(pipeline, name):
    payload = fixture(name)
    body = body_of(payload)
    status, answer = pipeline.post(body, delivery_id="delivery-42")
    assert status == 202 and answer["status"] == "queued"
    [message] = pipeline.messages(pipeline.queue_url)
    assert message["Body"].encode() == body  # unchanged, byte for byte
    attributes = attributes_of(message)
    assert attributes["event"] == payload["event"]
    assert attributes["dedupe_key"] == answer["dedupe_key"]
    assert attributes["delivery_id"] == "delivery-42"
    assert attributes["signed"] == "true"
    assert attributes["account_id"] == "1"
    assert attributes["received_at"] == "2026-09-27T02:16:40.000Z"
    if name != "webwidget_triggered":
        assert attributes["conversation_id"] == "1"


@pytest.mark.parametrize(
    ("mutate", "status", "reason"),
    [
        (lambda e: e["headers"].pop("x-chatwoot-signature"), 401, "missing signature"),
        (
            lambda e: e["headers"].update({"x-chatwoot-signature": "sha256=beef"}),
            401,
            "malformed signature header",
        ),
        (
            lambda e: e["headers"].update({"x-chatwoot-timestamp": str(int(NOW) - 3600)}),
            401,
            "stale timestamp",
        ),
        (lambda e: e.update(body=e["body"] + " "), 401, "signature mismatch"),
        (lambda e: e["requestContext"]["http"].update(method="GET"), 405, None),
    ],
)
def test_refused_requests_get_a_specific_answer_and_nothing_is_queued(
    pipeline, mutate, status, reason
):
    event = webhook_event(fixture("message_created_incoming"))
    mutate(event)
    got, answer = post_raw(pipeline, event)
    assert got == status
    if reason:
        assert answer["reason"] == reason
    assert pipeline.messages(pipeline.queue_url) == []
    assert pipeline.telemetry.total("WebhookRejected") == 1


def test_wrong_secret_is_401(pipeline):
    status, answer = pipeline.post(fixture("message_created_incoming"), secret="not-the-secret")
    assert (status, answer["reason"]) == (401, "signature mismatch")


@pytest.mark.parametrize(
    ("body", "reason"),
    [(b"{not json", "body is not JSON"), (b"\xff\xfe{}", "body is not UTF-8")],
)
def test_signed_garbage_is_400_and_not_queued(pipeline, body, reason):
    status, answer = pipeline.post(body)
    assert (status, answer["reason"]) == (400, reason)
    assert pipeline.messages(pipeline.queue_url) == []


@pytest.mark.parametrize("body", [b"[1, 2]", b'{"id": 1}', b'{"event": ""}', b'{"event": 7}'])
def test_signed_json_of_an_unknown_shape_is_taken_in_and_dead_lettered(pipeline, body):
    """Chatwoot changes its payloads and never retries a refusal: signed JSON is taken in and,
    unprocessable, dead-lettered with its reason (inspectable, redrivable after a fix)."""
    status, answer = pipeline.post(body, delivery_id="drift-1")
    assert status == 202, answer
    assert pipeline.telemetry.total("WebhookDrifted") == 1
    pipeline.drain()
    assert pipeline.messages(pipeline.queue_url) == []
    [dead] = pipeline.messages(pipeline.dlq_url)
    assert dead["Body"].encode() == body
    attributes = attributes_of(dead)
    assert (attributes["error_type"], attributes["error_reason"]) == (
        "invalid_payload",
        "body is not a JSON object with an event",
    )
    assert attributes["delivery_id"] == "drift-1"


@pytest.mark.parametrize(
    ("body", "reason"),
    [(b"[1, 2]", "body is not a JSON object"), (b'{"id": 1}', "event is missing")],
)
def test_unsigned_json_of_an_unknown_shape_is_400(pipeline, body, reason):
    event = webhook_event(body, headers={}, query=f"token={SECRET}")
    status, answer = post_raw(pipeline, event, accept_url_token=True)
    assert (status, answer["reason"]) == (400, reason)
    assert pipeline.messages(pipeline.queue_url) == []


HOSTILE_IDS = [
    "7/../../../2/conversations/9",
    -1,
    "-1",
    0,
    1.5,
    "01",
    "7#2",
    True,
    "12345678901234567890",
    "",
    " 7",
]


@pytest.mark.parametrize("hostile", HOSTILE_IDS, ids=repr)
def test_signed_payload_with_a_hostile_conversation_id_is_taken_in_and_dead_lettered(
    pipeline, hostile
):
    """Payload drift: Chatwoot never retries a refusal, so a signed delivery that parses is
    taken in; the processor dead-letters it with the field named, and none of its ids reaches
    a key or a URL."""
    payload = fixture("message_created_incoming")
    payload["conversation"]["id"] = hostile
    status, answer = pipeline.post(payload)
    assert status == 202, answer
    [queued] = pipeline.messages(pipeline.queue_url)
    attributes = attributes_of(queued)
    assert "conversation_id" not in attributes and "/" not in attributes["dedupe_key"]
    assert pipeline.telemetry.total("WebhookDrifted") == 1
    pipeline.drain()
    assert pipeline.messages(pipeline.queue_url) == []
    [dead] = pipeline.messages(pipeline.dlq_url)
    assert attributes_of(dead)["error_type"] == "invalid_payload"
    assert attributes_of(dead)["error_reason"] == (
        "conversation id at conversation.id is not a positive integer"
    )
    table = pipeline.dynamodb.Table(pipeline.stack.physical["ConversationsTable"])
    assert table.scan()["Items"] == []


@pytest.mark.parametrize(
    ("name", "mutate", "reason"),
    [
        (
            "message_created_incoming",
            lambda p: p["account"].update(id="2/../1"),
            "account id at account.id is not a positive integer",
        ),
        (
            "message_created_incoming",
            lambda p: p["conversation"]["account"].update(id=-2),
            "account id at conversation.account.id is not a positive integer",
        ),
        (
            "conversation_updated",
            lambda p: p.update(account_id="1#2"),
            "account id at account_id is not a positive integer",
        ),
        (
            "conversation_updated",
            lambda p: p.update(id="7/../../../2/conversations/9"),
            "conversation id at id is not a positive integer",
        ),
        (
            "message_created_private_note",
            lambda p: p.update(id="4#x"),
            "message id at id is not a positive integer",
        ),
        (
            "webwidget_triggered",
            lambda p: p["account"].update(id="1/.."),
            "account id at account.id is not a positive integer",
        ),
    ],
)
def test_any_malformed_id_is_dead_lettered_with_the_field_named(pipeline, name, mutate, reason):
    payload = fixture(name)
    mutate(payload)
    assert pipeline.post(payload)[0] == 202
    pipeline.drain()
    [dead] = pipeline.messages(pipeline.dlq_url)
    assert attributes_of(dead)["error_reason"] == reason
    assert attributes_of(dead)["receive_count"] == "1"  # permanent: not retried


def test_an_unsigned_post_with_a_hostile_id_is_400_too(pipeline):
    payload = {**fixture("message_created_incoming"), "event": "automation_event.message_created"}
    payload["conversation"]["id"] = "7/../../../2/conversations/9"
    event = webhook_event(payload, headers={}, query=f"token={SECRET}")
    status, answer = post_raw(pipeline, event, accept_url_token=True)
    assert (status, answer["reason"]) == (
        400,
        "conversation id at conversation.id is not a positive integer",
    )
    assert pipeline.messages(pipeline.queue_url) == []


def test_absent_ids_are_not_malformed(pipeline):
    payload = {"event": "contact_created", "id": 4, "account": {"id": 1}, "conversation": None}
    assert pipeline.post(payload)[0] == 202


def test_oversized_body_is_413(pipeline):
    body = json.dumps({"event": "message_created", "content": "x" * 2048}).encode()
    status, answer = pipeline.post(body, service=pipeline.ingest(max_body_bytes=1024))
    assert (status, answer["reason"]) == (413, "body too large")


def test_typing_events_are_ignored_with_200(pipeline):
    payload = {**fixture("conversation_updated"), "event": "conversation_typing_on"}
    status, answer = pipeline.post(payload)
    assert (status, answer["status"]) == (200, "ignored")
    assert pipeline.messages(pipeline.queue_url) == []


def test_ignored_events_are_dropped_by_name_before_their_ids_are_read(pipeline):
    payload = {**fixture("conversation_updated"), "event": "conversation_typing_on", "id": "7#2"}
    status, answer = pipeline.post(payload)
    assert (status, answer["status"]) == (200, "ignored")
    assert pipeline.messages(pipeline.queue_url) == []


def test_header_names_are_case_insensitive(pipeline):
    body = body_of(fixture("message_created_incoming"))
    headers = {k.upper(): v for k, v in signed_headers(body).items()}
    event = webhook_event(body, headers=headers)
    event["headers"] = headers  # API Gateway normally lowercases; do not rely on it
    assert post_raw(pipeline, event)[0] == 202


def test_base64_encoded_body_is_verified_and_queued_decoded(pipeline):
    body = body_of(fixture("message_created_incoming"))
    event = webhook_event(body)
    event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
    assert post_raw(pipeline, event)[0] == 202
    assert pipeline.messages(pipeline.queue_url)[0]["Body"].encode() == body


def test_invalid_base64_is_400(pipeline):
    event = webhook_event(b"{}")
    event["body"], event["isBase64Encoded"] = "***", True
    assert post_raw(pipeline, event) == (
        400,
        {"status": "rejected", "reason": "body is not valid base64"},
    )


def test_unsigned_post_is_refused_by_default_even_with_the_right_token(pipeline):
    event = webhook_event(fixture("message_created_incoming"), headers={}, query=f"token={SECRET}")
    assert post_raw(pipeline, event)[0] == 401


def test_unsigned_post_with_token_is_accepted_when_opted_in(pipeline):
    payload = {**fixture("message_created_incoming"), "event": "automation_event.message_created"}
    event = webhook_event(payload, headers={}, query=f"token={SECRET}")
    status, answer = post_raw(pipeline, event, accept_url_token=True)
    assert status == 202
    assert answer["dedupe_key"] == "unsigned:message_created:1:1"  # never a signed event's key
    [message] = pipeline.messages(pipeline.queue_url)
    assert attributes_of(message)["signed"] == "false"
    assert attributes_of(message)["dedupe_key"] == "unsigned:message_created:1:1"
    assert "delivery_id" not in attributes_of(message)


def test_unsigned_post_with_wrong_token_is_401_when_opted_in(pipeline):
    event = webhook_event(fixture("message_created_incoming"), headers={}, query="token=guess")
    status, answer = post_raw(pipeline, event, accept_url_token=True)
    assert (status, answer["reason"]) == (401, "missing signature and invalid token")


def test_secret_rotation_old_and_new_both_accepted(pipeline):
    pipeline.clients["ssm"].put_parameter(
        Name="/support-pipeline/webhook-secret",
        Value="old-secret,new-secret",
        Type="SecureString",
        Overwrite=True,
    )
    service = pipeline.ingest()
    assert (
        pipeline.post(fixture("message_created_incoming"), service=service, secret="old-secret")[0]
        == 202
    )
    assert (
        pipeline.post(
            fixture("message_created_outgoing_agent"), service=service, secret="new-secret"
        )[0]
        == 202
    )


def test_a_newly_added_secret_works_before_the_cache_expires(pipeline):
    service = pipeline.ingest()
    assert (
        pipeline.post(fixture("message_created_incoming"), service=service)[0] == 202
    )  # caches SECRET
    pipeline.clients["ssm"].put_parameter(
        Name="/support-pipeline/webhook-secret",
        Value=f"{SECRET},second-webhook",
        Type="SecureString",
        Overwrite=True,
    )
    status, _ = pipeline.post(
        fixture("message_created_outgoing_agent"), service=service, secret="second-webhook"
    )
    assert status == 202


def test_missing_secret_parameter_is_500_which_an_agent_bot_delivery_retries(pipeline):
    pipeline.clients["ssm"].delete_parameter(Name="/support-pipeline/webhook-secret")
    status, answer = pipeline.post(fixture("message_created_incoming"))
    assert (status, answer["reason"]) == (500, "webhook secrets unavailable")


def test_queue_that_cannot_be_written_gives_500(pipeline):
    pipeline.sqs.delete_queue(QueueUrl=pipeline.queue_url)
    status, _answer = pipeline.post(fixture("message_created_incoming"))
    assert status == 500
    assert pipeline.telemetry.total("EnqueueFailed") == 1


def test_large_body_goes_to_the_bucket_and_the_queue_carries_a_pointer(pipeline):
    payload = fixture("message_created_incoming")
    payload["content"] = "x" * 300_000
    body = body_of(payload)
    assert pipeline.post(body)[0] == 202
    [message] = pipeline.messages(pipeline.queue_url)
    assert attributes_of(message)["body_location"] == "s3"
    pointer = json.loads(message["Body"])["claim_check"]
    stored = (
        pipeline.clients["s3"]
        .get_object(Bucket=pointer["bucket"], Key=pointer["key"])["Body"]
        .read()
    )
    assert stored == body


def test_lambda_handler_answers_in_the_api_gateway_shape(pipeline, monkeypatch):
    for name, value in pipeline.stack.function_environment("IngestFunction").items():
        monkeypatch.setenv(name, value)
    app = load_handler("ingest")
    app._service = None
    ts = int(__import__("time").time())
    body = body_of(fixture("message_created_incoming"))
    event = webhook_event(
        body,
        headers={"x-chatwoot-signature": sign(SECRET, ts, body), "x-chatwoot-timestamp": str(ts)},
    )
    from support_pipeline_ops.local.lambda_shim import LocalContext

    answer = app.handler(event, LocalContext(function_name="ingest"))
    assert answer["statusCode"] == 202
    assert answer["headers"]["content-type"] == "application/json"
    assert json.loads(answer["body"])["dedupe_key"] == "message_created:1:1"
    sqs = boto3.client("sqs", region_name="us-east-1")
    assert (
        int(
            sqs.get_queue_attributes(
                QueueUrl=pipeline.queue_url, AttributeNames=["ApproximateNumberOfMessages"]
            )["Attributes"]["ApproximateNumberOfMessages"]
        )
        == 1
    )


def test_a_secret_bound_to_one_account_cannot_sign_for_another(aws):
    from tests.support import new_pipeline

    pipeline = new_pipeline(secret="1:secret-of-account-one,2:secret-of-account-two")
    payload = fixture("message_created_incoming")  # account 1
    other = fixture("message_created_incoming")
    other["account"]["id"] = 2
    other["conversation"]["account"] = {"id": 2}
    status, body = pipeline.post(other, secret="secret-of-account-one")
    assert (status, body["reason"]) == (
        401,
        "the secret that signed this is not valid for its account",
    )
    assert pipeline.messages(pipeline.queue_url) == []
    assert pipeline.post(payload, secret="secret-of-account-one")[0] == 202
    assert pipeline.post(other, secret="secret-of-account-two", delivery_id="d-2")[0] == 202
