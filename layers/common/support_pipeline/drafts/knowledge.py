"""The ``knowledge`` drafter: ranked retrieval over a knowledge base of Markdown articles.

No external service: the articles ship with the deploy (``support_pipeline/knowledge/{en,es}``)
or live under an S3 prefix named in the policy. They are parsed into passages (``##`` sections,
long sections cut at paragraphs) and indexed once per process, per knowledge-base location.

Ranking is BM25 as SQLite FTS5 computes it (``bm25()``, title column weighted
:data:`TITLE_WEIGHT` times the body). Text is normalised by this module, not by FTS5, so that
Spanish and English both stem properly: casefold, accent folding (NFKD, combining marks dropped),
tokens of letters and digits, the language's stopwords and question-frame words removed, numbers
and one-letter tokens dropped, then the language's Snowball stemmer. FTS5 stores those stems
(space-separated) and only splits them. Where the interpreter's SQLite lacks FTS5 (some Lambda
builds), a pure-Python BM25 over the same tokens computes FTS5's formula exactly (same IDF, same
length normalisation, same column weights, same tie order) and so returns the same ranking.
FTS5's IDF is smoothed for small knowledge bases (:data:`BACKGROUND_MIN_ROWS`).

Each language gets its own index, so IDF and average passage length are per language. The
customer's language comes from the context when Chatwoot knows it, else from the question
(:func:`detect_language`); that language's articles are searched first, the others only when it
has no match at all (and then the draft is in the language of the passages found).

Confidence (0..1), for the top passage ``p`` and the query's distinct stems ``q``::

    strength  = bm25(p, q) / bm25(self, q)
    coverage  = sum(idf(t) for t in q if t occurs in the draft's passages) / sum(idf(t) for t in q)
    confidence = strength ** 0.5 * coverage ** 2

``bm25(self, q)`` scores the query against a passage made of the query itself (its stems as the
title and as the body), with the same corpus statistics: the best a passage of that size can do,
so ``strength`` says how strongly the best passage matches compared with a perfect match (capped
at 1). ``coverage`` says how much of what the customer asked about the draft talks about, each
stem weighted by its IDF; a stem no article uses counts with the IDF of an unseen term (the
highest), so an off-topic question that shares one word with an article stays low. The square
root lifts passages that mention every asked term once in the body (strength around 0.4-0.5);
the square on coverage makes a missing half of the question cost three quarters of the
confidence. On the example knowledge base, on-topic questions score 0.68-0.98 and off-topic
ones 0-0.12 (docs/drafters.md lists them); a question naming something no article mentions
("envíos a Barcelona") drops to about 0.2, since the articles cannot say whether it matters.

Customer text never goes to logs: this module logs counts, timings and article paths only.
Importing it is cheap (standard library only); the stemmer, S3 and error classes are imported on
first use.
"""

from __future__ import annotations

import logging
import math
import re
import sqlite3
import threading
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from support_pipeline.drafts.base import DraftContext, DraftResult, KnowledgeSettings, Source

logger = logging.getLogger(__name__)

Backend = Literal["auto", "fts5", "python"]

TITLE_WEIGHT = 3.0  # bm25() weight of the title column (article title + section heading)
BODY_WEIGHT = 1.0
BM25_K1 = 1.2  # FTS5's constants
BM25_B = 0.75
# FTS5's IDF, log((N - n + 0.5) / (n + 0.5)), is clamped to 1e-6 for a term in more than half
# the passages: in a small knowledge base that is every support word ("pedido", "envío",
# "order"), which then counts for nothing against an incidental rare word. So each language's
# table also holds smoothing rows that match no query, making N at least twice the passages and
# at least this many rows: the IDF never clamps (a term in every passage gets ~0) and rare words
# weigh about 2x common ones instead of 100x. In a large knowledge base this is close to
# Lucene's IDF, log(1 + (N - n + 0.5) / (n + 0.5)).
BACKGROUND_MIN_ROWS = 200
MAX_QUERY_TERMS = 32  # distinct stems taken from a (possibly long) customer turn
CANDIDATES = 20  # passages fetched per search, before de-duplication
RELATIVE_FLOOR = 0.6  # a passage joins the draft if it scores at least this share of the best
MAX_PASSAGE_CHARS = 700  # a section longer than this is cut at paragraphs when indexed
MAX_DRAFT_PASSAGE_CHARS = 600  # a passage longer than this is trimmed in the draft
MAX_ARTICLE_BYTES = 1_000_000  # larger files are skipped (and logged) when loading

