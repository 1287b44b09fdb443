"""local/moto_fast.py changes how moto does things, never what it answers: a failed
TransactWriteItems puts back exactly the items it named, and SQS receive, visibility, delete and
queue counts behave as before.

moto_fast patches moto for the whole process. Here it is installed for one test at a time and
taken off again: every attribute of moto's modules and classes is as it was before the test, so
the test files that run after these on the same worker run against moto as it is.
"""

import inspect
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from support_pipeline_ops.local import moto_fast
from support_pipeline_ops.queues import queue_depth

# Bookkeeping that changes by itself, not a patch: moto's (mock_aws resets it) and Python's
# (copy.deepcopy caches a class's slot names on it; annotations are made when first read).
MOTO_BOOKKEEPING = frozenset({"instances_tracked", "__slotnames__", "__annotations__"})
Place = tuple[Any, str]  # (a module or class of moto's, an attribute name)


def patched_modules() -> None:
    """Import what install() patches, so the snapshot taken before it covers all of it."""
    import moto.backends
    import moto.core.responses
    import moto.core.utils
    import moto.dynamodb.models
    import moto.dynamodb.responses
    import moto.sqs.models  # noqa: F401


def moto_attributes() -> dict[tuple[str, str], tuple[Place, Any]]:
    """Every attribute of every loaded moto module and of the classes each defines."""
    found: dict[tuple[str, str], tuple[Place, Any]] = {}
    for name, module in list(sys.modules.items()):
        if module is None or not (name == "moto" or name.startswith("moto.")):
            continue
        owners: list[tuple[str, Any]] = [(name, module)]
        owners += [
            (f"{name}.{cls_name}", cls)
            for cls_name, cls in list(vars(module).items())
            if inspect.isclass(cls) and cls.__module__ == name
        ]
        for label, owner in owners:
            for attribute, value in list(vars(owner).items()):
                if attribute not in MOTO_BOOKKEEPING:
                    found[(label, attribute)] = ((owner, attribute), value)
    return found


def differences(
    before: dict[tuple[str, str], tuple[Place, Any]],
) -> tuple[list[tuple[Place, Any]], list[Place]]:
    """What was changed since ``before`` (each place with its old value) and what was added,
    in the modules and classes ``before`` saw (a submodule imported meanwhile, which Python
    binds on its package, is not an addition)."""
    now = moto_attributes()
    changed = [
        (place, value)
        for key, (place, value) in before.items()
        if key not in now or now[key][1] is not value
    ]
    owners = {label for label, _ in before}
    added = [
        place
        for key, (place, value) in now.items()
        if key[0] in owners and key not in before and not isinstance(value, ModuleType)
    ]
    return changed, added


def changed_since(before: dict[tuple[str, str], tuple[Place, Any]]) -> list[str]:
    changed, added = differences(before)
    return sorted(
        f"{getattr(owner, '__qualname__', owner.__name__)}.{attribute}"
        for owner, attribute in [place for place, _ in changed] + added
    )


@contextmanager
def fast_moto() -> Iterator[None]:
    """moto_fast installed for the block; afterwards moto exactly as it was before."""
    patched_modules()
    before = moto_attributes()
    was_installed = moto_fast._INSTALLED
    try:
        moto_fast.install()  # idempotent; the local stack installs it the same way
        yield
    finally:
        changed, added = differences(before)
        for (owner, attribute), value in changed:
            setattr(owner, attribute, value)
        for owner, attribute in added:
            delattr(owner, attribute)
        moto_fast._INSTALLED = was_installed
    assert changed_since(before) == [], "moto_fast left moto patched"


@pytest.fixture
def fast(aws):
    with fast_moto():
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


@pytest.fixture
def fast_server_side():
    """moto_fast without an in-process mock (the server answers), taken off afterwards."""
    with fast_moto():
        yield


def test_the_local_moto_server_answers_through_the_patched_dispatch(monkeypatch, fast_server_side):
    """Over HTTP, as the local stack's functions call it (no in-process mock active)."""
    from support_pipeline_ops.local.moto_server import MotoServer

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


def test_moto_is_as_it_was_once_the_patches_come_off():
    """Issue 15, part 7: install() used to stay in place for every later test on the worker."""
    from moto import backends
    from moto.dynamodb.models import DynamoDBBackend
    from moto.sqs.models import Queue

    def ours() -> dict[str, bool]:
        return {
            "transactions": getattr(DynamoDBBackend.transact_write_items, "_item_rollback", False),
            "sqs": getattr(vars(Queue)["messages"].fget, "_fast", False),
            "dispatch": getattr(backends.list_of_moto_modules, "_fast", False),
        }

    patched_modules()
    before = moto_attributes()
    was = ours()
    with fast_moto():
        assert ours() == {"transactions": True, "sqs": True, "dispatch": True}
        assert changed_since(before) != [] or all(was.values())
    assert ours() == was
    assert changed_since(before) == []
    if not any(was.values()):  # nobody in this process installed it for good (a local stack)
        assert backends.list_of_moto_modules.__module__ == "moto.backends"
        assert isinstance(vars(Queue)["messages"], property)
        assert not moto_fast._INSTALLED
