"""make mutate: cosmic-ray over the modules that guard customers and data (docs/testing.md).

Each target is mutated in its own copy of the working tree under .mutation/<target>/tree (the
checkout itself is never touched, so tests run next to it see the real code), restricted to the
functions named below, and tested with its own short pytest command. Prints the kill rate per
target and writes .mutation/<target>/survivors.txt (each surviving mutant's diff) and
.mutation/summary.md.

    python scripts/mutate.py                    # every target
    python scripts/mutate.py approval ledger    # some of them
"""

from __future__ import annotations

import argparse
import ast
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / ".mutation"
PKG = "layers/common/support_pipeline"
PYTEST = "-m pytest -x -q -n 0 -p no:cacheprovider"


@dataclass(frozen=True)
class Target:
    name: str
    # (module path, function names or () for the whole module)
    modules: tuple[tuple[str, tuple[str, ...]], ...]
    tests: tuple[str, ...]


TARGETS = (
    Target(
        "approval",
        (
            (f"{PKG}/drafts/store.py", ("record_approval", "decide", "approval")),
            (
                f"{PKG}/drafts/service.py",
                ("send", "agent_note", "_seen_before", "_answered_before_sending"),
            ),
            (f"{PKG}/chatwoot/client.py", ("create_public_reply", "reply_or_answer")),
        ),
        (
            "tests/integration/test_approval_gate.py",
            "tests/integration/test_drafts.py",
            "tests/integration/test_pause.py",
            "tests/integration/test_signals.py",
            "tests/integration/test_mutation_kills.py",
        ),
    ),
    Target(
        "ledger",
        ((f"{PKG}/actions.py", ()),),
        (
            "tests/integration/test_exactly_once.py",
            "tests/integration/test_drafts.py",
            "tests/integration/test_approval_gate.py",
            "tests/integration/test_mutation_kills.py",
        ),
    ),
    Target(
        "commands",
        ((f"{PKG}/drafts/commands.py", ()),),
        ("tests/unit/test_commands.py", "tests/unit/test_mutation_kills.py"),
    ),
    Target(
        "signature",
        ((f"{PKG}/chatwoot/signature.py", ()),),
        (
            "tests/unit/test_signature.py",
            "tests/integration/test_ingest.py",
            "tests/unit/test_mutation_kills.py",
        ),
    ),
    Target(
        "dedupe",
        ((f"{PKG}/chatwoot/payload.py", ("dedupe_key", "_semantic_key", "unsigned_key")),),
        (
            "tests/unit/test_payload.py",
            "tests/integration/test_processing.py",
            "tests/unit/test_mutation_kills.py",
        ),
    ),
)


def copy_tree(dest: Path) -> None:
    """The working tree as git sees it (tracked and untracked, not ignored), fresh."""
    if dest.exists():
        shutil.rmtree(dest)
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for raw in files:
        if not raw:
            continue
        rel = raw.decode()
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def line_ranges(path: Path, names: tuple[str, ...]) -> list[tuple[int, int]]:
    """The lines of every function (or method) named in `names`, decorators included."""
    tree = ast.parse(path.read_text())
    ranges = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in names:
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            ranges.append((first, node.end_lineno or node.lineno))
    missing = set(names) - {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    if missing:
        sys.exit(f"{path}: no function named {sorted(missing)}")
    return ranges


def annotations(path: Path) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Where the module's annotations are: never evaluated (every target module has
    `from __future__ import annotations`), so a mutant there is equivalent by construction."""
    spans = []
    for node in ast.walk(ast.parse(path.read_text())):
        found = []
        if isinstance(node, ast.arg | ast.AnnAssign) and node.annotation is not None:
            found.append(node.annotation)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns is not None:
            found.append(node.returns)
        for a in found:
            end = (a.end_lineno or a.lineno, a.end_col_offset or 0)
            spans.append(((a.lineno, a.col_offset), end))
    return spans


# One mutant per site and operator: the sharpest replacement (a boundary for <, the opposite
# for ==), not all eleven arithmetic swaps or eight comparison swaps of the same token.
PREFERRED = {
    "Eq": "NotEq",
    "NotEq": "Eq",
    "Lt": "LtE",
    "LtE": "Lt",
    "Gt": "GtE",
    "GtE": "Gt",
    "Is": "IsNot",
    "IsNot": "Is",
    "In": "NotIn",
    "NotIn": "In",
    "Add": "Sub",
    "Sub": "Add",
    "Mul": "Div",
    "Div": "Mul",
    "FloorDiv": "Mul",
    "Mod": "Add",
    "Pow": "Mul",
    "BitOr": "BitAnd",
    "BitAnd": "BitOr",
    "BitXor": "BitOr",
}


def select(session: Path, modules: tuple[tuple[str, tuple[str, ...]], ...], tree: Path) -> None:
    """Mark SKIPPED what is outside the named functions, in an annotation, or a redundant swap."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    ranges = {m: line_ranges(tree / m, names) if names else None for m, names in modules}
    notes = {m: annotations(tree / m) for m, _ in modules}
    with use_db(str(session), WorkDB.Mode.open) as db:
        skip = []
        for item in db.work_items:
            m = item.mutations[0]
            module, pos = str(m.module_path), tuple(m.start_pos)
            op = str(m.operator_name).split("/")[-1]
            kind, _, swap = op.partition("_")
            old, _, new = swap.partition("_")
            if (
                (ranges[module] and not any(a <= pos[0] <= b for a, b in ranges[module]))
                or any(a <= pos < b for a, b in notes[module])
                or (
                    kind.startswith("Replace")
                    and "Operator" in kind
                    and old in PREFERRED
                    and new != PREFERRED[old]
                )
            ):
                skip.append(item.job_id)
        db.set_multiple_results(skip, WorkResult(worker_outcome=WorkerOutcome.SKIPPED))


