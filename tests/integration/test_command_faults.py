"""Malformed agents' commands through the real processor: one short answer, never a retry.

Issue 15, part 6: ``/grade tone=²`` crashed the parser (``"²".isdigit()`` is true and
``int("²")`` raises), an unexpected error the processor retried until the event reached the
DLQ. Against moto and the fake Chatwoot, with the drafts world of test_drafts.py.
"""

import pytest

from tests.integration.test_drafts import ask, drafter, world  # noqa: F401 (fixtures)
from tests.support import NOW

MAX_ANSWER = 300


def agents_notes(chatwoot, since):
    """The pipeline's notes after the first ``since``: not the agents' own commands."""
    return [n for n in chatwoot.notes(1, 1)[since:] if not n.startswith("/")]


@pytest.mark.parametrize(
    ("note", "answer"),
    [
        ("/grade tone=² accuracy=3 policy=4", "tone must be a whole number from 1 to 5."),
        ("/grade tone=5 accuracy=\uff15 policy=4", "accuracy must be a whole number from 1 to 5."),
        ("/grade tone=5 accuracy=4 policy=" + "9" * 5000, "policy must be a whole number"),
        ("/send d-" + "\x01" * 6 + "x" * 150_000, "`d-xxxxx"),
    ],
)
def test_a_malformed_command_gets_one_short_note_and_is_never_retried(
    pipeline,
    chatwoot,
    world,  # noqa: F811
    note,
    answer,
):
    world.post(ask("¿Qué tallas de anillo tienen?", 158))
    world.burst_over()
    [draft] = world.drafts()
    before = len(chatwoot.notes(1, 1))
    command = world.note(note, 159, NOW + 10)
    world.post(command)
    [reply] = agents_notes(chatwoot, before)
    assert reply.startswith(answer) and len(reply) < MAX_ANSWER, reply
    assert all(line.isprintable() for line in reply.splitlines()), reply
    if note.startswith("/grade"):
        assert "Use /grade tone=1-5 accuracy=1-5 policy=1-5" in reply
    [unchanged] = world.drafts()
    assert unchanged.get("grades") is None and unchanged["status"] == draft["status"] == "pending"
    # Handled once: nothing waits for a retry, nothing was dead-lettered, no fault counted.
    pipeline.make_visible()
    assert pipeline.messages(pipeline.queue_url) == []
    assert pipeline.messages(pipeline.dlq_url) == []
    assert pipeline.telemetry.total("EventRetried") == 0
    assert pipeline.telemetry.total("EventDeadLettered") == 0
    assert pipeline.telemetry.total("ReleaseFault") == 0
    assert chatwoot.public_messages(1, 1) == []
    # The same note delivered again (another delivery id) gets no second answer.
    world.post(command)
    assert agents_notes(chatwoot, before) == [reply]
