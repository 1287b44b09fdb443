"""The Lambda layer carries only what Lambda runs."""

import ast

from tests.support import ROOT

LAYER = ROOT / "layers" / "common"
DEVELOPMENT_ONLY = ("moto", "flask", "werkzeug", "support_pipeline_ops", "pytest", "responses")


def imported_modules(source):
    tree = ast.parse(source.read_text(), filename=str(source))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module


def test_no_layer_module_imports_development_tooling():
    offenders = [
        (str(source.relative_to(ROOT)), module)
        for source in (LAYER / "support_pipeline").rglob("*.py")
        for module in imported_modules(source)
        if module.split(".")[0] in DEVELOPMENT_ONLY
    ]
    assert offenders == []


def test_the_layer_holds_no_local_stack_cli_or_fake():
    package = LAYER / "support_pipeline"
    assert not (package / "local").exists()
    assert not (package / "cli.py").exists()
    assert not (package / "dlq.py").exists()


def test_the_layers_requirements_name_no_development_package():
    requirements = (LAYER / "requirements.txt").read_text().lower()
    assert all(name not in requirements for name in DEVELOPMENT_ONLY)