_TOKEN = re.compile(r"[^\W_]+")
_HEADING2 = re.compile(r"^##(?!#)\s*(.+?)\s*#*\s*$")
_HEADING1 = re.compile(r"^#(?!#)\s*(.+?)\s*#*\s*$")
_SENTENCE_END = re.compile(r"(?<=[.!?:;])\s|\n")


class _FoldTable(dict[int, str]):
    """``str.translate`` table: each character to its NFKD form less combining marks, worked
    out the first time the character is seen (5x faster than normalising whole texts)."""

    def __missing__(self, code: int) -> str:
        decomposed = unicodedata.normalize("NFKD", chr(code))
        folded = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
        self[code] = folded
        return folded


_FOLD = _FoldTable()


def fold(text: str) -> str:
    """Casefold and drop accents: ``"Devolución"`` -> ``"devolucion"``, ``"ñ"`` -> ``"n"``."""
    text = text.casefold()
    return text if text.isascii() else text.translate(_FOLD)


def _words(text: str) -> frozenset[str]:
    return frozenset(fold(text).split())


# Function words (after folding) and the words that frame a support question without saying what
# it is about (greetings, "I want to know", "how much"). Both are dropped before stemming.
_ES_STOP = _words(
    """
    a al algo algun alguna algunas alguno algunos ante antes aqui asi aun aunque bajo bien cada
    casi como con contra cual cuales cuando de del desde donde dos el ella ellas ello ellos en
    entre era eran eres es esa esas ese eso esos esta estaba estado estais estamos estan estar
    estas este esto estos estoy estuve fue fueron fui ha habeis haber habia habian hace hacer
    hago han has hasta hay he hemos hice la las le les lo los mas me mi mia mias mio mios mis
    mucho muchos muy nada ni no nos nosotras nosotros nuestra nuestras nuestro nuestros o os
    otra otras otro otros para pero poco por porque pues que quien quienes se sea ser si sido
    sin sobre sois solo somos son soy su sus suya suyo tal tambien tan tanto te tenemos tener
    tengo tenia tiene tienen tienes ti toda todas todo todos tu tus tuya tuyo un una unas uno
    unos usted ustedes vosotras vosotros vuestra vuestro y ya yo
    hola buenas buenos dia dias tarde tardes noche noches gracias favor saludos saludo quiero
    queria quisiera querria gustaria saber preguntar pregunta pregunto consulta consultar
    necesito necesitaria puedo puede pueden podeis podemos podria podrian podrias ayuda ayudar
    ayudame ayudarme cuanto cuanta cuantos cuantas decir dime digan informacion info vale ok
    oye mira alguien teneis tenes funciona funcionan funcionar todavia aun ayer hoy semana
    pasada pasado
    """
)
_EN_STOP = _words(
    """
    a about above after again all am an and any are as at be been before being below between
    both but by did do does doing don down during each few for from further had has have having
    he her here hers him his how i if in into is it its itself just me more most my myself no
    nor not now of off on once only or other our ours out over own same she should so some
    such than that the their theirs them then there these they this those through to too under
    until up very was we were what when where which while who whom why will with would you your
    yours can could may might must shall am im ive id youre isnt dont doesnt didnt cant wont
    hello hi hey dear thanks thank please want wanted like know ask asking question need needed
    help tell much many long get got let lets anyone someone info information ok okay yet
    still already work works yesterday today week last ago
    """
)


@dataclass(frozen=True)
class Language:
    """What the drafter knows of a language: stemming, stopwords and its fixed phrases."""

    code: str
    snowball: str  # the snowballstemmer algorithm
    stopwords: frozenset[str]
    greeting: str
    closing: str
    # Drop the last letter of stems longer than five: Spanish nouns in -ción of verbs in -ver
    # keep a one-letter difference in their Snowball stems (devolv-er / devolu-ción,
    # resolv-er / resolu-ción); on the example knowledge base this merges only that pair.
    trim_stems: bool = False


