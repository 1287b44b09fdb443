"""The numbers the docs quote are the numbers template.yaml deploys."""

import re

import pytest

from support_pipeline.processing.backoff import backoff_ceiling
from support_pipeline_ops.local import template as cfn
from tests.support import ROOT

TEMPLATE = cfn.load(ROOT / "template.yaml")
RETRY_POLICY = (ROOT / "docs" / "retry-policy.md").read_text()
ROW = re.compile(r"^\| [^|]+ \| `([A-Za-z.]+)` \| (\d+) \|$", re.MULTILINE)


def template_value(reference: str) -> str:
    if "." in reference:
        resource, prop = reference.split(".")
        return str(TEMPLATE["Resources"][resource]["Properties"][prop])
    return str(TEMPLATE["Parameters"][reference]["Default"])


def documented() -> list[tuple[str, str]]:
    rows = ROW.findall(RETRY_POLICY)
    assert len(rows) >= 10, "the numbers table in docs/retry-policy.md was not found"
    return rows


@pytest.mark.parametrize(("reference", "value"), documented())
def test_retry_policy_numbers_match_the_template(reference, value):
    assert template_value(reference) == value


def test_backoff_schedule_in_the_docs_matches_the_formula():
    base = int(template_value("BackoffBaseSeconds"))
    cap = int(template_value("BackoffCapSeconds"))
    max_receives = int(template_value("MaxReceiveCount"))
    rows = re.findall(r"^\| (\d+) \| (\d+) - (\d+) \|$", RETRY_POLICY, re.MULTILINE)
    assert [int(n) for n, _, _ in rows] == list(range(1, max_receives))
    for n, low, high in rows:
        ceiling = backoff_ceiling(int(n), base, cap)
        assert (int(low), int(high)) == (ceiling // 2, ceiling)
    assert f"| {max_receives} | none: moved to the DLQ" in RETRY_POLICY


def test_visibility_timeout_covers_six_processor_timeouts_and_the_batching_window():
    """AWS: set the queue's visibility timeout to at least six times the function timeout plus
    MaximumBatchingWindowInSeconds; the window's largest allowed value, not only its default."""
    visibility = int(template_value("EventsQueueVisibilityTimeoutSeconds"))
    window = cfn.load(ROOT / "template.yaml")["Parameters"]["ProcessorBatchingWindowSeconds"]
    assert int(window["Default"]) <= int(window["MaxValue"])
    assert visibility >= 6 * int(template_value("ProcessorTimeoutSeconds")) + int(
        window["MaxValue"]
    )
    spec = cfn.load(ROOT / "template.yaml")["Parameters"]["EventsQueueVisibilityTimeoutSeconds"]
    assert int(spec["MinValue"]) == visibility  # a deployment cannot set it below the rule


def test_backoff_cap_fits_in_the_queues_retention():
    assert int(template_value("BackoffCapSeconds")) <= 43200
    total = sum(
        backoff_ceiling(
            n, int(template_value("BackoffBaseSeconds")), int(template_value("BackoffCapSeconds"))
        )
        for n in range(1, int(template_value("MaxReceiveCount")))
    )
    assert total < int(template_value("EventsQueue.MessageRetentionPeriod"))


def test_redrive_policy_and_processor_share_max_receive_count():
    queue = TEMPLATE["Resources"]["EventsQueue"]["Properties"]
    assert queue["RedrivePolicy"]["maxReceiveCount"] == {"Ref": "MaxReceiveCount"}
    env = TEMPLATE["Resources"]["ProcessorFunction"]["Properties"]["Environment"]["Variables"]
    assert env["MAX_RECEIVE_COUNT"] == {"Ref": "MaxReceiveCount"}


def test_runtime_and_architecture_are_pinned():
    function = TEMPLATE["Globals"]["Function"]
    architecture = {"Ref": "Architecture"}  # arm64 unless a local run cannot emulate it
    assert TEMPLATE["Parameters"]["Architecture"]["Default"] == "arm64"
    assert function["Runtime"] == "python3.13" and function["Architectures"] == [architecture]
    layer = TEMPLATE["Resources"]["CommonLayer"]
    assert layer["Metadata"] == {"BuildMethod": "python3.13", "BuildArchitecture": architecture}
    assert layer["Properties"]["CompatibleArchitectures"] == [architecture]
    assert (ROOT / ".python-version").read_text().strip() == "3.13"


def test_the_template_names_the_secret_parameter_but_never_holds_a_secret():
    kinds = {spec["Type"] for spec in TEMPLATE["Resources"].values()}
    assert "AWS::SSM::Parameter" not in kinds and "AWS::SecretsManager::Secret" not in kinds
    env = TEMPLATE["Resources"]["IngestFunction"]["Properties"]["Environment"]["Variables"]
    assert env["WEBHOOK_SECRET_PARAM"] == {"Ref": "WebhookSecretParamName"}


README = (ROOT / "README.md").read_text()
CONFIG_ROW = re.compile(r"^\| ((?:`\w+`(?: / )?)+) \| ([^|]+) \|", re.MULTILINE)


def readme_defaults() -> dict[str, str]:
    found = {}
    section = README.split("### Configuration", 1)[1].split("\n## ", 1)[0]
    for names, values in CONFIG_ROW.findall(section):
        keys = re.findall(r"`(\w+)`", names)
        cells = [v.strip().strip("`") for v in values.split(" / ")]
        if len(cells) != len(keys):
            continue
        for key, cell in zip(keys, cells, strict=True):
            found[key] = "" if cell.startswith("(empty") else cell
    return found


def test_readme_configuration_defaults_match_the_template():
    documented = readme_defaults()
    assert len(documented) >= 12, "the README's configuration table was not found"
    for name, value in documented.items():
        assert template_value(name) == value, name
