"""SQS message attributes as the pipeline uses them, on EventsQueue and EventsDLQ.

Ingest sets seven attributes (eight with a claim check). SQS allows ten, so the DLQ copy keeps
the failure attributes, the originals packed into one JSON attribute, and copies of the few
that ops list and select by; a redrive restores the originals.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

# The pipeline's own events, put on EventsQueue by its own role with ``origin=pipeline``. Chatwoot
# never sends these names: a webhook that carries one is forged or mistaken, and never runs.
PIPELINE_EVENTS = frozenset({"draft_due"})
ORIGIN_ATTRIBUTE, PIPELINE_ORIGIN = "origin", "pipeline"

# Attributes the DLQ copy adds; everything the ingest set is kept in ``original_attributes``.
DLQ_ATTRIBUTES = ("error_type", "error_reason", "failed_at", "receive_count", "original_attributes")
# Originals repeated as top-level DLQ attributes for listing and selective redrive.
DLQ_COPIED = ("event", "conversation_id", "account_id", "dedupe_key", "delivery_id")


def to_message_attributes(attributes: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """SQS message attributes from plain strings; empty values are left out (SQS refuses them)."""
    return {
        name: {"DataType": "String", "StringValue": value}
        for name, value in attributes.items()
        if value != ""
    }


def original_attributes(flat: Mapping[str, str]) -> dict[str, str]:
    """Undo the DLQ's attribute packing, if the message went through the DLQ."""
    if "original_attributes" not in flat:
        return dict(flat)
    try:
        restored = json.loads(flat["original_attributes"])
    except ValueError:
        restored = {}
    if not isinstance(restored, dict):
        restored = {}
    merged = {k: v for k, v in flat.items() if k not in DLQ_ATTRIBUTES}
    merged.update({str(k): str(v) for k, v in restored.items()})
    return merged