LANGUAGES: dict[str, Language] = {
    "es": Language(
        code="es",
        snowball="spanish",
        stopwords=_ES_STOP,
        greeting="¡Hola! Gracias por escribirnos.",
        closing="Si necesitas algo más, responde a este mensaje y te ayudamos.",
        trim_stems=True,
    ),
    "en": Language(
        code="en",
        snowball="english",
        stopwords=_EN_STOP,
        greeting="Hi, thanks for getting in touch.",
        closing="If there is anything else we can help with, just reply to this message.",
    ),
}

# Words that tell one language from the other: each language's stopwords less the shared ones.
_ES_ONLY = _ES_STOP - _EN_STOP
_EN_ONLY = _EN_STOP - _ES_STOP
_ES_MARKS = frozenset("¿¡ñáéíóúü")


def detect_language(text: str, default: str = "es") -> str:
    """``"es"`` or ``"en"`` for a customer's message, ``default`` when it cannot tell.

    Counts the words that only one of the two languages uses as function words (articles,
    prepositions, pronouns, auxiliaries, greetings), plus two points for Spanish-only marks
    (¿ ¡ ñ and accented vowels). Support messages are short but are made of exactly these words
    ("hola, ¿dónde está mi pedido?", "hi, where is my order?"), which is why this small counter
    is enough for the two languages the knowledge base serves; a statistical detector would
    need a model file for no better result on two languages. A tie (no such word at all, or as
    many of each) gives ``default``.
    """
    tokens = _TOKEN.findall(fold(text))
    spanish = sum(token in _ES_ONLY for token in tokens)
    english = sum(token in _EN_ONLY for token in tokens)
    if any(ch in _ES_MARKS for ch in text.casefold()):
        spanish += 2
    if spanish > english:
        return "es"
    if english > spanish:
        return "en"
    return default


def normalise_language(code: str | None) -> str | None:
    """``"es-ES"``, ``"es_MX"``, ``"ES"`` -> ``"es"``; None or an unsupported language -> None."""
    if not code:
        return None
    primary = code.strip().replace("_", "-").split("-", 1)[0].casefold()
    return primary if primary in LANGUAGES else None


class Analyzer:
    """Text -> stems for one language. Stems are memoised: a vocabulary is small."""

    def __init__(self, language: Language) -> None:
        from snowballstemmer import stemmer  # imported on first use: ~20 ms

        self.language = language
        self._stem = stemmer(language.snowball).stemWord
        self._memo: dict[str, str] = {}
        self._trim = language.trim_stems

    def stems(self, text: str) -> list[str]:
        stop = self.language.stopwords
        out = []
        memo = self._memo
        for token in _TOKEN.findall(fold(text)):
            if len(token) < 2 or token.isdigit() or token in stop:
                continue
            stem = memo.get(token)
            if stem is None:
                stem = fold(self._stem(token))
                if self._trim and len(stem) > 5:
                    stem = stem[:-1]
                memo[token] = stem
            out.append(stem)
        return out


_ANALYZERS: dict[str, Analyzer] = {}


def analyzer(code: str) -> Analyzer:
    """The process-wide analyzer of a language (its stem memo is shared by every index)."""
    found = _ANALYZERS.get(code)
    if found is None:
        found = _ANALYZERS[code] = Analyzer(LANGUAGES[code])
    return found


# --------------------------------------------------------------------------- knowledge base


@dataclass(frozen=True)
class Article:
    """One Markdown article: where it came from, its title, language and body (no title line)."""

    ref: str  # path relative to the knowledge base, or the s3:// URI of the object
    title: str
    language: str
    body: str


@dataclass(frozen=True)
class Passage:
    """A searchable piece of an article: one ``##`` section, or part of a long one."""

    article: Article
    heading: str  # the ``##`` heading; "" for the text before the first one
    text: str  # Markdown as written in the article, without the heading line


def _front_matter(text: str) -> tuple[dict[str, str], str]:
    """Flat ``key: value`` front matter between ``---`` lines, and the rest of the text."""
    if not text.startswith("---"):
        return {}, text
    lines = text.splitlines()
    if lines[0].strip() != "---":
        return {}, text
    for end in range(1, len(lines)):
        if lines[end].strip() in ("---", "..."):
            meta = {}
            for line in lines[1:end]:
                key, sep, value = line.partition(":")
                if sep and key.strip() and not key.startswith((" ", "#")):
                    meta[key.strip().casefold()] = value.strip().strip("\"'")
            return meta, "\n".join(lines[end + 1 :])
    return {}, text


