"""docs/cost.md's figures are scripts/cost.py's: recomputed here from the same measurement and
template, they must match the doc, and the memory sizes must be the template's."""

import importlib.util
import re
import sys

import pytest

from support_pipeline_ops.local import template as cfn
from tests.support import ROOT


@pytest.fixture(scope="module")
def cost():
    spec = importlib.util.spec_from_file_location("cost_script", ROOT / "scripts" / "cost.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["cost_script"] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


def test_the_doc_is_what_the_script_computes(cost):
    computed = cost.render(cost.read_inputs())
    assert cost.section_in(cost.DOC) == computed, (
        "docs/cost.md is out of date: run `make cost` (scripts/cost.py --write docs/cost.md)"
    )


def test_memory_sizes_and_retention_are_the_templates(cost):
    template = cfn.load(ROOT / "template.yaml")
    default = template["Globals"]["Function"]["MemorySize"]
    functions = template["Resources"]
    inputs = cost.read_inputs()
    assert inputs.memory_mb == {
        "ingest": functions["IngestFunction"]["Properties"].get("MemorySize", default),
        "processor": functions["ProcessorFunction"]["Properties"].get("MemorySize", default),
    }
    assert inputs.api_type == "AWS::Serverless::HttpApi"  # priced as HTTP API, not REST
    section = cost.section_in(cost.DOC)
    assert f"ingest\n{inputs.memory_mb['ingest']} MB" in section
    assert f"processor {inputs.memory_mb['processor']} MB" in section
    days = template["Parameters"]["TimelineRetentionDays"]["Default"]
    assert f"total once {days} days of timeline are stored" in section


def test_totals_add_up_and_every_price_names_its_source(cost):
    inputs = cost.read_inputs()
    for volume in cost.VOLUMES:
        lines = cost.monthly(inputs, volume)
        first = sum(v for k, v in lines.items() if k != cost.STEADY)
        assert first > 0 and all(v >= 0 for v in lines.values())
        assert lines[cost.STEADY] >= lines[cost.FIRST]
        shown = re.search(r"\*\*total, first month\*\* \|(.*)\|", cost.section_in(cost.DOC))
        assert shown is not None and cost.money(first) in shown.group(1)
    for price, unit, source in cost.PRICES.values():
        assert price > 0 and unit and source.startswith("https://aws.amazon.com/")
    assert "as of" in cost.section_in(cost.DOC) and "to be rechecked" in cost.section_in(cost.DOC)


def test_units_per_webhook_come_from_the_measurement(cost):
    inputs = cost.read_inputs()
    units = cost.per_webhook(inputs)
    measured = inputs.measured
    calls = measured["processor"]["calls"]
    assert units["api_requests"] == 1.0
    assert units["rru"] == pytest.approx(
        (calls.get("dynamodb.GetItem", 0) + calls.get("dynamodb.Query", 0)) / measured["webhooks"]
    )
    # one ingest invocation, and the processor priced at one record per invocation
    records = measured["processor"]["records"] / measured["webhooks"]
    assert units["lambda_invocations"] == pytest.approx(1 + records)
    seconds = measured["processor"]["ms_per_batch"] * measured["processor"]["batches"] / 1000
    assert units["gb_seconds_processor"] == pytest.approx(
        seconds / measured["webhooks"] * inputs.memory_mb["processor"] / 1024
    )
