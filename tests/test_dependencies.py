"""pyproject.toml says what the code imports: every runtime dependency is imported by bench/, and bench/ and the
tests import no third-party package that pyproject does not declare (runtime or an extra). Import names are mapped
to distributions by the installed packages' own metadata (``importlib.metadata.packages_distributions``)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))["project"]
# runtime dependencies that are loaded by name, never imported: PyVISA's pure-Python backend ("@py"), and PyUSB,
# which that backend imports for its USBTMC sessions
LOADED_BY_NAME = {"pyvisa-py", "pyusb"}


def normalised(requirement: str) -> str:
    """PEP 503 name of a requirement string (``rouge-score>=0.1.2`` -> ``rouge-score``)."""
    return re.sub(r"[-_.]+", "-", re.split(r"[<>=!~ \[;]", requirement, maxsplit=1)[0]).lower()


def imported(paths) -> set[str]:
    """Top-level names of the absolute imports in ``paths`` (``importlib.import_module("x")`` too), stdlib and local
    modules left out."""
    names: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                  and node.func.attr == "import_module" and node.args and isinstance(node.args[0], ast.Constant)
                  and isinstance(node.args[0].value, str)):
                names.add(node.args[0].value.split(".")[0])
    # modules run by path import their siblings by bare name (tests, scripts, the sandbox's child processes)
    local = {p.stem for folder in ("tests", "scripts", "bench/scoring/child") for p in (REPO / folder).rglob("*.py")}
    local.add("bench")
    return names - set(sys.stdlib_module_names) - local


def distributions(modules: set[str]) -> dict[str, str]:
    """Import name -> normalised distribution name, for the installed ones."""
    owners = packages_distributions()
    unknown = sorted(m for m in modules if m not in owners)
    assert not unknown, f"imported but not installed by make venv: {unknown}"
    return {m: normalised(owners[m][0]) for m in modules}


RUNTIME = {normalised(r) for r in PROJECT["dependencies"]}
DECLARED = RUNTIME | {normalised(r) for extra in PROJECT["optional-dependencies"].values() for r in extra}
PACKAGE = distributions(imported((REPO / "bench").rglob("*.py")))


def test_every_runtime_dependency_is_imported_by_the_package():
    assert RUNTIME - set(PACKAGE.values()) - LOADED_BY_NAME == set(), "declared at runtime, never imported by bench/"


def test_the_package_imports_only_what_pyproject_declares():
    undeclared = {m: d for m, d in PACKAGE.items() if d not in DECLARED}
    assert not undeclared, f"bench/ imports packages pyproject does not declare: {undeclared}"


def test_the_tests_import_only_what_pyproject_declares():
    tests = distributions(imported((REPO / "tests").rglob("*.py")))
    undeclared = {m: d for m, d in tests.items() if d not in DECLARED}
    assert not undeclared, f"tests import packages pyproject does not declare: {undeclared}"
