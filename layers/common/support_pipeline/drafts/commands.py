"""Agents' commands in private notes: ``/send``, ``/reject``, ``/grade``.

A note is a command when its first word is one of these; anything after the command is its
argument. Parsing is total: for any text it returns None (not a command) or a
:class:`Command`, and a malformed command is a Command with a short ``error`` that says how to
write it, which the pipeline answers with a private note. It never raises, so a typo can never
send an event round the retries to the DLQ. Only ASCII counts as a digit or an id: ``"²"`` and
a fullwidth five pass ``str.isdigit()`` and are still not a grade. (``/escalate`` belongs to the
escalation rules.)
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from support_pipeline.policy import GRADES

COMMANDS = ("/send", "/reject", "/grade")
DRAFT_ID = re.compile(r"d-[2-9a-hjkmnp-z]{6}")
GRADE = re.compile(r"(tone|accuracy|policy)=(.*)", re.DOTALL)
GRADE_VALUE = re.compile(r"[1-5]")
USAGE = {
    "/send": "/send, or /send d-xxxxxx for an older draft",
    "/reject": "/reject <why>, or /reject d-xxxxxx <why>",
    "/grade": "/grade tone=1-5 accuracy=1-5 policy=1-5 [comment], optionally after a draft id",
}
MAX_TEXT = 1000  # characters of a rejection reason or a grade comment that are kept
MAX_SHOWN = 24  # characters of the agent's own word quoted back in an answer


@dataclass(frozen=True)
class Command:
    """One parsed command; ``error`` says what was wrong, for the agent."""

    name: str
    draft_id: str | None = None
    reason: str = ""
    grades: dict[str, int] = field(default_factory=dict)
    comment: str = ""
    error: str | None = None


def parse(text: str) -> Command | None:
    """The command a note holds, or None when the note is not a command. Never raises."""
    if not isinstance(text, str):
        return None
    words = text.split()
    if not words or not words[0].isascii() or words[0].lower() not in COMMANDS:
        return None
    name, rest = words[0].lower(), words[1:]
    draft_id = None
    if rest and rest[0][:2].lower() == "d-":
        candidate = rest[0].lower()
        if not (rest[0].isascii() and DRAFT_ID.fullmatch(candidate)):
            return Command(name, error=f"`{_shown(rest[0])}` is not a draft id. Use {USAGE[name]}.")
        draft_id, rest = candidate, rest[1:]
    if name == "/send":
        if rest:
            return Command(
                name,
                draft_id,
                error="/send sends the draft as it is and takes nothing else. To change it, "
                "write your own reply instead.",
            )
        return Command(name, draft_id)
    if name == "/reject":
        return Command(name, draft_id, reason=_kept(rest))
    grades: dict[str, int] = {}
    comment: list[str] = []
    for word in rest:
        match = GRADE.fullmatch(word.lower())
        if match and not comment:
            value = match.group(2)
            if not GRADE_VALUE.fullmatch(value):
                return Command(
                    name,
                    draft_id,
                    error=f"{match.group(1)} must be a whole number from 1 to 5. "
                    f"Use {USAGE[name]}.",
                )
            grades[match.group(1)] = int(value)
        else:
            comment.append(word)
    missing = [g for g in GRADES if g not in grades]
    if missing:
        return Command(
            name,
            draft_id,
            error=f"/grade needs {', '.join(missing)} (1 to 5), e.g. "
            "/grade tone=5 accuracy=4 policy=5 clear and kind.",
        )
    return Command(name, draft_id, grades=grades, comment=_kept(comment))


def _shown(word: str) -> str:
    """The agent's word as it may be quoted back in a note: printable, short."""
    printable = "".join(c for c in word if c.isprintable() and c != "`")
    if len(printable) > MAX_SHOWN:
        return printable[: MAX_SHOWN - 1] + "…"
    return printable or "?"


def _kept(words: list[str]) -> str:
    """Free text as it is stored: no control characters or lone surrogates (DynamoDB and
    Chatwoot's database refuse them), at most MAX_TEXT characters (a note can hold 150,000)."""
    text = " ".join(words)[: MAX_TEXT * 2]
    cleaned = "".join(c for c in text if unicodedata.category(c) not in ("Cc", "Cs"))
    return " ".join(cleaned.split())[:MAX_TEXT]
