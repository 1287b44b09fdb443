"""local/moto_fast.py changes how moto does things, never what it answers: a failed
TransactWriteItems puts back exactly the items it named, and SQS receive, visibility, delete and
queue counts behave as before."""

import time

import boto3
import pytest
from botocore.exceptions import ClientError

from support_pipeline_ops.local import moto_fast
from support_pipeline_ops.queues import queue_depth


@pytest.fixture
def fast(aws):
    moto_fast.install()  # idempotent; the local stack installs it the same way
    yield


def test_a_failed_transaction_rolls_back_exactly_the_items_it_named(fast):
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    dynamodb.create_table(
        TableName="t",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
    )

    def item(sk: str, n: int) -> dict:
        return {"pk": {"S": "CONV#1"}, "sk": {"S": sk}, "n": {"N": str(n)}}

    for sk, n in (("RECORD", 1), ("EVENT#a", 1), ("OTHER", 7)):
        dynamodb.put_item(TableName="t", Item=item(sk, n))
    before = dynamodb.scan(TableName="t")["Items"]

    with pytest.raises(ClientError) as failed:
        dynamodb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": "t", "Item": item("RECORD", 2)}},  # would change
                {"Put": {"TableName": "t", "Item": item("EVENT#b", 1)}},  # would be new
                {  # the dedupe check: EVENT#a exists, so the whole transaction fails
                    "Put": {
                        "TableName": "t",
                        "Item": item("EVENT#a", 9),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
            ]
        )
    assert failed.value.response["Error"]["Code"] == "TransactionCanceledException"
    after = dynamodb.scan(TableName="t")["Items"]
    key = lambda i: i["sk"]["S"]  # noqa: E731
    assert sorted(after, key=key) == sorted(before, key=key)

    # and a transaction that passes writes every item
    dynamodb.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": "t", "Item": item("RECORD", 3)}},
            {"Update": {
                "TableName": "t", "Key": {"pk": {"S": "CONV#1"}, "sk": {"S": "OTHER"}},
                "UpdateExpression": "SET n = :n", "ExpressionAttributeValues": {":n": {"N": "8"}},
            }},
        ]
    )  # fmt: skip
    numbers = {key(i): i["n"]["N"] for i in dynamodb.scan(TableName="t")["Items"]}
    assert numbers == {"RECORD": "3", "EVENT#a": "1", "OTHER": "8"}


def test_receive_visibility_delete_and_counts_are_unchanged(fast):
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="q", Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
    for i in range(3):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{i}")
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=1)

    def counts() -> tuple[int, int, int]:
        return tuple(queue_depth(sqs, url))

    assert counts() == (3, 0, 1)
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert sorted(m["Body"] for m in got) == ["m0", "m1", "m2"]
    assert counts() == (0, 3, 1)
    # received messages stay hidden for the visibility timeout
    assert "Messages" not in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)

    first, second, third = got
    sqs.change_message_visibility(
        QueueUrl=url, ReceiptHandle=first["ReceiptHandle"], VisibilityTimeout=0
    )
    again = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in again] == [first["Body"]]
    assert again[0]["ReceiptHandle"] != first["ReceiptHandle"]

    sqs.delete_message(QueueUrl=url, ReceiptHandle=again[0]["ReceiptHandle"])
    sqs.delete_message(QueueUrl=url, ReceiptHandle=again[0]["ReceiptHandle"])  # twice: accepted
    answer = sqs.delete_message_batch(
        QueueUrl=url,
        Entries=[
            {"Id": "a", "ReceiptHandle": second["ReceiptHandle"]},
            {"Id": "b", "ReceiptHandle": third["ReceiptHandle"]},
        ],
    )
    assert {s["Id"] for s in answer["Successful"]} == {"a", "b"}
    assert counts() == (0, 0, 1)

    time.sleep(1.1)  # the delayed message becomes visible after its delay, as on SQS
    assert counts() == (1, 0, 0)
    [later] = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)["Messages"]
    assert later["Body"] == "later"
    with pytest.raises(ClientError):
        sqs.delete_message(QueueUrl=url, ReceiptHandle="not-a-receipt-handle")


def test_the_cached_module_list_and_names_are_what_moto_computes(fast):
    import os

    import moto
    from moto import backends
    from moto.core import responses, utils
    from moto.sqs import models as sqs_models

    root = os.path.dirname(moto.__file__)
    listed = sorted(
        name
        for name in os.listdir(root)
        if os.path.isdir(os.path.join(root, name)) and not name.startswith("__")
    )
    assert list(backends.list_of_moto_modules()) == listed
    assert "dynamodb" in backends.list_of_moto_modules()  # how the server asks

    original = utils.camelcase_to_underscores.__wrapped__  # moto's own function
    names = [
        "GetItem",
        "TransactWriteItems",
        "ApproximateNumberOfMessagesNotVisible",
        "KmsMasterKeyId",
        "RedrivePolicy",
        "theNewAttribute",
        "SSEType",
        "",
        "A",
    ]
    for module in (utils, responses, sqs_models):
        assert [module.camelcase_to_underscores(n) for n in names] == [original(n) for n in names]
    assert responses.camelcase_to_underscores("GetItem") == "get_item"


def test_the_local_moto_server_answers_through_the_patched_dispatch(monkeypatch):
    """Over HTTP, as the local stack's functions call it (no in-process mock active)."""
    from support_pipeline_ops.local.moto_server import MotoServer

    moto_fast.install()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    server = MotoServer(port=0).start()
    import os

    import moto

    moto_dir = os.path.dirname(moto.__file__)
    listed = []
    real_listdir = os.listdir

    def listdir(path: str = ".") -> list[str]:
        if os.path.abspath(path) == moto_dir:
            listed.append(path)
        return real_listdir(path)

    monkeypatch.setattr(os, "listdir", listdir)
    handled = []
    app = server._server.app  # type: ignore[union-attr]
    server._server.app = lambda environ, start: handled.append(1) or app(environ, start)  # type: ignore[union-attr]
    try:
        endpoint = f"http://127.0.0.1:{server.port}"
        sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=endpoint)
        url = sqs.create_queue(QueueName="through-the-server")["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody="one")
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
        assert [m["Body"] for m in got] == ["one"]
        sqs.delete_message(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"])
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert attrs["ApproximateNumberOfMessages"] == "0"
        with pytest.raises(ClientError) as missing:
            boto3.client("dynamodb", region_name="us-east-1", endpoint_url=endpoint).get_item(
                TableName="absent", Key={"pk": {"S": "x"}}
            )
        assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"
        assert len(handled) == 6  # every call went over HTTP to the server
        assert listed == []  # and none of them listed moto's package directory
    finally:
        server.stop()
