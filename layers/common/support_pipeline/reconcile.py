"""The reconciler: bring back what Chatwoot delivered to nobody.

Chatwoot gives a webhook delivery one try. A delivery API Gateway throttled (429), one that
met an outage, or one signed with a secret the pipeline did not have yet (a rotation) is gone.
On a schedule, the reconciler asks Chatwoot's API what changed since its last checkpoint,
compares it with what the pipeline recorded, and puts what is missing on EventsQueue in the
webhook's own shape, with the attributes ingest sets plus ``reconciled=true``. The dedupe keys
are the webhook's, so a replay of something the pipeline did see (its webhook still on the way,
or redriven from the DLQ later) is a duplicate and does nothing.

How "missing" is decided, per account and run (docs/architecture.md, "The reconciler"):

- **Which conversations**: ``GET .../conversations?status=all&sort_by=last_activity_at_desc``,
  page by page, until a conversation's ``last_activity_at`` is older than the checkpoint minus
  the overlap. Every message Chatwoot creates, activity messages included, sets its
  conversation's ``last_activity_at``, so every conversation with something new is on the
  first pages. (``POST .../conversations/filter`` cannot narrow it further: its
  ``last_activity_at`` ``is_greater_than`` compares dates, ``::date``, not instants.)
- **Messages**: the record keeps ``reconciled_message_id``, the id up to which every message
  Chatwoot sends webhooks for (incoming, outgoing and template; not activity) is known to be
  recorded or replayed. A conversation whose ``last_non_activity_message`` is not newer than
  that costs no Chatwoot call. Otherwise ``GET .../messages?after=<that id>`` (100 a page)
  lists what came since, one timeline query says which of them have a ``message_created``
  item, and the others are replayed. A message lost *between* two delivered ones is found as
  well as one lost at the end: the newest id or ``last_event_at`` alone would miss it. A
  conversation checked for the first time has no such id: its messages since the account's
  horizon (when reconciling began, at most a week back) are checked.
- **State**: when the listed ``updated_at`` is newer than the record's ``snapshot_version``
  and a field the record keeps (status, priority, inbox, assignee, team, labels, waiting
  since, snoozed until) differs, the state is replayed as ``conversation_updated``. Chatwoot
  also moves ``updated_at`` for changes it sends no webhook for; those are not "missing".
- **Not yet**: messages and states younger than the overlap are left to their webhook, which
  may still be on its way, and judged on the next run.

The checkpoint (``pk = RECONCILE, sk = ACCOUNT#<id>``) moves to ``now - overlap`` only when an
account's run got through every conversation in its window. A 429 from Chatwoot stops the run
(the next schedule retries; rack-attack sends no Retry-After), a 5xx or a timeout stops that
account's run, and a run about to outlive its invocation stops in time; none of them moves the
checkpoint. Per-conversation progress (``reconciled_message_id``) is kept, so the next run
does not repeat what this one verified.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Logger

from support_pipeline import deadline
from support_pipeline.chatwoot import payload as cw
from support_pipeline.chatwoot.client import ChatwootClient, NotFoundError
from support_pipeline.conversations import extract_facts
from support_pipeline.messages import to_message_attributes
from support_pipeline.pause import OFF, NeverPaused, PauseSwitch
from support_pipeline.processing.errors import PermanentError, TransientError
from support_pipeline.processing.router import EventContext
from support_pipeline.store import ConversationStore
from support_pipeline.telemetry import Telemetry

logger = Logger(child=True)

# A checkpoint older than this (the reconciler was off) is not followed further back: timeline
# items and records may be gone by then, and week-old messages are better read by a person.
MAX_LOOKBACK_SECONDS = 7 * 86400
# Stop starting conversations when this little of the invocation is left.
STOP_SECONDS = 15.0
# What one SQS message can carry with its attributes (ingest claim-checks bigger bodies to S3;
# the reconciler has no bucket access and reports such a message instead).
MAX_BODY_BYTES = 240 * 1024
# Chatwoot sends webhooks for these (MessageFilterHelpers#webhook_sendable?), not activity (2).
SENDABLE_TYPES = {0: "incoming", 1: "outgoing", 3: "template"}
SENDER_TYPES = {"contact": "Contact", "user": "User", "agent_bot": "AgentBot"}
# Record fields a lost conversation event could leave stale (the SNAPSHOT_FIELDS the record
# keeps, less those the conversation list shows differently from a webhook).
COMPARED_FIELDS = (
    "status",
    "priority",
    "inbox_id",
    "assignee_id",
    "team_id",
    "labels",
    "waiting_since",
    "snoozed_until",
)
# Marks this much older than the horizon bound where a first check starts paging.
MARK_MARGIN_SECONDS = 60.0


class ReconcileError(Exception):
    """An account could not be reconciled for a reason the next run will not fix by itself
    (a token Chatwoot refuses, an AWS error, a bug): the function fails and its alarm fires."""


class _Stop(Exception):
    """Stop this account's run here; ``whole_run`` stops the accounts after it too."""

    def __init__(self, reason: str, detail: str = "", whole_run: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail
        self.whole_run = whole_run


@dataclass
class AccountRun:
    """What one account's run found and did."""

    account_id: str
    window_start: float
    conversations: int = 0
    messages: int = 0
    states: int = 0
    deferred: int = 0
    too_large: int = 0
    pages: int = 0
    complete: bool = False
    stopped: str | None = None
    checkpoint: float | None = None

    @property
    def replayed(self) -> int:
        return self.messages + self.states


@dataclass
class Reconciler:
    """Finds and replays, per account, the Chatwoot events the pipeline never received."""

    store: ConversationStore
    client: ChatwootClient | None
    sqs: Any
    queue_url: str
    telemetry: Telemetry
    rate_seconds: int = 900
    overlap_seconds: int = 120
    ignored_events: frozenset[str] = field(default_factory=frozenset)
    clock: Callable[[], float] = time.time
    stop_seconds: float = STOP_SECONDS
    pause: PauseSwitch = field(default_factory=NeverPaused)

    def run(
        self, now: float, accounts: Iterable[str] | None = None, since: float | None = None
    ) -> dict[str, Any]:
        """Reconcile every account (or ``accounts``) as of ``now``; ``since`` (a manual run)
        checks from that moment instead of the checkpoint. Counts of what was found and done."""
        if self.client is None:
            logger.info("reconciler in dry run: no Chatwoot to ask (ChatwootBaseUrl is empty)")
            return {"skipped": "dry run", "replayed": 0}
        mode = self.pause.mode()
        if mode != OFF:
            # Paused: events wait on EventsQueue older than the overlap, and replaying them
            # would double the queue and count them as recovered; Chatwoot is spared too. The
            # checkpoints stay, so the first run after the pause covers the pause.
            logger.warning("reconciler skipped: the pipeline is paused", extra={"mode": mode})
            return {"skipped": "paused", "replayed": 0}
        wanted = [str(a) for a in accounts] if accounts is not None else self.store.accounts()
        checkpoints = {a: self.store.reconcile_checkpoint(a) for a in wanted}
        # The account furthest behind goes first, so one busy account cannot starve the rest.
        order = sorted(
            wanted,
            key=lambda a: (float((checkpoints[a] or {}).get("through") or 0), a.zfill(20)),
        )
        runs: list[AccountRun] = []
        failures: list[str] = []
        not_started = 0
        for index, account in enumerate(order):
            left = deadline.remaining()
            if left is not None and left < self.stop_seconds:
                not_started = len(order) - index
                break
            try:
                result = self._account(account, checkpoints[account], now, since)
            except _Stop as stop:  # raised before the account's run began (its bounds)
                failures.append(f"account {account}: {stop.reason}")
                continue
            except Exception as exc:
                logger.exception(
                    "reconcile failed for an account",
                    extra={"account_id": account, "error": type(exc).__name__},
                )
                self.telemetry.count("ReconcileIncomplete", reason="error")
                failures.append(f"account {account}: {type(exc).__name__}")
                continue
            runs.append(result)
            if result.stopped:
                self.telemetry.count("ReconcileIncomplete", reason=result.stopped)
                if result.stopped in ("chatwoot_rejected", "invalid_id"):
                    failures.append(f"account {account}: {result.stopped}")
                if result.stopped == "chatwoot_throttled":
                    not_started = len(order) - index - 1
                    break  # Chatwoot asked us to slow down: the next schedule carries on
                if result.stopped == "deadline":
                    not_started = len(order) - index - 1
                    break
        replayed = sum(r.replayed for r in runs)
        self.telemetry.count("EventsReconciled", value=replayed)
        too_large = sum(r.too_large for r in runs)
        if too_large:
            self.telemetry.count("ReconcileTooLarge", value=too_large)
        totals = {
            "accounts": len(order),
            "complete": sum(1 for r in runs if r.complete),
            "conversations": sum(r.conversations for r in runs),
            "replayed": replayed,
            "messages": sum(r.messages for r in runs),
            "states": sum(r.states for r in runs),
            "deferred": sum(r.deferred for r in runs),
            "too_large": too_large,
            "pages": sum(r.pages for r in runs),
            "not_started": not_started,
            "stopped": {r.account_id: r.stopped for r in runs if r.stopped},
        }
        logger.info("reconcile finished", extra={**totals, "now": cw.iso(now)})
        if failures:
            raise ReconcileError("; ".join(failures))
        return totals

    # ---- one account -----------------------------------------------------------------------
    def _account(
        self, account: str, checkpoint: dict[str, Any] | None, now: float, since: float | None
    ) -> AccountRun:
        if cw.canonical_id(account) is None:
            raise _Stop("invalid_id")
        oldest = now - MAX_LOOKBACK_SECONDS
        if checkpoint:
            through = float(checkpoint["through"])
            horizon = float(checkpoint.get("horizon") or through - self.overlap_seconds)
        else:  # the first run looks back one period, as if the previous run had just happened
            through = now - self.rate_seconds
            horizon = through - self.overlap_seconds
        window_start = max(through - self.overlap_seconds, oldest)
        horizon = max(horizon, oldest)
        if since is not None:  # a run by hand reaches as far back as it is told
            window_start = since
            horizon = min(horizon, since)
        run = AccountRun(account, window_start)
        try:
            self._walk(account, run, horizon, now)
            run.complete = True
        except _Stop as stop:
            run.stopped = stop.reason
            log = logger.error if stop.reason == "chatwoot_rejected" else logger.warning
            log(
                "reconcile stopped; the checkpoint stays where it was",
                extra={"account_id": account, "reason": stop.reason, "detail": stop.detail},
            )
        if run.complete:
            moved_to = now - self.overlap_seconds
            if self.store.move_reconcile_checkpoint(
                account,
                {
                    "through": moved_to,
                    "horizon": horizon,
                    "updated_at": cw.iso(self.clock()),
                    "last_replayed": run.replayed,
                },
            ):
                run.checkpoint = moved_to
        elif checkpoint is None:
            # A first run that stopped: keep where it started, or the next first run would
            # start one period later and never look at what this one did not reach.
            self.store.move_reconcile_checkpoint(
                account,
                {"through": through, "horizon": horizon, "updated_at": cw.iso(self.clock())},
            )
        logger.info(
            "account reconciled" if run.complete else "account partly reconciled",
            extra={
                "account_id": account,
                "window_start": cw.iso(window_start),
                "checkpoint": cw.iso(run.checkpoint) if run.checkpoint else None,
                "lag_seconds": round(now - through, 1),
                "conversations": run.conversations,
                "messages_replayed": run.messages,
                "states_replayed": run.states,
                "deferred": run.deferred,
                "pages": run.pages,
            },
        )
        return run

    def _walk(self, account: str, run: AccountRun, horizon: float, now: float) -> None:
        """Every conversation active since the window's start, most recent first."""
        seen: set[str] = set()
        listed = 0
        page = 1
        while True:
            self._ensure_time()
            listing = self._chatwoot(self._client.list_conversations, account, page)
            run.pages += 1
            if not listing.conversations:
                return
            listed += len(listing.conversations)
            for item in listing.conversations:
                activity = cw.to_epoch(item.get("last_activity_at"))
                # last_activity_at is listed in whole seconds (to_i): compare a second early.
                if activity is not None and activity < run.window_start - 1:
                    return
                conversation = cw.canonical_id(item.get("id"))
                if conversation is None or conversation in seen:
                    continue  # a conversation that moved up a page while we read is done
                seen.add(conversation)
                self._ensure_time()
                self._conversation(account, conversation, item, horizon, now, run)
            if listing.all_count is not None and listed >= listing.all_count:
                return
            page += 1

    # ---- one conversation ------------------------------------------------------------------
    def _conversation(
        self,
        account: str,
        conversation: str,
        item: dict[str, Any],
        horizon: float,
        now: float,
        run: AccountRun,
    ) -> None:
        run.conversations += 1
        fresh_after = now - self.overlap_seconds
        record = self.store.get_record(account, conversation)
        cursor = _int((record or {}).get("reconciled_message_id"))
        start = cursor if cursor is not None else _start_below(record, horizon)
        replays: list[dict[str, Any]] = []
        verified = start
        deferred = False
        if _newest_sendable(item) > start:
            try:
                found = self._chatwoot(
                    self._messages_after, account, conversation, start, missing_ok=True
                )
            except NotFoundError as error:
                if not error.from_chatwoot:  # a proxy's or a wrong URL's 404: not an answer
                    raise _Stop("chatwoot_unavailable", error.reason) from None
                # Chatwoot's own 404: deleted since it was listed, nothing left to recover.
                logger.info(
                    "conversation gone in Chatwoot; skipped",
                    extra={"account_id": account, "conversation_id": conversation},
                )
                return
            messages = sorted(
                (m for m in found if (_int(m.get("id")) or 0) > start),
                key=lambda m: _int(m.get("id")) or 0,
            )
            # A first check covers what came since the horizon; a later one everything since
            # the id it verified up to.
            floor = horizon if cursor is None else None
            in_scope = [
                m
                for m in messages
                if _int(m.get("message_type")) in SENDABLE_TYPES
                and (floor is None or (cw.to_epoch(m.get("created_at")) or 0) >= floor - 1)
            ]
            recorded: set[str] = set()
            if in_scope:
                earliest = min(cw.to_epoch(m.get("created_at")) or 0 for m in in_scope)
                recorded = self.store.recorded_message_ids(account, conversation, earliest)
            scope_ids = {_int(m.get("id")) for m in in_scope}
            for message in messages:
                message_id = _int(message.get("id")) or 0
                if _int(message.get("message_type")) in SENDABLE_TYPES:
                    if (cw.to_epoch(message.get("created_at")) or 0) > fresh_after:
                        deferred = True
                        break  # its webhook may still be on the way; ids only grow from here
                    if (
                        message_id in scope_ids
                        and str(message_id) not in recorded
                        and "message_created" not in self.ignored_events
                    ):
                        replays.append(self._message_event(account, conversation, item, message))
                verified = message_id
        state = self._state_event(account, item, record)
        if state is not None:
            if (cw.to_epoch(item.get("updated_at")) or 0) > fresh_after:
                deferred = True
            elif "conversation_updated" not in self.ignored_events:
                replays.append(state)
        for payload in replays:
            self._replay(account, conversation, payload, run)
        if deferred:
            run.deferred += 1
        if record is not None and (cursor is None or verified > cursor):
            self.store.set_reconciled_through(account, conversation, verified)

    def _state_event(
        self, account: str, item: dict[str, Any], record: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """The conversation's state as a ``conversation_updated`` event, if the record lacks it."""
        updated = cw.to_epoch(item.get("updated_at"))
        version = (record or {}).get("snapshot_version")
        if updated is None or (version is not None and updated <= float(version) + 1e-6):
            return None
        payload = {
            **_conversation_object(account, item),
            "event": "conversation_updated",
            "changed_attributes": [],
        }
        if record is not None:
            facts = extract_facts(
                EventContext(event="conversation_updated", payload=payload, dedupe_key=""),
                updated,
            )
            if all(_same(facts.snapshot.get(name), record.get(name)) for name in COMPARED_FIELDS):
                return None  # a change Chatwoot sends no webhook for: nothing is missing
        return payload

    def _message_event(
        self, account: str, conversation: str, item: dict[str, Any], message: dict[str, Any]
    ) -> dict[str, Any]:
        """A ``message_created`` webhook body for a message of ``GET .../messages``."""
        kind = _int(message.get("message_type")) or 0
        sender = message.get("sender") if isinstance(message.get("sender"), dict) else None
        created = _int(message.get("created_at"))
        inbox_id = message.get("inbox_id", item.get("inbox_id"))
        embedded = {
            "id": message.get("id"),
            "content": message.get("content"),
            "account_id": int(account),
            "inbox_id": inbox_id,
            "conversation_id": int(conversation),
            "message_type": kind,
            "created_at": created,
            "private": bool(message.get("private")),
            "status": message.get("status"),
            "source_id": message.get("source_id"),
            "content_type": message.get("content_type"),
            "content_attributes": message.get("content_attributes") or {},
            "sender_type": SENDER_TYPES.get(str((sender or {}).get("type") or "").lower()),
            "sender_id": (sender or {}).get("id"),
            "sender": sender,
        }
        payload: dict[str, Any] = {
            "event": "message_created",
            "id": message.get("id"),
            "content": message.get("content"),
            "content_type": message.get("content_type"),
            "content_attributes": message.get("content_attributes") or {},
            "additional_attributes": {},
            "created_at": created,
            "message_type": SENDABLE_TYPES[kind],
            "private": bool(message.get("private")),
            "source_id": message.get("source_id"),
            "sender": sender,
            "account": {"id": int(account)},
            "inbox": {"id": inbox_id},
            "conversation": {**_conversation_object(account, item), "messages": [embedded]},
        }
        if message.get("attachments"):
            payload["attachments"] = message["attachments"]
        return payload

    def _replay(
        self, account: str, conversation: str, payload: dict[str, Any], run: AccountRun
    ) -> None:
        """Put one event on EventsQueue as ingest would have, marked ``reconciled``."""
        body = json.dumps(payload, separators=(",", ":"))
        if len(body.encode()) > MAX_BODY_BYTES and payload["event"] == "message_created":
            # The webhook repeats the text in conversation.messages[]; nothing reads it there.
            payload["conversation"]["messages"][0].pop("content", None)
            body = json.dumps(payload, separators=(",", ":"))
        event = str(payload["event"])
        ids = {
            "account_id": account,
            "conversation_id": conversation,
            "event": event,
            "message_id": payload.get("id") if event == "message_created" else None,
        }
        if len(body.encode()) > MAX_BODY_BYTES:
            run.too_large += 1
            logger.error("event too large to replay; left to a person", extra=ids)
            return
        invalid = cw.invalid_ids(payload)
        if invalid is not None:
            logger.error("event with a malformed id not replayed", extra={**ids, "why": invalid})
            return
        dedupe_key = cw.dedupe_key(payload, None, body.encode(), signed=True)
        attributes = {
            "event": event,
            "delivery_id": "",  # no delivery: Chatwoot's was lost
            "received_at": cw.iso(self.clock()),
            "signed": "true",  # read from Chatwoot's API with our token: as trusted as a signature
            "dedupe_key": dedupe_key[:512],
            "account_id": account,
            "conversation_id": conversation,
            "reconciled": "true",
        }
        self.sqs.send_message(
            QueueUrl=self.queue_url,
            MessageBody=body,
            MessageAttributes=to_message_attributes(attributes),
        )
        if event == "message_created":
            run.messages += 1
        else:
            run.states += 1
        logger.info("event reconciled", extra={**ids, "dedupe_key": dedupe_key})

    # ---- plumbing --------------------------------------------------------------------------
    @property
    def _client(self) -> ChatwootClient:
        if self.client is None:  # run() returns early without one
            raise RuntimeError("the reconciler has no Chatwoot client (dry run)")
        return self.client

    def _ensure_time(self) -> None:
        left = deadline.remaining()
        if left is not None and left < self.stop_seconds:
            raise _Stop("deadline", f"{max(left, 0):.1f} s left in the invocation")

    def _messages_after(self, account: str, conversation: str, after: int) -> list[Any]:
        return list(self._client.messages_after(account, conversation, after))

    @staticmethod
    def _chatwoot[T](call: Callable[..., T], *args: Any, missing_ok: bool = False) -> T:
        """A Chatwoot call; its failures decide how the run stops. ``missing_ok``: a 404
        (a conversation deleted since it was listed) is the caller's to handle."""
        try:
            return call(*args)
        except NotFoundError as error:
            if missing_ok:
                raise
            raise _Stop(error.error_type, error.reason) from None
        except TransientError as error:  # 429, 5xx, no answer, no time left
            raise _Stop(error.error_type, error.reason) from None
        except PermanentError as error:  # 401/403 (token), 404 (account), 422
            raise _Stop(error.error_type, error.reason) from None


def run_request(event: dict[str, Any]) -> tuple[list[str] | None, float | None]:
    """The accounts and the moment a run by hand asks for
    (``{"accounts": ["1"], "since": "2026-09-27T00:00:00Z"}``); a scheduled event asks for
    neither. ValueError for anything else."""
    accounts = event.get("accounts")
    if accounts is not None:
        if not isinstance(accounts, list) or not accounts:
            raise ValueError("accounts must be a non-empty list of Chatwoot account ids")
        ids = [cw.canonical_id(a) for a in accounts]
        if any(i is None for i in ids):
            raise ValueError("accounts must be positive integers")
        accounts = [str(i) for i in ids]
    since = event.get("since")
    moment = None
    if since is not None:
        moment = cw.to_epoch(since)
        if moment is None:
            raise ValueError("since must be an ISO-8601 time or unix seconds")
    return accounts, moment


def _conversation_object(account: str, item: dict[str, Any]) -> dict[str, Any]:
    """A listed conversation as a webhook's conversation object."""
    conversation = {
        k: v for k, v in item.items() if k not in ("messages", "last_non_activity_message")
    }
    meta = item.get("meta") if isinstance(item.get("meta"), dict) else {}
    conversation.setdefault("channel", (meta or {}).get("channel"))
    conversation["account_id"] = int(account)
    conversation["account"] = {"id": int(account)}
    return conversation


def _newest_sendable(item: dict[str, Any]) -> int:
    """The id of the newest message Chatwoot sent a webhook for, as the list shows it (0: none).
    Without ``last_non_activity_message`` (older Chatwoot), the newest message of any kind."""
    if "last_non_activity_message" in item:
        last = item.get("last_non_activity_message")
        return (_int(last.get("id")) or 0) if isinstance(last, dict) else 0
    messages = item.get("messages") if isinstance(item.get("messages"), list) else []
    ids = [_int(m.get("id")) for m in messages or [] if isinstance(m, dict)]
    return max((i for i in ids if i is not None), default=0)


def _start_below(record: dict[str, Any] | None, horizon: float) -> int:
    """Where a first check starts paging: the newest message the record marks from before the
    horizon (message ids grow with time), else the conversation's beginning."""
    below = [
        _int(mark[2]) or 0
        for mark in (record or {}).get("message_marks") or []
        if isinstance(mark, list)
        and len(mark) == 3
        and float(mark[0]) < horizon - MARK_MARGIN_SECONDS
    ]
    return max(below, default=0)


def _same(listed: Any, recorded: Any) -> bool:
    """One record field, as the list shows it and as the record holds it."""
    if isinstance(listed, list) or isinstance(recorded, list):
        return sorted(map(str, listed or [])) == sorted(map(str, recorded or []))
    if isinstance(listed, int | float) or isinstance(recorded, int | float):
        if listed is None or recorded is None:
            return listed is None and recorded is None
        return abs(float(listed) - float(recorded)) < 0.001
    return (listed or None) == (recorded or None)


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None