def parse_article(ref: str, text: str, language: str | None = None) -> Article | None:
    """An article from Markdown, or None (logged) when it has no usable language.

    Title: front matter ``title:``, else the first ``# `` heading, else the file name. Language:
    front matter ``lang:``, else ``language`` (the folder name ``en/`` or ``es/``), else
    detected from the text.
    """
    meta, body = _front_matter(text.lstrip("\ufeff"))
    title = meta.get("title", "")
    lines = body.splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        match = _HEADING1.match(line)
        if match:
            title = title or match.group(1)
            lines = lines[:i] + lines[i + 1 :]
        break
    if not title:
        title = PurePosixPath(ref).stem.replace("-", " ").replace("_", " ").strip().capitalize()
    body = "\n".join(lines).strip()
    lang = normalise_language(meta.get("lang") or meta.get("language") or language)
    if (meta.get("lang") or meta.get("language")) and lang is None:
        logger.warning("knowledge article skipped: unsupported lang", extra={"article": ref})
        return None
    if lang is None:
        lang = detect_language(f"{title}\n{body}", default="en")
    return Article(ref=ref, title=title, language=lang, body=body)


def _chunks(text: str) -> list[str]:
    """A section as one passage, or cut at blank lines into passages of about
    :data:`MAX_PASSAGE_CHARS` when longer."""
    text = text.strip()
    if len(text) <= MAX_PASSAGE_CHARS:
        return [text] if text else []
    chunks: list[str] = []
    current = ""
    for paragraph in re.split(r"\n\s*\n", text):
        paragraph = paragraph.strip()
        if not paragraph:
            continue
        if current and len(current) + len(paragraph) + 2 > MAX_PASSAGE_CHARS:
            chunks.append(current)
            current = paragraph
        else:
            current = f"{current}\n\n{paragraph}" if current else paragraph
    if current:
        chunks.append(current)
    return chunks


def split_passages(article: Article) -> list[Passage]:
    """Passages of an article: the text before the first ``##`` and each ``##`` section,
    long ones cut at paragraphs."""
    sections: list[tuple[str, list[str]]] = [("", [])]
    fence = False
    for line in article.body.splitlines():
        if line.lstrip().startswith("```"):
            fence = not fence
        match = None if fence else _HEADING2.match(line)
        if match:
            sections.append((match.group(1), []))
        else:
            sections[-1][1].append(line)
    passages = []
    for heading, lines in sections:
        for chunk in _chunks("\n".join(lines)):
            passages.append(Passage(article=article, heading=heading, text=chunk))
    return passages


def _language_from_path(ref: str) -> str | None:
    """The nearest folder of ``ref`` named like a supported language (``es/``, ``en/``)."""
    for part in reversed(PurePosixPath(ref).parts[:-1]):
        if part.casefold() in LANGUAGES:
            return part.casefold()
    return None


