"""The built artifact (`sam build` output) carries only what Lambda runs.

tests/unit/test_layer_contents.py checks the sources; this reads what `sam build` produced: the
layer's folders with their resolved dependencies, and each function's folder. Without a build it
skips, unless REQUIRE_BUILT_LAYER=1 (`make layer-check`, which builds first and sets it, so CI
never skips it). SAM_BUILD_DIR chooses another build folder.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("SAM_BUILD_DIR") or ROOT / ".aws-sam" / "build")
REQUIRED = os.environ.get("REQUIRE_BUILT_LAYER") == "1"

# Top-level modules of development tools: the test stack, linters, the local stack and its web
# framework, packaging tools. None belongs in what Lambda loads.
DEVELOPMENT_MODULES = {
    "moto",
    "flask",
    "flask_cors",
    "werkzeug",
    "support_pipeline_ops",
    "pytest",
    "_pytest",
    "xdist",
    "hypothesis",
    "responses",
    "mypy",
    "ruff",
    "bandit",
    "samcli",
    "cfnlint",
    "checkov",
    "pip",
    "setuptools",
    "wheel",
    "docker",
}
FORBIDDEN_IMPORTS = {"moto", "flask", "werkzeug"}


def built_template() -> dict:
    path = BUILD / "template.yaml"
    if not path.is_file():
        reason = f"no sam build output at {BUILD} (make layer-check builds it)"
        if REQUIRED:
            pytest.fail(reason)
        pytest.skip(reason)
    loaded: dict = yaml.safe_load(path.read_text())
    return loaded


def artifacts(kind: str, key: str) -> dict[str, Path]:
    found = {
        name: BUILD / spec["Properties"][key]
        for name, spec in built_template().get("Resources", {}).items()
        if spec.get("Type") == kind and isinstance(spec.get("Properties", {}).get(key), str)
    }
    assert found, f"the built template has no {kind}"
    return found


def layers() -> dict[str, Path]:
    return artifacts("AWS::Serverless::LayerVersion", "ContentUri")


def functions() -> dict[str, Path]:
    return artifacts("AWS::Serverless::Function", "CodeUri")


def top_level_names(folder: Path) -> set[str]:
    """Importable top-level names in a site folder, and the projects its dist-info names."""
    names = set()
    for entry in folder.iterdir():
        if entry.name.endswith((".dist-info", ".egg-info")):
            names.add(entry.name.split("-")[0].lower().replace("-", "_"))
        elif entry.suffix in {".py", ".so"} or entry.is_dir():
            names.add(entry.name.split(".")[0])
    return names


def imports(source: Path) -> set[str]:
    try:
        tree = ast.parse(source.read_bytes(), filename=str(source))
    except (SyntaxError, ValueError):
        return set()
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", ""))
            in {"import_module", "__import__"}
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value.split(".")[0])
    return found


def test_the_built_layer_holds_no_development_module():
    offenders = {
        name: sorted(top_level_names(path / "python") & DEVELOPMENT_MODULES)
        for name, path in layers().items()
    }
    assert all(not found for found in offenders.values()), offenders


def test_nothing_in_the_built_artifact_imports_moto_flask_or_werkzeug():
    folders = [*layers().values(), *functions().values()]
    offenders = sorted(
        (str(source.relative_to(BUILD)), module)
        for folder in folders
        for source in folder.rglob("*.py")
        for module in imports(source) & FORBIDDEN_IMPORTS
    )
    assert offenders == []


def test_the_built_layer_ships_the_support_pipeline_package_and_its_runtime_dependencies():
    names = set().union(*(top_level_names(path / "python") for path in layers().values()))
    assert {"support_pipeline", "aws_lambda_powertools", "requests", "yaml", "tzdata"} <= names
    # The runtime provides boto3 and botocore; a copy in the layer would shadow it.
    assert not names & {"boto3", "botocore"}


def test_each_built_function_holds_only_its_handler():
    for name, folder in functions().items():
        files = sorted(p.name for p in folder.rglob("*") if p.is_file())
        assert set(files) <= {"app.py", "requirements.txt"}, (name, files)
        assert "app.py" in files, name
