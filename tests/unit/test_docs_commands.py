"""Every ops command the docs write (`support-pipeline ...`, `.venv/bin/support-pipeline ...`,
`make dlq ARGS=...`) names subcommands and flags the CLI has, so it runs as written."""

from __future__ import annotations

import argparse
import re
import shlex

import pytest

from support_pipeline_ops.cli import build_parser
from tests.support import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs" / "runbooks").glob("*.md"))]
MAKE_VERBS = {"cli": [], "dlq": ["dlq"], "actions": ["actions"], "conversations": ["conversations"]}


def code_of(text: str) -> list[str]:
    """Each line of a fenced block, and each inline code span (joined across a line break)."""
    pieces: list[str] = []
    outside: list[str] = []
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        (pieces if fenced else outside).append(line)
    pieces += [span.replace("\n", " ") for span in re.findall(r"`([^`]+)`", "\n".join(outside))]
    return pieces


def commands_in(code: str) -> list[list[str]]:
    """The argument lists of the CLI calls in one piece of code."""
    found = []
    make = re.search(r"\bmake (cli|dlq|actions|conversations) ARGS=('[^']*'|\"[^\"]*\"|\S+)", code)
    if make:
        found.append(MAKE_VERBS[make.group(1)] + shlex.split(make.group(2).strip("'\"")))
    tokens = code.split()
    for at, token in enumerate(tokens):
        if token.split("/")[-1] != "support-pipeline":
            continue
        if at and tokens[at - 1].startswith("-"):  # `--stack support-pipeline`: a stack name
            continue
        rest = []
        for word in tokens[at + 1 :]:
            if word.startswith("#"):
                break
            rest.append(word)
        if rest and rest != ["..."]:  # `support-pipeline ...`: the program, not a command
            found.append(rest)
    return found


def documented() -> list[tuple[str, list[str]]]:
    calls = []
    for doc in DOCS:
        for code in code_of(doc.read_text()):
            calls += [(f"{doc.name}: {' '.join(c)}", c) for c in commands_in(code)]
    return calls


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def problems(words: list[str]) -> list[str]:
    """What in ``words`` the parser does not know: a subcommand or a flag."""
    found = []
    current, siblings, after_bar, named = build_parser(), {}, False, False
    for word in words:
        clean = word.strip("[]()").rstrip(",.")
        if clean in ("|", "..."):
            after_bar = after_bar or clean == "|"
            continue
        if not clean:
            continue
        choices = subcommands(current)
        if not clean.startswith("-"):
            if choices:
                if clean not in choices:
                    found.append(f"no subcommand {clean!r}")
                    break
                siblings, current, named = choices, choices[clean], True
            elif after_bar and clean in siblings:  # `dlq list | show`: another subcommand
                current = siblings[clean]
            after_bar = False
            continue
        after_bar = False
        if clean.startswith("--"):
            flag = clean.split("=", 1)[0].split("|", 1)[0]
            if flag not in current._option_string_actions:
                found.append(f"no flag {flag} on {current.prog!r}")
    if not named:
        found.append("names no subcommand")
    return found


CALLS = documented()


def test_the_docs_have_commands_to_check():
    text = " ".join(name for name, _ in CALLS)
    for verb in ("dlq list", "conversations show", "actions list", "report", "drafts list"):
        assert verb in text, verb
    assert any(name.startswith("README.md: dlq list") for name, _ in CALLS)


@pytest.mark.parametrize(("name", "words"), CALLS, ids=[name for name, _ in CALLS])
def test_each_documented_command_has_its_subcommands_and_flags(name, words):
    assert problems(words) == []


def test_the_check_catches_a_wrong_flag_and_subcommand():
    assert problems(["dlq", "list", "--jsn"]) == ["no flag --jsn on 'support-pipeline dlq list'"]
    assert problems(["dlq", "lst"]) == ["no subcommand 'lst'"]
    assert problems(["conversations", "list", "|", "show", "1", "2", "--html"]) == []
    assert problems(["conversations", "list", "|", "show", "--account"]) != []


def test_the_make_verbs_exist():
    makefile = (ROOT / "Makefile").read_text()
    for verb in MAKE_VERBS:
        assert re.search(rf"^{verb}: .*## ", makefile, re.MULTILINE), verb