class KnowledgeBase:
    """Articles from a folder, an S3 prefix, or (path, text) pairs."""

    def __init__(self, articles: Iterable[Article], location: str = "") -> None:
        self.articles: tuple[Article, ...] = tuple(articles)
        self.location = location

    @classmethod
    def from_texts(
        cls, items: Iterable[tuple[str, str]], location: str = "<texts>"
    ) -> KnowledgeBase:
        """Articles from ``(path, markdown)`` pairs; the path gives the folder language."""
        articles = []
        for ref, text in items:
            article = parse_article(ref, text, _language_from_path(ref))
            if article is not None:
                articles.append(article)
        return cls(articles, location)

    @classmethod
    def from_folder(cls, folder: str | Path) -> KnowledgeBase:
        """Every ``*.md`` under ``folder`` (sorted, so the index is the same on every build)."""
        root = Path(folder)
        items = []
        for path in sorted(root.rglob("*.md")):
            if not path.is_file():
                continue
            if path.stat().st_size > MAX_ARTICLE_BYTES:
                logger.warning("knowledge article too large, skipped", extra={"article": str(path)})
                continue
            text = path.read_bytes().decode("utf-8", errors="replace")
            items.append((path.relative_to(root).as_posix(), text))
        return cls.from_texts(items, location=str(root))

    @classmethod
    def from_s3(cls, uri: str, s3: Any) -> KnowledgeBase:
        """Every ``.md`` object under ``s3://bucket/prefix/``, read with the client ``s3``.

        Raises TransientError when S3 may answer later (throttling, 5xx, timeouts) and
        PermanentError when it never will (no such bucket, access denied).
        """
        from botocore.exceptions import BotoCoreError, ClientError

        from support_pipeline.processing.errors import PermanentError, TransientError, classify

        bucket, prefix = parse_s3_uri(uri)
        items = []
        try:
            pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            keys = [
                (obj["Key"], obj.get("Size", 0))
                for page in pages
                for obj in page.get("Contents", [])
                if obj["Key"].casefold().endswith(".md")
            ]
            for key, size in sorted(keys):
                if size > MAX_ARTICLE_BYTES:
                    logger.warning(
                        "knowledge article too large, skipped",
                        extra={"article": f"s3://{bucket}/{key}"},
                    )
                    continue
                body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                relative = key[len(prefix) :].lstrip("/")
                text = body.decode("utf-8", errors="replace")
                items.append((relative, f"s3://{bucket}/{key}", text))
        except (ClientError, BotoCoreError) as exc:
            failure = classify(exc)
            code = (
                exc.response.get("Error", {}).get("Code", "")
                if isinstance(exc, ClientError)
                else ""
            )
            reason = f"knowledge base {uri} unreadable: {failure.reason}"
            if code in ("NoSuchBucket", "AccessDenied", "AllAccessDisabled") or failure.permanent:
                raise PermanentError("knowledge_unavailable", reason) from exc
            raise TransientError("knowledge_unavailable", reason) from exc
        articles = []
        for relative, ref, text in items:
            article = parse_article(ref, text, _language_from_path(relative))
            if article is not None:
                articles.append(article)
        return cls(articles, location=uri)

    def passages(self) -> list[Passage]:
        return [p for article in self.articles for p in split_passages(article)]


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/prefix/`` -> (bucket, prefix with a trailing slash, or "" for the bucket)."""
    if not uri.startswith("s3://"):
        raise ValueError("knowledge S3 location must look like s3://bucket/prefix/")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError("knowledge S3 location must name a bucket")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


# --------------------------------------------------------------------------- ranking


def fts5_available() -> bool:
    """Whether this interpreter's SQLite has FTS5 (some Lambda python builds lack it)."""
    global _FTS5
    if _FTS5 is None:
        try:
            conn = sqlite3.connect(":memory:")
            try:
                conn.execute("CREATE VIRTUAL TABLE probe USING fts5(body)")
                _FTS5 = True
            finally:
                conn.close()
        except sqlite3.Error:
            _FTS5 = False
    return _FTS5


_FTS5: bool | None = None


@dataclass(frozen=True)
class Hit:
    """A ranked passage: its BM25 score (higher is better) and the query stems it contains."""

    passage: Passage
    score: float
    matched: frozenset[str]


