"""Routing events to support handlers by event name.

Each capability registers its handlers here; an event no handler wants is acknowledged and
counted, never failed, because Chatwoot adds events over time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from support_pipeline.chatwoot.payload import Payload


@dataclass(frozen=True)
class EventContext:
    """One event as a handler sees it."""

    event: str
    payload: Payload
    dedupe_key: str
    delivery_id: str | None = None
    received_at: str | None = None
    raw_event: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    # What one handler leaves for the next within one event (the merged conversation record,
    # whether the event is a duplicate), so they share a read instead of repeating it.
    shared: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[EventContext], Any]


class Router:
    """Event name -> handlers, run in registration order."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[tuple[str, Handler]]] = {}

    def register(self, events: Iterable[str], name: str, handler: Handler) -> None:
        """Run ``handler`` (known as ``name`` in logs and results) for each of ``events``."""
        for event in events:
            self._handlers.setdefault(event, []).append((name, handler))

    def handlers_for(self, event: str) -> list[tuple[str, Handler]]:
        return list(self._handlers.get(event, []))

    @property
    def events(self) -> frozenset[str]:
        return frozenset(self._handlers)

    def dispatch(self, context: EventContext) -> dict[str, Any]:
        """Run every handler for the event; the result is stored by idempotency."""
        handlers = self.handlers_for(context.event)
        results: dict[str, Any] = {}
        for name, handler in handlers:
            results[name] = handler(context)
            if context.shared.get("skip"):
                break  # a repeat of an event whose work is done
        return {"event": context.event, "handled": bool(handlers), "results": results}
