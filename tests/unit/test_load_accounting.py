"""The load command's accounting and progress display, without a stack."""

import io
import json

from support_pipeline_ops import load
from tests.support import FIXTURES


def result(accepted: int, processed: int, dead: int, posted_ok: int, settled: bool = True):
    tally = load.Tally(total=posted_ok)
    tally.posted = posted_ok
    tally.statuses["202"] = posted_ok
    counts = {
        "received": accepted,
        "accepted": accepted,
        "processed": processed,
        "dead_lettered_webhooks": dead,
        "pipeline_events": 0,
    }
    return load.Result(posted_ok, tally, counts, settled, 1.0, 1.0, 1.0, {})


def test_a_webhook_neither_processed_nor_dead_lettered_fails_the_run():
    out = io.StringIO()
    assert load.report(result(100, 97, 2, 100), out) == 1
    text = out.getvalue()
    assert "accepted 100 != processed 97 + dead-lettered 2" in text
    assert "MISMATCH: 1 accepted webhook(s) neither processed nor dead-lettered" in text


def test_dead_lettered_webhooks_are_accounted_for():
    out = io.StringIO()
    assert load.report(result(100, 98, 2, 100), out) == 0
    assert "OK: every accepted webhook" in out.getvalue()


def test_a_pipeline_that_never_settles_fails_the_run():
    out = io.StringIO()
    assert load.report(result(100, 100, 0, 100, settled=False), out) == 1
    assert "did not settle" in out.getvalue()


def test_progress_is_one_updating_line_on_a_terminal_and_lines_otherwise():
    tty, pipe = io.StringIO(), io.StringIO()
    on_tty, on_pipe = load.Progress(tty, tty=True), load.Progress(pipe, tty=False)
    for shown in ("posted 1", "posted 20"):
        on_tty.show(shown, force=True)
        on_pipe.show(shown, force=True)
    on_tty.done()
    assert tty.getvalue() == "\rposted 1\rposted 20\n"
    assert pipe.getvalue() == "posted 1\nposted 20\n"


def test_the_mix_gives_every_webhook_its_own_message_and_conversation_ids():
    fixtures = load.Fixtures.load(FIXTURES)
    bodies = [json.loads(b) for b in load.build_mix(620, fixtures, 1_000, 1_800_000_000.0)]
    messages = [b["id"] for b in bodies if b["event"] == "message_created"]
    assert len(messages) == len(set(messages))
    conversations = {b["conversation"]["id"] if "conversation" in b else b["id"] for b in bodies}
    # groups of 50 conversations interleaved: two whole groups (260 webhooks each), then the
    # first turn of the third
    assert len(conversations) == 150
    # two runs against one stack never share a conversation id
    assert load.run_base(1_800_000_000.0) != load.run_base(1_800_000_000.2)
