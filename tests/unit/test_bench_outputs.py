"""`make bench` says what it measures as it goes and leaves tracked files alone; only
`--write-docs` (`make bench-docs`) rewrites the docs page. One tiny step instead of the real
measurements."""

from __future__ import annotations

import importlib.util

import pytest

from tests.support import ROOT


@pytest.fixture
def bench(monkeypatch):
    spec = importlib.util.spec_from_file_location("bench_script", ROOT / "scripts" / "bench.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "STEPS", [("tiny", "a tiny step", lambda args: {"value": 42})])
    module.local_runs = []  # the local stack section: where it would have written, not a real run
    monkeypatch.setattr(
        module, "run_local", lambda args, into: module.local_runs.append((into, args.write_docs))
    )
    monkeypatch.setattr(
        module, "render", lambda results: f"# Benchmarks\n\ntiny {results['tiny']}\n"
    )
    return module


@pytest.fixture
def docs(bench, tmp_path):
    page = tmp_path / "benchmarks.md"
    page.write_text(
        f"# Benchmarks\n\nold numbers\n\n{bench.KEPT_MARKER}\n\n## 4. The built layer\n\nkept\n"
    )
    return page


def test_by_default_results_go_to_an_untracked_file_and_the_docs_stay_as_they_were(
    bench, docs, tmp_path, capsys
):
    before = docs.read_text()
    out = tmp_path / ".bench" / "results.md"
    assert bench.main(["--out", str(out), "--docs", str(docs)]) == 0
    assert docs.read_text() == before
    assert "tiny {'value': 42}" in out.read_text() and "## 4. The built layer" in out.read_text()
    assert out.with_suffix(".json").exists()
    err = capsys.readouterr().err
    assert "bench: [1/1] a tiny step ..." in err and "bench: [1/1] a tiny step: done in" in err
    assert f"results in {out}" in err and "left as it was (make bench-docs rewrites it)" in err
    assert bench.local_runs == [(out, False)]  # its section into the untracked results


def test_write_docs_rewrites_the_page_and_keeps_the_sections_measured_elsewhere(
    bench, docs, tmp_path, capsys
):
    out = tmp_path / "results.md"
    assert bench.main(["--out", str(out), "--docs", str(docs), "--write-docs"]) == 0
    text = docs.read_text()
    assert "old numbers" not in text and "tiny {'value': 42}" in text
    assert text.endswith("## 4. The built layer\n\nkept\n")
    assert f"wrote {docs}" in capsys.readouterr().err
    assert bench.local_runs == [(docs, True)]


def test_results_are_untracked():
    ignored = (ROOT / ".gitignore").read_text().split()
    assert ".bench/" in ignored


def test_make_bench_writes_no_docs_and_bench_docs_does():
    makefile = (ROOT / "Makefile").read_text()
    bench_recipe = makefile.split("\nbench:", 1)[1].split("\n\n", 1)[0]
    docs_recipe = makefile.split("\nbench-docs:", 1)[1].split("\n\n", 1)[0]
    assert "--write-docs" not in bench_recipe and "--write-docs" in docs_recipe


def test_the_local_stack_section_is_what_its_measurement_renders():
    """docs/benchmarks.md's "Local stack end to end" (its floor included) is bench_local's
    rendering of docs/measurements/local-stack.json, the file scripts/cost.py prices: the
    rates, CPU and the floor's verdict in the doc are the measured ones."""
    import json
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    import bench_local

    measured = json.loads(bench_local.MEASUREMENT.read_text(encoding="utf-8"))
    page = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    begin, end = page.index(bench_local.BEGIN), page.index(bench_local.END)
    assert page[begin : end + len(bench_local.END)] == bench_local.render(measured).strip(), (
        "docs/benchmarks.md's local stack section is out of date: "
        "scripts/bench.py --only local --write-docs"
    )
    assert "The floor" in page[begin:end] and "floor" in measured
