"""Untrusted metadata values never become SQL or shell; nothing listens beyond loopback by default."""

import ast
import shutil
import subprocess
from pathlib import Path

import pytest

from snake_assets_tests.reliability.conftest import REPO, TABLES, read_shards, read_tables
from snake_assets_tests.reliability.messy import SHELL_NAME, SQL_OBSERVATION

PACKAGE = REPO / "snake_assets"
SQL_METHODS = {"execute", "executemany", "sql", "query"}
SQL_BUILDER = PACKAGE / "core" / "warehouse.py"
"""The one module allowed to compose SQL text, from identifiers it checks against ``[a-z_][a-z0-9_]*``."""


def _calls(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call):
            yield node


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Attribute):
        return f"{_name(func.value)}.{func.attr}"
    return func.id if isinstance(func, ast.Name) else ""


def test_sql_metacharacters_in_metadata_are_stored_as_data(baseline):
    tables = read_tables(baseline.lake)
    assert set(tables) == set(TABLES)  # nothing was dropped
    for name in ("raw_train_metadata", "image_manifest", "rejected_images"):
        assert SQL_OBSERVATION in set(tables[name]["observation_id"]), name


def test_shell_metacharacters_in_file_names_reach_no_shell(baseline):
    assert f"train/{SHELL_NAME}" in set(read_shards(baseline.lake)["image_key"])
    for root in (REPO, baseline.release, baseline.lake, Path.cwd()):
        assert not list(root.glob("PWNED*")), root


def test_only_the_warehouse_module_composes_sql_text():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for call in _calls(path):
            if isinstance(call.func, ast.Attribute) and call.func.attr in SQL_METHODS and call.args:
                sql = call.args[0]
                if not (isinstance(sql, ast.Constant) or (path == SQL_BUILDER and isinstance(sql, (ast.JoinedStr, ast.Name)))):
                    offenders.append(f"{path.relative_to(REPO)}:{call.lineno}")
    assert offenders == []


def test_no_shell_is_ever_started():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for call in _calls(path):
            name = _name(call.func)
            shell = any(k.arg == "shell" and not (isinstance(k.value, ast.Constant) and k.value.value is False) for k in call.keywords)
            if name in {"os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput"} or shell:
                offenders.append(f"{path.relative_to(REPO)}:{call.lineno} {name}")
            elif name.startswith("subprocess.") and call.args and not isinstance(call.args[0], ast.List):
                offenders.append(f"{path.relative_to(REPO)}:{call.lineno} {name} with a non-literal argv")
    assert offenders == []


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_the_ui_listens_on_loopback_only_by_default():
    dry_run = subprocess.run(["make", "-n", "ui"], cwd=REPO, capture_output=True, text=True, timeout=60)
    (command,) = [line for line in dry_run.stdout.splitlines() if "dagster dev" in line]
    assert " -h 127.0.0.1 " in f" {command} "
    for path in [*PACKAGE.rglob("*.py"), REPO / "Makefile", REPO / "dagster.yaml", REPO / "workspace.yaml"]:
        assert "0.0.0.0" not in path.read_text(), path
