"""Learning signals: what agents did with the drafts, as a dataset, and the knowledge gaps.

Every decided draft becomes one export line (:func:`signal_line`): the customer's turn, the
draft, what the agent finally sent, the outcome, the grades and the CSAT. This is the dataset a
team evaluates its drafters on or fine-tunes with, so it carries customer text; it goes to
files and to the payload bucket (``signals/``), never to logs.

Records are read day by day from the ``ByAccountDay`` index for every account
(:func:`signal_records`), never by a scan. A window is a pair of instants; the days read are
the local days it touches in the zone given, plus one day either side, and each draft is then
kept by the instant it was decided. So the window is exact whatever zone the drafts were
bucketed in (the policy's zone when they were decided, which may have changed since).

Turns that got no draft (``no_draft``: the drafter had nothing good enough) are exported too,
with ``draft`` null: they are the cases the drafter abstained on, the denominator of any
coverage figure, and filtering them out is one condition on ``outcome``. They are also half of
the knowledge gaps (:func:`knowledge_gaps`): questions with no draft, or whose draft the agent
replaced with an answer of their own, grouped by similarity, largest group first: the articles
the knowledge base is missing, with the agents' answers to write them from.

Pure Python: the grouping uses the knowledge drafter's analyzer (accent folding, stopwords and
question-frame words, Snowball stems).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from aws_lambda_powertools import Logger

from support_pipeline.chatwoot.payload import iso, to_epoch
from support_pipeline.drafts.knowledge import analyzer, detect_language, fold, normalise_language
from support_pipeline.drafts.store import NO_DRAFT, OUTCOMES, DraftStore
from support_pipeline.store import ConversationStore

logger = Logger(child=True)

SCHEMA_VERSION = 1
# The export schema, in the order every line carries its fields (docs/architecture.md).
FIELDS = (
    "schema_version",
    "draft_id",
    "account_id",
    "conversation_id",
    "inbox_id",
    "drafter",
    "language",
    "confidence",
    "sources",
    "question",
    "draft",
    "final_text",
    "outcome",
    "edit_distance",
    "edit_ratio",
    "seconds_to_decision",
    "approver",
    "grades",
    "grade_comment",
    "rejection_reason",
    "csat",
    "created_at",
    "decided_at",
)
EXPORTED_OUTCOMES = (*OUTCOMES, NO_DRAFT)
GAP_OUTCOMES = (NO_DRAFT, "replaced")
GRADE_NAMES = ("tone", "accuracy", "policy")
# A question joins a group when the cosine between its content stems and the group's centroid
# is at least this. With stopwords and question frames gone a support question has two to four
# content stems: two questions sharing one of three each (1/3) join, one of four each (1/4) do
# not. Measured on 48 labelled paraphrases of 12 missing topics, Spanish and English (pairwise
# precision / recall, averaged over 10 arrival orders): 0.90 / 0.92 at 0.2, 0.98 / 0.90 at
# 0.25, 0.97 / 0.88 at 0.3, 0.96 / 0.86 at 0.35, 0.95 / 0.80 at 0.4; and on 28 questions it
# was not chosen on (7 other topics, 6 one-offs): 1.00 / 0.92 from 0.2 to 0.35, 1.00 / 0.67
# at 0.4. 0.3 sits in the middle of the plateau, away from the one-shared-word-in-four pairs
# that generic words ("order", "joyas") make. A wrong merge misleads more than a split (two
# groups about one article are easy to spot). tests/unit/test_signals.py keeps both sets.
GAP_THRESHOLD = 0.3
GAP_REFINE_ROUNDS = 5
SIGNALS_PREFIX = "signals/"


# --------------------------------------------------------------------------- export lines


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def signal_line(draft: Mapping[str, Any]) -> dict[str, Any]:
    """One decided draft (or gap) as an export line: every field of :data:`FIELDS`, always
    present, null when it does not apply.

    ``draft`` is the suggested text (null for ``no_draft``); ``final_text`` what the customer
    got: the draft itself for ``sent_as_is``, the agent's own reply for ``edited`` and
    ``replaced``, the agent's reply to a turn with no draft when one came, else null.
    ``approver`` is who decided: the agent who approved (``/send``), rejected, or answered in
    the draft's place; null for ``expired``, ``superseded`` and ``no_draft``. ``grades`` holds
    ``tone``, ``accuracy`` and ``policy`` (1-5) when an agent graded the draft.
    """
    outcome = str(draft.get("outcome") or draft.get("status") or "")
    grades = draft.get("grades")
    approver = None
    if outcome != NO_DRAFT:
        approver = draft.get("approver_id") or draft.get("decided_by") or None
    line = {
        "schema_version": SCHEMA_VERSION,
        "draft_id": str(draft.get("draft_id") or ""),
        "account_id": str(draft.get("account_id") or ""),
        "conversation_id": str(draft.get("conversation_id") or ""),
        "inbox_id": str(draft["inbox_id"]) if draft.get("inbox_id") else None,
        "drafter": _text(draft.get("drafter")),
        "language": _text(draft.get("language")),
        "confidence": _number(draft.get("confidence")),
        "sources": [
            {"title": str(s.get("title") or ""), "ref": str(s.get("ref") or "")}
            for s in draft.get("sources") or []
            if isinstance(s, Mapping)
        ],
        "question": _text(draft.get("question")) or "",
        "draft": _text(draft.get("text")),
        "final_text": _text(draft.get("final_text")),
        "outcome": outcome,
        "edit_distance": _number(draft.get("edit_distance")),
        "edit_ratio": _number(draft.get("edit_ratio")),
        "seconds_to_decision": _number(draft.get("seconds_to_decision")),
        "approver": str(approver) if approver else None,
        "grades": (
            {name: _number(grades.get(name)) for name in GRADE_NAMES}
            if isinstance(grades, Mapping)
            else None
        ),
        "grade_comment": _text(draft.get("grade_comment")) or None,
        "rejection_reason": _text(draft.get("rejection_reason")) or None,
        "csat": _number(draft.get("csat")),
        "created_at": _text(draft.get("created_at")),
        "decided_at": _text(draft.get("decided_at")),
    }
    return {name: line[name] for name in FIELDS}


def to_jsonl(lines: Iterable[Mapping[str, Any]]) -> bytes:
    """UTF-8 JSON Lines, one object per line, customer text as written (not escaped)."""
    return b"".join(
        json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        for line in lines
    )


# --------------------------------------------------------------------------- reading


def _instant(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("window bounds must be timezone-aware datetimes")
    return value


def days_between(since: datetime, until: datetime, zone: tzinfo) -> list[str]:
    """The local days (``YYYY-MM-DD`` in ``zone``) ``[since, until)`` touches, one more on
    each side (a draft's day is the local date in the zone in force when it was decided)."""
    first = _instant(since).astimezone(zone).date() - timedelta(days=1)
    last = (_instant(until) - timedelta(microseconds=1)).astimezone(zone).date() + timedelta(days=1)
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


def decided_drafts(
    store: ConversationStore,
    drafts: DraftStore,
    since: datetime,
    until: datetime,
    zone: tzinfo,
    account: str | None = None,
    outcomes: Sequence[str] = EXPORTED_OUTCOMES,
) -> Iterator[dict[str, Any]]:
    """Drafts (and gaps) decided in ``[since, until)``, from the ``ByAccountDay`` index, day
    by day, for ``account`` or every account; oldest decision first within each account."""
    start, end = _instant(since).timestamp(), _instant(until).timestamp()
    days = days_between(since, until, zone)
    for account_id in [account] if account else sorted(store.accounts(), key=_id_order):
        found = []
        for day in days:
            for item in drafts.decided_on(account_id, day):
                if item.get("outcome") not in outcomes:
                    continue
                at = to_epoch(item.get("decided_at"))
                if at is not None and start <= at < end:
                    found.append(item)
        found.sort(key=lambda d: (str(d.get("decided_at") or ""), str(d.get("draft_id"))))
        yield from found


def _id_order(value: str) -> tuple[int, str]:
    return (int(value), value) if value.isdigit() else (0, value)


def signal_records(
    store: ConversationStore,
    drafts: DraftStore,
    since: datetime,
    until: datetime,
    zone: tzinfo,
    account: str | None = None,
) -> list[dict[str, Any]]:
    """Export lines of every draft decided in ``[since, until)`` (aware datetimes), every
    account (or ``account``), ordered by account then decision time."""
    return [
        signal_line(item) for item in decided_drafts(store, drafts, since, until, zone, account)
    ]


# --------------------------------------------------------------------------- weeks


def iso_week(day: date) -> str:
    """``2026-W39``: the ISO year and week of ``day`` (weeks start on Monday)."""
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")


def week_window(label: str, zone: tzinfo) -> tuple[datetime, datetime]:
    """Monday 00:00 to the next Monday 00:00, local time in ``zone``, of ISO week ``label``."""
    match = _WEEK.match(label)
    if not match:
        raise ValueError(f"week must look like 2026-W39, got {label!r}")
    try:
        monday = date.fromisocalendar(int(match[1]), int(match[2]), 1)
    except ValueError as exc:
        raise ValueError(f"{label} is not an ISO week") from exc
    since = datetime.combine(monday, time(0), tzinfo=zone)
    return since, datetime.combine(monday + timedelta(days=7), time(0), tzinfo=zone)


def previous_week(now: datetime, zone: tzinfo) -> str:
    """The last full week before ``now``, Monday to Monday in ``zone``: at any moment of
    local Monday 2026-09-28 (or later that week) it is ``2026-W39`` (21-27 September)."""
    local = _instant(now).astimezone(zone).date()
    return iso_week(local - timedelta(days=local.weekday() + 7))


# --------------------------------------------------------------------------- knowledge gaps


_WORD = re.compile(r"[^\W_]+")


@dataclass
class _Question:
    record: Mapping[str, Any]
    language: str
    words: dict[str, str]  # content stem -> the first word that gave it (folded)
    vector: dict[str, float]  # unit vector over the stems


def _analyse(record: Mapping[str, Any]) -> _Question | None:
    question = record.get("question")
    if not isinstance(question, str) or not question.strip():
        return None
    default = normalise_language(_text(record.get("language"))) or "es"
    language = detect_language(question, default=default)
    stems = analyzer(language)
    words: dict[str, str] = {}
    for token in _WORD.findall(fold(question)):
        for stem in stems.stems(token):
            words.setdefault(stem, token)
    if not words:
        return None  # greetings and thanks only: nothing to write an article about
    weight = 1 / math.sqrt(len(words))
    return _Question(record, language, words, dict.fromkeys(words, weight))


class _Groups:
    """Groups of questions with their centroids (sums of member vectors) and an index from
    stem to the groups whose centroid has it, so a question is compared only with groups it
    shares a stem with (the others have cosine 0)."""

    def __init__(self) -> None:
        self.members: list[list[int]] = []
        self.centroids: list[dict[str, float]] = []
        self.norms2: list[float] = []
        self.by_stem: dict[str, set[int]] = {}

    def add(self, group: int | None, index: int, vector: Mapping[str, float]) -> int:
        if group is None:
            group = len(self.members)
            self.members.append([])
            self.centroids.append({})
            self.norms2.append(0.0)
        centroid = self.centroids[group]
        for stem, value in vector.items():
            centroid[stem] = centroid.get(stem, 0.0) + value
            self.by_stem.setdefault(stem, set()).add(group)
        self.norms2[group] = sum(v * v for v in centroid.values())
        self.members[group].append(index)
        return group

    def best(self, vector: Mapping[str, float], own: int | None = None) -> tuple[int | None, float]:
        """The most similar group and its cosine; ``own``'s centroid is taken without
        ``vector`` (the question's own contribution)."""
        candidates = set().union(*(self.by_stem.get(stem, set()) for stem in vector))
        best, best_cosine = None, 0.0
        for group in sorted(candidates):
            dot = sum(
                value * self.centroids[group].get(stem, 0.0) for stem, value in vector.items()
            )
            norm2 = self.norms2[group]
            if group == own:
                norm2 = norm2 - 2 * dot + 1.0  # |c - v|^2 with |v| = 1
                dot -= 1.0
            if norm2 <= 1e-12 or dot <= 1e-12:
                continue
            cosine = dot / math.sqrt(norm2)
            if cosine > best_cosine + 1e-12:
                best, best_cosine = group, cosine
        return best, best_cosine


def _cluster(questions: Sequence[_Question], threshold: float) -> list[list[int]]:
    """Greedy leader clustering on centroids, then reassignment rounds.

    1. In order, each question joins the group whose centroid is most similar (cosine at
       least ``threshold``), or starts a group.
    2. Up to :data:`GAP_REFINE_ROUNDS` times, until nothing moves: each question goes to the
       group whose centroid (without itself) is most similar if that reaches ``threshold``,
       else it stands alone. The first pass depends on the order questions came in; these
       rounds undo most of that (a topic's first question no longer anchors it by chance).
    """
    groups = _Groups()
    for index, question in enumerate(questions):
        group, cosine = groups.best(question.vector)
        groups.add(group if cosine >= threshold else None, index, question.vector)
    assignment = [0] * len(questions)
    for group, members in enumerate(groups.members):
        for index in members:
            assignment[index] = group
    for _ in range(GAP_REFINE_ROUNDS):
        moved = False
        sizes = Counter(assignment)
        fresh = len(groups.members)
        new = []
        for index, question in enumerate(questions):
            own = assignment[index]
            group, cosine = groups.best(question.vector, own=own)
            if group is None or cosine < threshold:
                target = own if sizes[own] == 1 else fresh + index  # stays alone, or leaves
            else:
                target = group
            moved |= target != own
            new.append(target)
        if not moved:
            break
        rebuilt = _Groups()
        numbering: dict[int, int] = {}
        for index, target in enumerate(new):
            group_id = numbering.get(target)
            numbering[target] = rebuilt.add(group_id, index, questions[index].vector)
            assignment[index] = numbering[target]
        groups = rebuilt
    return [members for members in groups.members if members]


def knowledge_gaps(
    records: Iterable[Mapping[str, Any]],
    threshold: float = GAP_THRESHOLD,
    max_examples: int = 10,
) -> list[dict[str, Any]]:
    """Questions that got no draft, or whose draft the agent replaced, grouped by similarity.

    ``records`` are export lines (:func:`signal_line`); only ``no_draft`` and ``replaced``
    ones count, and only questions with at least one content word (a lone "hola" has none).
    Similarity is the cosine between the questions' sets of content stems (casefolded, accents
    folded, stopwords and question frames dropped, Snowball-stemmed in the question's
    language), each question weighing the same; see :data:`GAP_THRESHOLD` and :func:`_cluster`.

    Each group: ``representative`` (the question closest to the group's centroid), ``count``,
    ``no_draft`` and ``replaced`` counts, ``terms`` (the words most members use), ``languages``,
    ``examples`` (up to ``max_examples``, most typical first, each with the agent's ``answer``),
    ``answers`` (the agents' distinct answers in the same order) and every ``draft_ids``.
    Largest group first; equal sizes, the most recent first.
    """
    questions = [
        analysed
        for record in records
        if record.get("outcome") in GAP_OUTCOMES
        for analysed in [_analyse(record)]
        if analysed is not None
    ]
    questions.sort(
        key=lambda q: (str(q.record.get("decided_at") or ""), str(q.record.get("draft_id")))
    )
    found: list[dict[str, Any]] = []
    for members in _cluster(questions, threshold):
        group = [questions[i] for i in members]
        centroid: dict[str, float] = {}
        for question in group:
            for stem, value in question.vector.items():
                centroid[stem] = centroid.get(stem, 0.0) + value
        typical = sorted(
            range(len(group)),
            key=lambda i: (-sum(v * centroid[s] for s, v in group[i].vector.items()), i),
        )
        counts = Counter(stem for question in group for stem in question.words)
        surface: dict[str, Counter[str]] = {}
        for question in group:
            for stem, word in question.words.items():
                surface.setdefault(stem, Counter())[word] += 1
        common = max(2, math.ceil(len(group) / 2))  # words at least half the members use
        shared = [s for s, n in counts.most_common() if n >= common] or [
            s for s, _ in counts.most_common()
        ]
        examples = []
        answers: list[str] = []
        for i in typical:
            record = group[i].record
            answer = _text(record.get("final_text"))
            if answer and answer.strip() and answer not in answers:
                answers.append(answer)
            examples.append(
                {
                    "question": record.get("question"),
                    "answer": answer,
                    "outcome": record.get("outcome"),
                    "draft_id": record.get("draft_id"),
                    "account_id": record.get("account_id"),
                    "conversation_id": record.get("conversation_id"),
                    "decided_at": record.get("decided_at"),
                }
            )
        outcomes = Counter(str(q.record.get("outcome")) for q in group)
        found.append(
            {
                "representative": group[typical[0]].record.get("question"),
                "count": len(group),
                "no_draft": outcomes.get(NO_DRAFT, 0),
                "replaced": outcomes.get("replaced", 0),
                "terms": [surface[s].most_common(1)[0][0] for s in shared[:5]],
                "languages": sorted({q.language for q in group}),
                "examples": examples[:max_examples],
                "answers": answers[:max_examples],
                "draft_ids": [q.record.get("draft_id") for q in group],
                "last_decided_at": max(str(q.record.get("decided_at") or "") for q in group),
            }
        )
    found.sort(key=lambda g: str(g["representative"]))
    found.sort(key=lambda g: str(g["last_decided_at"]), reverse=True)
    found.sort(key=lambda g: -int(g["count"]))
    return found


# --------------------------------------------------------------------------- the weekly export


@dataclass
class WeeklySignals:
    """Writes a week's export and its knowledge gaps to the payload bucket:
    ``signals/<YYYY-Www>.jsonl`` and ``signals/<YYYY-Www>-gaps.json``. The keys depend on the
    week only, so a re-run (or a late retry) rewrites the same two objects with what is known
    now (a CSAT that came in since, an answer to a gap)."""

    store: ConversationStore
    drafts: DraftStore
    s3: Any
    bucket: str
    zone: tzinfo
    zone_name: str = "UTC"
    prefix: str = SIGNALS_PREFIX

    def keys(self, week: str) -> tuple[str, str]:
        return f"{self.prefix}{week}.jsonl", f"{self.prefix}{week}-gaps.json"

    def run(self, now: float, week: str | None = None) -> dict[str, Any]:
        """Export ``week`` (default: the last full week before ``now``). The answer holds
        counts and keys, never customer text."""
        label = week or previous_week(datetime.fromtimestamp(now, UTC), self.zone)
        since, until = week_window(label, self.zone)
        lines = signal_records(self.store, self.drafts, since, until, self.zone)
        gaps = knowledge_gaps(lines)
        lines_key, gaps_key = self.keys(label)
        self.s3.put_object(
            Bucket=self.bucket,
            Key=lines_key,
            Body=to_jsonl(lines),
            ContentType="application/x-ndjson; charset=utf-8",
        )
        document = {
            "week": label,
            "since": since.isoformat(),
            "until": until.isoformat(),
            "timezone": self.zone_name,
            "threshold": GAP_THRESHOLD,
            "questions": sum(group["count"] for group in gaps),
            "groups": gaps,
        }
        self.s3.put_object(
            Bucket=self.bucket,
            Key=gaps_key,
            Body=json.dumps(document, ensure_ascii=False, indent=1).encode(),
            ContentType="application/json; charset=utf-8",
        )
        outcomes = Counter(line["outcome"] for line in lines)
        answer = {
            "week": label,
            "since": iso(since.timestamp()),
            "until": iso(until.timestamp()),
            "lines": len(lines),
            "outcomes": dict(sorted(outcomes.items())),
            "gap_questions": document["questions"],
            "gap_groups": len(gaps),
            "keys": [lines_key, gaps_key],
        }
        logger.info("signals exported", extra=answer)
        return answer