class LanguageIndex:
    """BM25 over one language's passages: FTS5 when available, else the same formula in Python.

    Corpus statistics (rows, document frequencies, average length) are kept in Python for both
    backends: the fallback ranks with them and the confidence needs them either way.
    """

    def __init__(self, code: str, passages: Sequence[Passage], backend: str) -> None:
        self.code = code
        self.passages = list(passages)
        self.analyzer = analyzer(code)
        self.backend = backend
        self._rows: list[tuple[Counter[str], Counter[str], int]] = []
        self._terms: list[frozenset[str]] = []
        self.df: Counter[str] = Counter()
        postings: dict[str, list[int]] = {}
        for rowid, passage in enumerate(self.passages):
            title = self.analyzer.stems(f"{passage.article.title}\n{passage.heading}".strip())
            body = self.analyzer.stems(passage.text)
            terms = frozenset(title) | frozenset(body)
            self._rows.append((Counter(title), Counter(body), len(title) + len(body)))
            self._terms.append(terms)
            self.df.update(terms)
            for term in terms:
                postings.setdefault(term, []).append(rowid)
        self._postings = postings
        self.n = len(self.passages)
        total = sum(row[2] for row in self._rows)
        # The smoothing rows (see BACKGROUND_MIN_ROWS): as long as an average passage, made of a
        # token no query has (the analyzer drops numbers), so they change N and nothing else.
        self.padding = max(self.n, BACKGROUND_MIN_ROWS - self.n) if self.n else 0
        self._pad_length = max(1, round(total / self.n)) if self.n else 1
        self.rows = self.n + self.padding
        self.avgdl = (total + self.padding * self._pad_length) / self.rows if self.rows else 1.0
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        if backend == "fts5" and self.n:
            self._db = sqlite3.connect(":memory:", check_same_thread=False)
            self._db.execute(
                "CREATE VIRTUAL TABLE passages USING fts5("
                "title, body, tokenize = 'unicode61 remove_diacritics 0')"
            )
            self._db.executemany(
                "INSERT INTO passages(rowid, title, body) VALUES (?, ?, ?)",
                (
                    (rowid, " ".join(title.elements()), " ".join(body.elements()))
                    for rowid, (title, body, _) in enumerate(self._rows)
                ),
            )
            pad = " ".join(["0"] * self._pad_length)
            self._db.executemany(
                "INSERT INTO passages(rowid, title, body) VALUES (?, '', ?)",
                ((self.n + i, pad) for i in range(self.padding)),
            )
            self._db.commit()
            self._rows = []  # the term counts live in FTS5 now; only the fallback needs them
            self._postings = {}

    def idf(self, term: str) -> float:
        """FTS5's IDF: log((N - n + 0.5) / (n + 0.5)), at least 1e-6."""
        hits = self.df.get(term, 0)
        value = math.log((self.rows - hits + 0.5) / (hits + 0.5))
        return value if value > 0 else 1e-6

    def _bm25(self, terms: Sequence[str], freqs: Callable[[str], float], length: int) -> float:
        norm = BM25_K1 * (1 - BM25_B + BM25_B * length / self.avgdl)
        score = 0.0
        for term in terms:
            f = freqs(term)
            if f:
                score += self.idf(term) * f * (BM25_K1 + 1) / (f + norm)
        return score

    def self_score(self, terms: Sequence[str]) -> float:
        """BM25 of the query against a passage made of itself (title and body)."""
        return self._bm25(terms, lambda _: TITLE_WEIGHT + BODY_WEIGHT, 2 * len(terms))

    def search(self, terms: Sequence[str], limit: int = CANDIDATES) -> list[Hit]:
        """The best ``limit`` passages for distinct stems ``terms``, best first (ties: the
        passage that comes first in the knowledge base)."""
        if not terms or not self.n:
            return []
        if self._db is not None:
            ranked = self._search_fts5(terms, limit)
        else:
            ranked = self._search_python(terms, limit)
        query = frozenset(terms)
        return [Hit(self.passages[r], score, self._terms[r] & query) for r, score in ranked]

    def _search_fts5(self, terms: Sequence[str], limit: int) -> list[tuple[int, float]]:
        match = " OR ".join(f'"{term}"' for term in terms)  # stems are letters and digits only
        sql = (
            "SELECT rowid, round(bm25(passages, ?, ?), 9) AS score "
            "FROM passages WHERE passages MATCH ? ORDER BY score, rowid LIMIT ?"
        )
        params = (TITLE_WEIGHT, BODY_WEIGHT, match, limit)
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()  # type: ignore[union-attr]
        return [(int(rowid), -float(score)) for rowid, score in rows]

    def _search_python(self, terms: Sequence[str], limit: int) -> list[tuple[int, float]]:
        candidates = {rowid for term in terms for rowid in self._postings.get(term, ())}
        scored = []
        for rowid in candidates:
            title, body, length = self._rows[rowid]

            def freqs(term: str, title: Counter[str] = title, body: Counter[str] = body) -> float:
                return TITLE_WEIGHT * title[term] + BODY_WEIGHT * body[term]

            scored.append((round(self._bm25(terms, freqs, length), 9), rowid))
        scored.sort(key=lambda item: (-item[0], item[1]))
        return [(rowid, score) for score, rowid in scored[:limit]]


class KnowledgeIndex:
    """Every language's index of one knowledge base."""

    def __init__(self, base: KnowledgeBase, backend: Backend = "auto") -> None:
        if backend == "auto":
            backend = "fts5" if fts5_available() else "python"
        elif backend == "fts5" and not fts5_available():
            raise RuntimeError("this SQLite has no FTS5")
        self.backend = backend
        self.location = base.location
        self.articles = len(base.articles)
        by_language: dict[str, list[Passage]] = {}
        for passage in base.passages():
            by_language.setdefault(passage.article.language, []).append(passage)
        self.languages = {
            code: LanguageIndex(code, ps, backend) for code, ps in by_language.items()
        }
        self.passages = sum(len(ps) for ps in by_language.values())

    def default_language(self) -> str:
        """The language with the most passages; ties (and an empty knowledge base) go to the
        first of :data:`LANGUAGES`."""
        order = list(LANGUAGES)
        return max(order, key=lambda code: (self._size(code), -order.index(code)))

    def _size(self, code: str) -> int:
        found = self.languages.get(code)
        return len(found.passages) if found else 0


