"""The package's shape, checked like behaviour: its layers (import-linter, contracts in
pyproject.toml), module and function sizes, and no repeated runs of code (pylint's
similarity checker)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "deploy"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def python_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def long_functions(source: str, limit: int) -> list[tuple[str, int, int]]:
    """(name, first line, length) of every function longer than `limit` lines, counted from
    its `def` (decorators excluded) to its last line."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = node.end_lineno - node.lineno + 1
            if length > limit:
                found.append((node.name, node.lineno, length))
    return found


def test_long_functions_counts_from_def_to_the_last_line():
    body = "\n".join(f"    x{i} = {i}" for i in range(60))
    source = f"@decorator\ndef f():\n{body}\n\ndef g():\n    pass\n"
    assert long_functions(source, 60) == [("f", 2, 61)]
    assert long_functions(source, 61) == []


def test_no_module_is_over_400_lines():
    over = {str(p.relative_to(ROOT)): n for p in python_files()
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert over == {}, f"modules over {MAX_MODULE_LINES} lines: split them by idea"


def test_no_function_is_over_60_lines():
    over = [f"{p.relative_to(ROOT)}:{line} {name} ({n} lines)"
            for p in python_files()
            for name, line, n in long_functions(p.read_text(), MAX_FUNCTION_LINES)]
    assert over == []


# Through this interpreter, as .ci/test does: a console script may not be on PATH (pyenv).
LINT_IMPORTS = ("from importlinter.cli import lint_imports_command as c\n"
                "c.main(args=['--no-cache'], prog_name='lint-imports')")


def test_the_layers_hold_no_cycles_and_no_upward_imports():
    result = subprocess.run([sys.executable, "-c", LINT_IMPORTS], cwd=ROOT,
                            capture_output=True, text=True)
    assert "No module named 'importlinter'" not in result.stderr, \
        "import-linter is not installed: pip install -e '.[dev]'"
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split("Contracts:")[-1].split("\n")[0].endswith(" 0 broken.")


def test_no_run_of_six_lines_is_repeated_inside_the_package():
    result = subprocess.run(
        [sys.executable, "-m", "pylint", "--disable=all", "--enable=duplicate-code",
         "--min-similarity-lines=6", "--ignore-imports=yes", "--ignore-signatures=yes",
         "--score=no", "deploy"],
        cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
