"""Every number the runbooks quote is the number template.yaml, the shipped support policy or
the code actually uses.

A runbook writes a quoted number followed by an HTML comment naming its source, which the
rendered page does not show::

    fires after 15<!-- template: QueueAgeAlarmSeconds / 60 --> minutes
    due within 15<!-- policy: sla.targets.urgent.first_response / 60 --> minutes
    connect 3.05<!-- code: support_pipeline.chatwoot.client.DEFAULT_TIMEOUT.0 --> s

A source is ``template:``, ``policy:`` or ``code:`` and a reference, optionally followed by
arithmetic (``/ 60``, ``* sla.at_risk_fraction``, evaluated left to right) or by ``~ REGEX``
(the first group of a match against a string value, e.g. ``DeploymentType ~ Canary(\\d+)``).
Template references are a Parameter (its Default), ``Parameter.Key``, or a path into a
resource (``DlqFloodAlarm.Properties.Threshold``; a ``Ref`` to a Parameter reads its Default).
Code references are a module attribute (``.0`` indexes a tuple) or ``Class(argument)``, the
default of a constructor argument.

A number with a unit (s, minutes, days, deliveries, % ...) outside code and without such a
comment fails the test too, so a new sentence cannot quote an unchecked number.
"""

from __future__ import annotations

import importlib
import inspect
import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from support_pipeline.policy import parse_duration
from support_pipeline_ops.local import template as cfn
from tests.support import ROOT

TEMPLATE = cfn.load(ROOT / "template.yaml")
POLICY = yaml.safe_load((ROOT / "config" / "support-policy.yaml").read_text())
RUNBOOKS = sorted((ROOT / "docs" / "runbooks").glob("*.md"))

QUOTED = re.compile(r"(\d+(?:\.\d+)?)<!-- (template|policy|code): (.+?) -->")
UNIT = (
    r"(?: (?:ms|s|min|h|seconds?|minutes?|hours?|days?|deliveries|delivery|errors?|answers|"
    r"messages|times|windows|terms?|consecutive|%)|%|-day|-minute|-hour)"
)
UNCHECKED = re.compile(r"(?<![\w.:/-])(\d+(?:\.\d+)?)(" + UNIT + r")(?![\w])")
POLICY_DURATIONS = re.compile(r"^sla\.targets\.|^drafts\.(quiet_after_agent_reply|expire_after)")


def quotes(path: Path) -> list[tuple[str, str, str, str]]:
    """(where, number, source, expression) of every annotated number in a runbook."""
    found = []
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        for number, source, expression in QUOTED.findall(line):
            found.append((f"{path.name}:{line_no}", number, source, expression.strip()))
    return found


ALL_QUOTES = [q for path in RUNBOOKS for q in quotes(path)]


# ---- references -------------------------------------------------------------------------------
def template_value(reference: str) -> Any:
    first, *rest = reference.split(".")
    if first in TEMPLATE["Parameters"]:
        parameter = TEMPLATE["Parameters"][first]
        return parameter["Default"] if not rest else parameter[".".join(rest)]
    value: Any = TEMPLATE["Resources"][first]
    for key in rest:
        value = value[int(key)] if isinstance(value, list) else value[key]
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return TEMPLATE["Parameters"][value["Ref"]]["Default"]
    return value


def policy_value(reference: str) -> Any:
    value: Any = POLICY
    for key in reference.split("."):
        value = value[key]
    if POLICY_DURATIONS.search(reference):
        return parse_duration(value, reference)
    return value


def code_value(reference: str) -> Any:
    call = re.fullmatch(r"([\w.]+)\((\w+)\)", reference)
    path, argument = (call.group(1), call.group(2)) if call else (reference, None)
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            value: Any = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for part in parts[cut:]:
            value = value[int(part)] if part.isdigit() else getattr(value, part)
        if argument is not None:
            return inspect.signature(value).parameters[argument].default
        return value
    raise AssertionError(f"no module in {reference!r}")


RESOLVERS = {"template": template_value, "policy": policy_value, "code": code_value}


def evaluate(source: str, expression: str) -> float:
    """The value an annotation names (see the module docstring)."""
    resolve = RESOLVERS[source]
    if " ~ " in expression:
        reference, pattern = expression.split(" ~ ", 1)
        match = re.search(pattern, str(resolve(reference.strip())))
        assert match, f"{pattern!r} does not match {reference}"
        return float(match.group(1))
    tokens = expression.split()

    def operand(token: str) -> float:
        return float(token) if re.fullmatch(r"\d+(\.\d+)?", token) else float(resolve(token))

    value = operand(tokens[0])
    for operator, token in zip(tokens[1::2], tokens[2::2], strict=True):
        right = operand(token)
        value = {"/": value / right, "*": value * right, "-": value - right, "+": value + right}[
            operator
        ]
    return value


# ---- the tests --------------------------------------------------------------------------------
def test_the_runbooks_quote_their_numbers_with_sources():
    names = {path.name for path in RUNBOOKS}
    assert {"outage.md", "escalation.md", "support_webhooks.md"} <= names
    for name in ("outage.md", "escalation.md"):
        assert sum(1 for q in ALL_QUOTES if q[0].startswith(name + ":")) >= 10, name


@pytest.mark.parametrize(("where", "number", "source", "expression"), ALL_QUOTES)
def test_a_quoted_number_is_the_deployed_number(where, number, source, expression):
    actual = evaluate(source, expression)
    assert math.isclose(float(number), actual, rel_tol=1e-9), (
        f"{where} says {number}, but {source} {expression} is {actual:g}"
    )


def prose(text: str) -> str:
    """The runbook without code blocks, inline code, link targets and annotated numbers."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    text = QUOTED.sub("", text)
    text = re.sub(r"<!--.*?-->", "", text, flags=re.DOTALL)
    text = re.sub(r"`[^`\n]*`", "", text)
    return re.sub(r"\]\([^)]*\)", "]", text)


@pytest.mark.parametrize("path", RUNBOOKS, ids=lambda p: p.name)
def test_no_runbook_quotes_an_unchecked_number(path):
    unchecked = [
        f"{number} {unit}"
        for line in prose(path.read_text()).splitlines()
        for number, unit in UNCHECKED.findall(line)
    ]
    assert not unchecked, f"{path.name}: annotate the source of {unchecked}"


def test_a_changed_template_number_is_caught(monkeypatch):
    """The check reads the template as it is: a new default makes a quote wrong."""
    (_where, number, source, expression) = next(
        q for q in ALL_QUOTES if q[2] == "template" and q[3] == "MaxReceiveCount"
    )
    monkeypatch.setitem(TEMPLATE["Parameters"]["MaxReceiveCount"], "Default", int(number) + 1)
    assert not math.isclose(float(number), evaluate(source, expression))