# --------------------------------------------------------------------------- per-process cache


@dataclass(frozen=True)
class CacheInfo:
    builds: int  # indexes built by this process
    entries: int  # knowledge-base locations held


_CACHE: dict[tuple[str, str], KnowledgeIndex] = {}
_CACHE_LOCK = threading.Lock()
_BUILDS = 0


def resolve_location(settings: KnowledgeSettings) -> str:
    """The S3 URI, or the absolute folder (``path`` relative to the support_pipeline package)."""
    if settings.s3_uri:
        parse_s3_uri(settings.s3_uri)
        return settings.s3_uri
    path = Path(settings.path)
    if not path.is_absolute():
        path = Path(__file__).resolve().parent.parent / path
    return str(path.resolve())


def load_index(
    settings: KnowledgeSettings, *, s3: Any = None, backend: Backend = "auto"
) -> KnowledgeIndex:
    """The process's index of the knowledge base ``settings`` names, built on first use.

    Cached by location and backend, so every drafter of the process shares one index; a failed
    build (S3 unreadable) is not cached and is tried again on the next draft.
    """
    global _BUILDS
    location = resolve_location(settings)
    key = (location, backend)
    with _CACHE_LOCK:
        found = _CACHE.get(key)
        if found is not None:
            return found
        started = time.perf_counter()
        if settings.s3_uri:
            if s3 is None:
                from support_pipeline.aws import PROCESSOR_CONFIG, client

                s3 = client("s3", PROCESSOR_CONFIG)
            base = KnowledgeBase.from_s3(location, s3)
        else:
            base = KnowledgeBase.from_folder(location)
        index = KnowledgeIndex(base, backend)
        _CACHE[key] = index
        _BUILDS += 1
        logger.info(
            "knowledge index built",
            extra={
                "location": location,
                "articles": index.articles,
                "passages": index.passages,
                "backend": index.backend,
                "build_ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
        return index


def cache_info() -> CacheInfo:
    return CacheInfo(builds=_BUILDS, entries=len(_CACHE))


def clear_cache() -> None:
    """Forget every index, the stem memos and the FTS5 probe, as in a fresh process (tests and
    the bench; a Lambda process never needs it)."""
    global _BUILDS, _FTS5
    with _CACHE_LOCK:
        _CACHE.clear()
        _ANALYZERS.clear()
        _BUILDS = 0
        _FTS5 = None


# --------------------------------------------------------------------------- the drafter


_BLOCK_START = re.compile(r"^\s*(?:[-*+]\s|\d+[.)]\s|\||>|#)")


def _unwrap(text: str) -> str:
    """Markdown as a chat shows it: hard-wrapped lines of a paragraph or list item joined
    (Chatwoot keeps single line breaks); tables, list items and blank lines kept."""
    out: list[str] = []
    for line in text.strip().splitlines():
        stripped = line.strip()
        joinable = out and out[-1] and not out[-1].lstrip().startswith("|")
        if stripped and joinable and not _BLOCK_START.match(line):
            out[-1] = f"{out[-1]} {stripped}"
        else:
            out.append(line.rstrip() if stripped else "")
    return "\n".join(out)


def _trim(text: str, limit: int = MAX_DRAFT_PASSAGE_CHARS) -> str:
    """``text`` cut to about ``limit`` characters at a sentence or line end, marked with …"""
    text = _unwrap(text)
    if len(text) <= limit:
        return text
    cut = 0
    for match in _SENTENCE_END.finditer(text, 0, limit):
        cut = match.start()
    if cut < limit // 3:
        cut = text.rfind(" ", 0, limit)
    if cut <= 0:
        cut = limit
    return text[:cut].rstrip() + " …"


def _squash(text: str) -> str:
    return " ".join(text.split())


class KnowledgeDrafter:
    """Drafts a reply from the knowledge base's best passages in the customer's language."""

    name = "knowledge"

    def __init__(
        self,
        settings: KnowledgeSettings | None = None,
        *,
        s3: Any = None,
        backend: Backend = "auto",
        index: KnowledgeIndex | None = None,
        default_language: str | None = None,
    ) -> None:
        """``s3``: the S3 client for an ``s3_uri`` knowledge base (one is created if None).
        ``backend``: "auto" (FTS5 when this SQLite has it), "fts5" or "python".
        ``index``: an index built elsewhere (the bench); else the process cache's.
        ``default_language``: when neither the context nor the question tells the language;
        None: the knowledge base's main language."""
        self.settings = settings or KnowledgeSettings()
        self._s3 = s3
        self._backend: Backend = backend
        self._index = index
        self._default_language = normalise_language(default_language)

    @property
    def index(self) -> KnowledgeIndex:
        if self._index is None:
            self._index = load_index(self.settings, s3=self._s3, backend=self._backend)
        return self._index

    def retrieve(self, context: DraftContext, max_passages: int) -> list[tuple[Source, str]]:
        """The best passages for ``context`` (source, text): what the ``bedrock`` drafter
        gives its model as context."""
        found = self._search(context)
        if found is None:
            return []
        _, hits = found
        passages: list[tuple[Source, str]] = []
        for hit in hits[: max(0, max_passages)]:
            article = hit.passage.article
            passages.append(
                (Source(title=article.title, ref=article.ref), _squash(hit.passage.text))
            )
        return passages

    def _search(self, context: DraftContext) -> tuple[LanguageIndex, list[Hit]] | None:
        index = self.index
        language = normalise_language(context.language) or detect_language(
            context.question, default=self._default_language or index.default_language()
        )
        order = [language, *sorted(code for code in index.languages if code != language)]
        for code in order:
            lang_index = index.languages.get(code)
            if lang_index is None:
                continue
            terms = list(dict.fromkeys(lang_index.analyzer.stems(context.question)))
            hits = lang_index.search(terms[:MAX_QUERY_TERMS])
            if hits:
                return lang_index, hits
        return None

    def draft(self, context: DraftContext) -> DraftResult:
        index = self.index
        language = normalise_language(context.language) or detect_language(
            context.question, default=self._default_language or index.default_language()
        )
        order = [language, *sorted(code for code in index.languages if code != language)]
        for code in order:
            lang_index = index.languages.get(code)
            if lang_index is None:
                continue
            terms = list(dict.fromkeys(lang_index.analyzer.stems(context.question)))
            terms = terms[:MAX_QUERY_TERMS]
            hits = lang_index.search(terms)
            if hits:
                return self._compose(lang_index, terms, hits)
        return DraftResult(drafter=self.name, text=None, confidence=0.0, language=language)

    def _compose(self, index: LanguageIndex, terms: list[str], hits: list[Hit]) -> DraftResult:
        best = hits[0].score
        chosen: list[Hit] = []
        seen: set[str] = set()  # the same text in two articles (a shared paragraph) once
        for hit in hits:
            if len(chosen) >= max(1, self.settings.max_passages):
                break
            if hit.score < RELATIVE_FLOOR * best:
                break
            text = _squash(hit.passage.text)
            if text in seen:
                continue
            seen.add(text)
            chosen.append(hit)
        confidence = confidence_of(index, terms, chosen)
        sources: list[Source] = []
        for hit in chosen:
            source = Source(title=hit.passage.article.title, ref=hit.passage.article.ref)
            if source not in sources:
                sources.append(source)
        phrases = LANGUAGES[index.code]
        parts = [phrases.greeting, *(_trim(hit.passage.text) for hit in chosen), phrases.closing]
        return DraftResult(
            drafter=self.name,
            text="\n\n".join(parts),
            confidence=confidence,
            language=index.code,
            sources=tuple(sources),
        )


def confidence_of(index: LanguageIndex, terms: Sequence[str], chosen: Sequence[Hit]) -> float:
    """The module docstring's formula: ``sqrt(strength) * coverage ** 2``, in 0..1."""
    if not terms or not chosen:
        return 0.0
    perfect = index.self_score(terms)
    strength = min(1.0, chosen[0].score / perfect) if perfect > 0 else 0.0
    covered = frozenset().union(*(hit.matched for hit in chosen))
    total = sum(index.idf(term) for term in terms)
    coverage = sum(index.idf(term) for term in terms if term in covered) / total
    return round(max(0.0, min(1.0, math.sqrt(strength) * coverage**2)), 3)
