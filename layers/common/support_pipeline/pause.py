"""The pause switch: one SSM parameter that stops the pipeline acting, or consuming, without a
deployment.

Its value is a mode:

- ``off`` (or the parameter missing, or empty): the pipeline runs.
- ``actions``: events are still recorded (conversation records, timelines, SLA clocks, the
  report's data), but nothing is done in Chatwoot: the Chatwoot client refuses every call
  (reads too: the usual reason to pause is a Chatwoot in trouble) by raising :class:`Paused`.
  An event whose handlers reach Chatwoot goes back on the queue unfinished, and the SLA sweep
  does not run. At resume those events are handled again against the conversation as it is
  then: the claims make every effect once, and the rules decide on the current record (a
  draft is not written for a turn an agent has since answered; an escalation claimed before the
  pause is finished).
- ``consume``: the processor handles nothing; every record goes back on the queue as a fresh
  copy, delayed, answered as done, so a pause of any length never uses a delivery attempt (no
  dead-lettering by the queue's maxReceiveCount) and restarts the copy's retention.

The processor and the sweep read the parameter at most every ``max_age`` seconds. A value that
is not a mode is treated as ``consume`` (a typo in an emergency brake must still brake). A read
that fails keeps the last mode read; before any read succeeded the pipeline runs, and the
failure is logged and counted (``PauseUnreadable``), because a cold start that cannot reach SSM
is far likelier than one during a pause, and a pause in consume mode on AWS can also disable
the event source mapping (``support-pipeline pause consume --stop-trigger``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger

logger = Logger(child=True)

OFF, ACTIONS, CONSUME = "off", "actions", "consume"
MODES = (OFF, ACTIONS, CONSUME)
DEFAULT_PARAMETER = "/support-pipeline/pause"
DEFAULT_MAX_AGE = 30.0


class Paused(Exception):
    """The pipeline is paused: the work must wait (never a failure, never an attempt used)."""

    def __init__(self, mode: str, what: str = "") -> None:
        super().__init__(f"the pipeline is paused ({mode}){': ' + what if what else ''}")
        self.mode = mode


def parse_mode(value: str | None) -> tuple[str, bool]:
    """The mode a parameter value means, and whether the value was a known one."""
    text = (value or "").strip().lower()
    if text in ("", OFF):
        return OFF, True
    if text in MODES:
        return text, True
    return CONSUME, False


class PauseSwitch:
    """The pause mode in force, read from the parameter at most every ``max_age`` seconds.

    ``fetch`` returns the parameter's value, or None when there is no parameter; it raises when
    the parameter cannot be read.
    """

    def __init__(
        self,
        fetch: Callable[[], str | None],
        max_age: float = DEFAULT_MAX_AGE,
        clock: Callable[[], float] = time.monotonic,
        telemetry: Any = None,
        name: str = "",
    ) -> None:
        self._fetch = fetch
        self._max_age = max_age
        self._clock = clock
        self._telemetry = telemetry
        self.name = name
        self._mode: str | None = None
        self._read_at: float | None = None

    def mode(self) -> str:
        now = self._clock()
        if self._read_at is not None and now - self._read_at < self._max_age:
            return self._mode or OFF
        self._read_at = now
        try:
            value = self._fetch()
        except Exception as error:
            logger.error(
                "pause parameter unreadable; the last mode read stays in force",
                extra={
                    "parameter": self.name,
                    "error": type(error).__name__,
                    "mode": self._mode or OFF,
                },
            )
            if self._telemetry is not None:
                self._telemetry.count("PauseUnreadable")
            return self._mode or OFF
        mode, known = parse_mode(value)
        if not known:
            logger.error(
                "pause parameter holds no mode; treated as consume",
                extra={"parameter": self.name, "modes": list(MODES)},
            )
        if mode != self._mode:
            logger.warning(
                "pipeline paused" if mode != OFF else "pipeline running",
                extra={"parameter": self.name, "mode": mode, "previous": self._mode or OFF},
            )
        self._mode = mode
        return mode

    def hold(self, what: str = "") -> None:
        """Raise :class:`Paused` while any pause is on (the Chatwoot client's gate)."""
        mode = self.mode()
        if mode != OFF:
            raise Paused(mode, what)


class NeverPaused(PauseSwitch):
    """A switch that is always off (tests, tools, and functions with no pause parameter)."""

    def __init__(self) -> None:
        super().__init__(lambda: None)

    def mode(self) -> str:
        return OFF


def ssm_reader(ssm: Any, name: str) -> Callable[[], str | None]:
    """Read the pause parameter with a boto3 SSM client; None when it does not exist."""

    def fetch() -> str | None:
        try:
            answer = ssm.get_parameter(Name=name)
        except Exception as error:
            code = getattr(error, "response", {}).get("Error", {}).get("Code")
            if code == "ParameterNotFound":
                return None
            raise
        return str(answer["Parameter"]["Value"])

    return fetch