def run(target: Target, python: str) -> dict:
    work = OUT / target.name
    tree = work / "tree"
    copy_tree(tree)
    tests = [t for t in target.tests if (tree / t).exists()]
    env = dict(os.environ)
    # the copy's code first: the editable install's finder comes after sys.path
    env["PYTHONPATH"] = os.pathsep.join([str(tree / "layers/common"), str(tree / "tools")])
    command = f"{python} {PYTEST} {' '.join(tests)}"

    started = time.monotonic()
    base = subprocess.run(
        command.replace(" -x ", " -rf ").split(), cwd=tree, env=env, capture_output=True, text=True
    )
    baseline = time.monotonic() - started
    failing = [line.split()[1] for line in base.stdout.splitlines() if line.startswith("FAILED ")]
    if base.returncode != 0 and not failing:
        print(base.stdout[-3000:], file=sys.stderr)
        sys.exit(f"{target.name}: the tests do not run before any mutation; fix them first")
    for nodeid in failing:
        # a test that fails on the unmutated tree would "kill" every mutant: leave it out, loudly
        print(f"WARNING {target.name}: fails before mutation, deselected: {nodeid}")
        command += f" --deselect {nodeid}"
    (work / "deselected.txt").write_text("".join(f"{n}\n" for n in failing))

    config = work / "cosmic-ray.toml"
    config.write_text(
        "[cosmic-ray]\n"
        f"module-path = {[m for m, _ in target.modules]!r}\n"
        f"timeout = {max(60.0, round(baseline * 3))}\n"
        "excluded-modules = []\n"
        f"test-command = {command!r}\n"
        "[cosmic-ray.distributor]\n"
        'name = "local"\n'
    )
    session = work / "session.sqlite"
    session.unlink(missing_ok=True)
    bin_dir = Path(python).parent
    subprocess.run([bin_dir / "cosmic-ray", "init", config, session], cwd=tree, env=env, check=True)
    select(session, target.modules, tree)

    subprocess.run([bin_dir / "cosmic-ray", "exec", config, session], cwd=tree, env=env, check=True)
    elapsed = time.monotonic() - started
    return summarize(target, session, elapsed)


def summarize(target: Target, session: Path, elapsed: float) -> dict:
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome

    killed = survived = pending = 0
    lines = []
    with use_db(str(session), WorkDB.Mode.open) as db:
        results = dict(db.results)
        for item in db.work_items:
            result = results.get(item.job_id)
            if result is None:
                pending += 1
                continue
            if result.worker_outcome == WorkerOutcome.SKIPPED:
                continue
            if result.test_outcome == TestOutcome.SURVIVED:
                survived += 1
                m = item.mutations[0]
                lines.append(f"## {m.module_path}:{m.start_pos[0]} {m.operator_name}\n")
                lines.append((result.diff or "") + "\n")
            else:
                killed += 1
    (session.parent / "survivors.txt").write_text("".join(lines))
    total = killed + survived
    rate = 100.0 * killed / total if total else 100.0
    return {
        "name": target.name,
        "mutants": total + pending,
        "killed": killed,
        "survived": survived,
        "pending": pending,
        "rate": rate,
        "minutes": elapsed / 60,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", choices=[t.name for t in TARGETS])
    parser.add_argument("--summary-only", action="store_true", help="report the last sessions")
    args = parser.parse_args()
    chosen = [t for t in TARGETS if not args.targets or t.name in args.targets]
    OUT.mkdir(exist_ok=True)
    rows = []
    for target in chosen:
        if args.summary_only:
            rows.append(summarize(target, OUT / target.name / "session.sqlite", 0.0))
        else:
            rows.append(run(target, sys.executable))
    table = ["| target | mutants | killed | survived | not run | kill rate | minutes |"]
    table.append("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        table.append(
            f"| {r['name']} | {r['mutants']} | {r['killed']} | {r['survived']} | {r['pending']}"
            f" | {r['rate']:.1f}% | {r['minutes']:.1f} |"
        )
    text = "\n".join(table) + "\n"
    (OUT / "summary.md").write_text(text)
    print(text)
    print("survivors: .mutation/<target>/survivors.txt")


if __name__ == "__main__":
    main()
