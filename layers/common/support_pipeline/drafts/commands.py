"""Agents' commands in private notes: ``/send``, ``/reject``, ``/grade``.

A note is a command when its first word is one of these; anything after the command is its
argument. Parsing never raises: a malformed command becomes a :class:`Command` with an
``error`` the pipeline answers with a short private note. (``/escalate`` belongs to the
escalation rules.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from support_pipeline.policy import GRADES

COMMANDS = ("/send", "/reject", "/grade")
DRAFT_ID = re.compile(r"^d-[2-9a-hjkmnp-z]{6}$")
GRADE = re.compile(r"^(tone|accuracy|policy)=(\S+)$")
USAGE = {
    "/send": "/send, or /send d-xxxxxx for an older draft",
    "/reject": "/reject <why>, or /reject d-xxxxxx <why>",
    "/grade": "/grade tone=1-5 accuracy=1-5 policy=1-5 [comment], optionally after a draft id",
}


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
    """The command a note holds, or None when the note is not a command."""
    words = text.strip().split()
    if not words or words[0].lower() not in COMMANDS:
        return None
    name, rest = words[0].lower(), words[1:]
    draft_id = None
    if rest and rest[0].lower().startswith("d-"):
        if not DRAFT_ID.match(rest[0].lower()):
            return Command(name, error=f"`{rest[0]}` is not a draft id. Use {USAGE[name]}.")
        draft_id, rest = rest[0].lower(), rest[1:]
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
        return Command(name, draft_id, reason=" ".join(rest))
    grades: dict[str, int] = {}
    comment: list[str] = []
    for word in rest:
        match = GRADE.match(word.lower())
        if match and not comment:
            value = match.group(2)
            if not value.isdigit() or not 1 <= int(value) <= 5:
                return Command(
                    name, draft_id, error=f"{match.group(1)} must be a whole number from 1 to 5."
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
    return Command(name, draft_id, grades=grades, comment=" ".join(comment))
