"""The GitHub Actions workflows are valid, and every `invoke`/`fab` command they run names
tasks and flags that exist in the real task collection (`deploy.tasks.ns`).

Commands are parsed by Invoke's own parser, with the contexts Invoke builds from the
tasks (so `dry_run` is `--dry-run` and `json_` is `--json` exactly as on the command line)
and the core flags of the `invoke` or `fab` program (`-H`, `-e`, `--search-root`…).
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from fabric.main import make_program
from invoke import Program
from invoke.parser import ParseError, Parser
from ruamel.yaml import YAML

from deploy.tasks import ns

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
# Workflows a project that pip-installs the tool copies as they are (README, "Use it in
# your project"): deploy.yml from WORKFLOWS, and the CI workflow from here.
TEMPLATES = ROOT / "docs" / "templates"
WORKFLOW_FILES = sorted(p for d in (WORKFLOWS, TEMPLATES) for p in d.glob("*")
                        if p.suffix in (".yml", ".yaml"))

PROGRAMS = {"invoke": Program(), "inv": Program(), "fab": make_program()}
# `${{ … }}` is filled in by GitHub before the shell runs: one opaque word here.
GH_EXPRESSION = re.compile(r"\$\{\{.*?\}\}", re.DOTALL)
PLACEHOLDER = "GH_EXPR"
# Shell words that may precede the command itself.
PREFIX_WORDS = {"if", "then", "else", "elif", "do", "while", "until", "!", "time", "exec",
                "{", "command", "env", "sudo", "-E"}
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
OPERATOR = re.compile(r"^[;&|()<>]+$")


# --- finding the commands --------------------------------------------------------------

def _lex(line: str) -> list[str]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True  # `$VAR`, `{`, `--x=y` stay whole words
    return list(lexer)  # comments (`# …`) are dropped by shlex


def _simple_commands(tokens: list[str]) -> Iterator[list[str]]:
    """Split at `;`, `&&`, `||`, `|`, `&`, `(`, `)`; drop redirections (`2>&1`, `> f`)."""
    command: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if OPERATOR.match(token) and ("<" in token or ">" in token):
            if command and command[-1].isdigit():  # `2>&1` lexes as `2`, `>&`, `1`
                command.pop()
            i += 2  # the operator and its target
            continue
        if OPERATOR.match(token):
            if command:
                yield command
            command = []
        else:
            command.append(token)
        i += 1
    if command:
        yield command


def shell_commands(script: str) -> list[list[str]]:
    """Every simple command of a `run:` script that calls invoke or fab, as argv lists.

    Handles comments, quotes, `\\` line continuations, quoted strings spanning lines,
    `${{ }}` expressions, `VAR=value` prefixes, `python -m invoke`, and skips heredoc
    bodies. Not a shell: enough for the commands a workflow runs.
    """
    script = GH_EXPRESSION.sub(PLACEHOLDER, script)
    found: list[list[str]] = []
    pending = ""
    heredoc_end: str | None = None
    for line in script.splitlines():
        if heredoc_end is not None:
            if line.strip() == heredoc_end:
                heredoc_end = None
            continue
        text = pending + line
        if text.endswith("\\") and not text.endswith("\\\\"):
            pending = text[:-1]  # a continuation: the command goes on
            continue
        try:
            tokens = _lex(text)
        except ValueError:  # a quote still open: the string spans lines
            pending = text + "\n"
            continue
        pending = ""
        if "<<" in tokens and tokens.index("<<") + 1 < len(tokens):
            heredoc_end = tokens[tokens.index("<<") + 1].lstrip("-")
        for command in _simple_commands(tokens):
            while command and (command[0] in PREFIX_WORDS or ASSIGNMENT.match(command[0])):
                command = command[1:]
            if len(command) >= 3 and re.fullmatch(r"python[0-9.]*", Path(command[0]).name) \
                    and command[1] == "-m" and command[2] in ("invoke", "fabric"):
                command = ["fab" if command[2] == "fabric" else "invoke", *command[3:]]
            if command and Path(command[0]).name in PROGRAMS:
                found.append([Path(command[0]).name, *command[1:]])
    if pending.strip():
        raise ValueError(f"unterminated quote or continuation at the end of: {pending!r}")
    return found


def workflow_commands(path: Path) -> Iterator[tuple[str, list[str]]]:
    """(where, argv) for every invoke/fab command in a workflow's `run:` steps."""
    workflow = YAML(typ="safe", pure=True).load(path.read_text())
    for job_id, job in (workflow.get("jobs") or {}).items():
        for index, step in enumerate(job.get("steps") or []):
            if "run" not in step:
                continue
            shell = str(step.get("shell") or "bash")
            if not shell.split()[0].endswith(("bash", "sh")):
                continue  # `shell: python` and the like are not shell scripts
            name = step.get("name") or step["run"].strip().splitlines()[0]
            where = f"{path.name}: jobs.{job_id}.steps[{index}] ({name})"
            for argv in shell_commands(str(step["run"])):
                yield where, argv


# --- checking them against the real task collection ------------------------------------

def _flags(task_name: str) -> str:
    names = []
    for argument in ns[task_name].get_arguments():
        names.extend(f"--{n}" if len(n) > 1 else f"-{n}" for n in argument.names)
    return ", ".join(names) or "none"


def command_problems(argv: list[str]) -> list[str]:
    """What is wrong with one `invoke …`/`fab …` command; empty when it would parse."""
    program = PROGRAMS[argv[0]]
    parser = Parser(initial=program.initial_context, contexts=ns.to_contexts())
    shown = shlex.join(argv)
    try:
        result = parser.parse_argv(argv[1:])
    except ParseError as exc:
        message = f"`{shown}`: {exc}"
        tasks_before = [word for word in argv[1:] if word in ns.task_names]
        if tasks_before:
            message += f" (flags of {tasks_before[-1]}: {_flags(tasks_before[-1])})"
        else:
            message += f" (tasks: {', '.join(sorted(ns.task_names))})"
        return [message]
    core = result[0].args
    if len(result) == 1 and not (core["list"].value or core["help"].value
                                 or core["version"].value):
        return [f"`{shown}`: names no task (tasks: {', '.join(sorted(ns.task_names))})"]
    return []


def workflow_problems(path: Path) -> list[str]:
    return [f"{where}: {problem}" for where, argv in workflow_commands(path)
            for problem in command_problems(argv)]


# --- the workflows in this repository --------------------------------------------------

def test_ci_and_deploy_workflows_exist():
    assert {"ci.yml", "deploy.yml"} <= {p.name for p in WORKFLOW_FILES}


def _check_jsonschema() -> list[str]:
    exe = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent)) \
        or shutil.which("check-jsonschema")
    if exe:
        return [exe]
    try:
        import check_jsonschema  # noqa: F401
    except ImportError:
        pytest.fail("check-jsonschema is not installed: pip install -e '.[dev]'",
                    pytrace=False)
    return [sys.executable, "-m", "check_jsonschema"]


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_workflow_validates_against_the_vendored_github_workflows_schema(path):
    done = subprocess.run([*_check_jsonschema(), "--builtin-schema", "vendor.github-workflows",
                           str(path)], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        pytest.fail(f"{path.relative_to(ROOT)} does not validate against the github-workflows "
                    f"schema:\n{done.stdout}{done.stderr}", pytrace=False)


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_invoke_and_fab_command_names_existing_tasks_and_flags(path):
    problems = workflow_problems(path)
    assert not problems, "\n".join(problems)


def test_the_deploy_workflow_builds_once_checks_then_ships_to_the_configured_hosts():
    # Guards the check above against passing vacuously (a command it failed to find).
    commands = [argv for _, argv in workflow_commands(WORKFLOWS / "deploy.yml")]
    check, ship = ["invoke", "deploy"], ["invoke", "deploy", "--hosts", "$DEPLOY_HOSTS",
                                         "--no-build"]
    assert check in commands and ship in commands
    assert commands.index(check) < commands.index(ship)


# --- copyable as they are by a project that pip-installs the tool -----------------------

COPYABLE = [WORKFLOWS / "deploy.yml", TEMPLATES / "ci.yml"]


@pytest.mark.parametrize("path", COPYABLE, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_copyable_workflow_installs_the_tool_from_deploy_requirements_only(path):
    # A project has none of this repository's files: no .ci/ scripts, no pyproject.toml
    # of the tool; what it has is its own deploy-requirements.txt naming the tool.
    workflow = YAML(typ="safe", pure=True).load(path.read_text())
    steps = [step for job in workflow["jobs"].values() for step in job["steps"]]
    runs = "\n".join(str(step.get("run", "")) for step in steps)
    assert ".ci/" not in runs and "pip install -e" not in runs
    assert "pip install --disable-pip-version-check -r deploy-requirements.txt" in runs
    setup = next(step for step in steps
                 if str(step.get("uses", "")).startswith("actions/setup-python"))
    assert setup["with"]["cache-dependency-path"] == "deploy-requirements.txt"
    # The project's committed settings without secrets, read before any task runs.
    read = next(i for i, step in enumerate(steps) if "deploy.env" in str(step.get("run", "")))
    assert steps[read]["run"].strip() == \
        'if [ -f deploy.env ]; then echo "ENV_FILE=$PWD/deploy.env" >> "$GITHUB_ENV"; fi'
    first_task = next(i for i, step in enumerate(steps) if "invoke " in str(step.get("run", "")))
    assert read < first_task


def test_this_repository_deploys_with_the_tool_of_its_own_checkout():
    lines = [line.strip() for line in (ROOT / "deploy-requirements.txt").read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    assert lines == ["."]


def test_the_ci_template_is_the_ci_the_deploy_workflow_waits_for_and_checks_migrations():
    template = YAML(typ="safe", pure=True).load((TEMPLATES / "ci.yml").read_text())
    assert template["name"] == "CI"
    commands = [argv for _, argv in workflow_commands(TEMPLATES / "ci.yml")]
    assert commands == [["invoke", "lint-migrations"], ["invoke", "migrate", "--wait", "30"],
                        ["invoke", "migrate"], ["invoke", "migrate-status"],
                        ["invoke", "check-tables", "--expected"]]
    [job] = template["jobs"].values()
    assert job["env"]["DATABASE_URL"].startswith("postgresql://ci:ci@127.0.0.1:5432/")
    assert job["services"]["postgres"]["ports"] == ["5432:5432"]


# What names the images a deploy builds and ships (deploy/fleet/rollout.py: host_images).
IMAGE_SETTINGS = ("COMPOSE_PROJECT_NAME", "BACKEND_IMAGE", "PROXY_IMAGE", "POSTGRES_IMAGE",
                  "PYTHON_IMAGE")


def _step(job: dict, command: str) -> dict:
    return next(step for step in job["steps"] if command in str(step.get("run", "")))


def test_the_ship_step_names_the_very_images_the_check_step_built():
    # `--no-build` ships <project>-backend:<commit> and <project>-proxy:live as the check
    # step built them: every setting that names an image must be the same in both.
    _, job = _deploy_job()
    check = _step(job, "invoke deploy\n")
    ship = _step(job, "invoke deploy --hosts")
    for name in IMAGE_SETTINGS:
        assert (check.get("env") or {}).get(name) == (ship.get("env") or {}).get(name), name
    assert ship["env"]["COMPOSE_PROJECT_NAME"] == "${{ vars.COMPOSE_PROJECT_NAME }}"
    # The step that builds is the one that checks the stack with that image.
    assert "invoke down" in check["run"] and "--allow-dirty" not in ship["run"]


def test_the_registry_login_comes_from_secrets_and_the_rest_from_variables():
    _, job = _deploy_job()
    env = _step(job, "invoke deploy --hosts")["env"]
    assert env["DEPLOY_REGISTRY_PASSWORD"] == "${{ secrets.DEPLOY_REGISTRY_PASSWORD }}"
    assert env["DEPLOY_REGISTRY"] == "${{ vars.DEPLOY_REGISTRY }}"
    assert env["DEPLOY_REGISTRY_USER"] == "${{ vars.DEPLOY_REGISTRY_USER }}"
    assert env["POSTGRES_PASSWORD"] == "${{ secrets.POSTGRES_PASSWORD }}"


# --- the CI gate: a commit whose tests failed is never deployed -------------------------

class _Null:
    """GitHub's null: any property of it is null too, it is falsy and equals only null."""

    def __getattr__(self, name):
        return self

    def __bool__(self):
        return False

    def __eq__(self, other):
        return other is None or isinstance(other, _Null)

    def __hash__(self):
        return 0


NULL = _Null()


def _wrap(value):
    if isinstance(value, dict):
        return _Context(value)
    return NULL if value is None else value


class _Context(dict):
    """A GitHub expression context: `a.b.c` of what is missing is null, as in Actions."""

    def __getattr__(self, name):
        return _wrap(self.get(name))


def evaluate(expression: str, **contexts) -> object:
    """The subset of GitHub's expression language the workflows use: ==, !=, &&, ||, !,
    parentheses, 'strings' and context properties (null when missing)."""
    text = expression.strip()
    if text.startswith("${{") and text.endswith("}}"):
        text = text[3:-2]
    python = (text.replace("&&", " and ").replace("||", " or ")
              .replace("!=", " __NE__ ").replace("!", " not ").replace(" __NE__ ", " != "))
    result = eval(python, {"__builtins__": {}},  # noqa: S307 - test-only, fixed inputs
                  {name: _wrap(value) for name, value in contexts.items()})
    return None if isinstance(result, _Null) else result


def _deploy_job() -> dict:
    workflow = YAML(typ="safe", pure=True).load((WORKFLOWS / "deploy.yml").read_text())
    return workflow, workflow["jobs"]["deploy"]


def _run_event(conclusion: str, event: str = "push", sha: str = "abc123") -> dict:
    return {"event_name": "workflow_run", "sha": "ffff", "event": {"workflow_run": {
        "conclusion": conclusion, "event": event, "head_sha": sha}}}


def test_deploys_start_only_after_ci_completed_on_main():
    workflow, _ = _deploy_job()
    on = workflow["on"]
    assert set(on) == {"workflow_run", "workflow_dispatch"}  # no plain push trigger
    assert on["workflow_run"] == {"workflows": ["CI"], "types": ["completed"],
                                  "branches": ["main"]}
    ci = YAML(typ="safe", pure=True).load((WORKFLOWS / "ci.yml").read_text())
    assert ci["name"] == "CI"  # the name the trigger refers to


@pytest.mark.parametrize(("conclusion", "event", "runs"), [
    ("success", "push", True), ("failure", "push", False), ("cancelled", "push", False),
    ("timed_out", "push", False), ("success", "pull_request", False),
])
def test_the_deploy_job_runs_only_for_a_successful_ci_run_of_a_push(conclusion, event, runs):
    _, job = _deploy_job()
    assert evaluate(job["if"], github=_run_event(conclusion, event)) is runs


def test_the_deploy_job_deploys_the_commit_that_ci_tested():
    _, job = _deploy_job()
    checkout = next(step for step in job["steps"]
                    if str(step.get("uses", "")).startswith("actions/checkout"))
    github = _run_event("success", sha="0123abc")
    assert evaluate(checkout["with"]["ref"], github=github) == "0123abc"
    assert evaluate(job["env"]["DEPLOY_SHA"], github=github) == "0123abc"


def test_a_manual_deploy_first_checks_that_ci_passed_for_its_commit():
    _, job = _deploy_job()
    manual = {"event_name": "workflow_dispatch", "sha": "beef", "event": {}}
    assert evaluate(job["if"], github=manual) is True
    steps = job["steps"]
    gate = next(i for i, step in enumerate(steps)
                if "actions/workflows/ci.yml/runs?head_sha=$DEPLOY_SHA&status=success"
                in str(step.get("run", "")))
    assert evaluate(steps[gate]["if"], github=manual) is True
    assert "exit 1" in steps[gate]["run"]
    first_deploy = next(i for i, step in enumerate(steps)
                        if "invoke deploy" in str(step.get("run", "")))
    assert gate < first_deploy
    assert evaluate(job["env"]["DEPLOY_SHA"], github=manual) == "beef"


def test_the_expression_evaluator_follows_github_semantics():
    assert evaluate("a.b == 'x' || !c", a={"b": "y"}, c=None) is True
    assert evaluate("a.missing.deeper == 'x'", a={}) is False
    assert evaluate("${{ a.b || 'default' }}", a={}) == "default"


# --- the checker itself ----------------------------------------------------------------

def test_commands_are_found_through_continuations_operators_and_expressions():
    script = textwrap.dedent("""\
        set -eu
        # invoke deplo: a comment, not a command
        echo "invoke deploy --nope"   # quoted: an argument of echo
        DEPLOY_ENV=production invoke deploy \\
          --hosts "${{ inputs.hosts || vars.DEPLOY_HOSTS }}" --parallel 2 && fab -H "$H" ps
        if ! python -m invoke migrate-status --json; then exit 3; fi
        cat <<'EOF'
        invoke inside a heredoc
        EOF
        invoke logs backend --grep 'relation "ai_
        cost"' 2>&1 | tee logs.txt
        """)
    assert shell_commands(script) == [
        ["invoke", "deploy", "--hosts", PLACEHOLDER, "--parallel", "2"],
        ["fab", "-H", "$H", "ps"],
        ["invoke", "migrate-status", "--json"],
        ["invoke", "logs", "backend", "--grep", 'relation "ai_\ncost"'],
    ]


def test_flags_are_checked_as_invoke_spells_them():
    assert command_problems(["invoke", "migrate", "--dry-run", "--lock-timeout", "5"]) == []
    assert command_problems(["invoke", "migrate-status", "--json"]) == []
    assert command_problems(["fab", "-H", "web1,web2", "check-tables", "--prefix", "ai_"]) == []
    assert command_problems(["invoke", "--search-root", ".", "logs", "backend",
                             "--grep", "x"]) == []
    [problem] = command_problems(["invoke", "migrate", "--dry_run"])
    assert "No idea what '--dry_run' is!" in problem and "--dry-run" in problem


def test_a_wrong_task_or_flag_is_reported_with_what_exists():
    [unknown_task] = command_problems(["invoke", "deplo"])
    assert unknown_task.startswith("`invoke deplo`: No idea what 'deplo' is!")
    assert "tasks: " in unknown_task and "deploy" in unknown_task

    [unknown_flag] = command_problems(["invoke", "deploy", "--hostz", "x"])
    assert "No idea what '--hostz' is!" in unknown_flag
    assert "flags of deploy: --no-build" in unknown_flag

    [missing_value] = command_problems(["invoke", "deploy", "--lock-wait"])
    assert "needed value" in missing_value
    [fab_only_flag] = command_problems(["invoke", "-H", "web1", "deploy"])
    assert "No idea what '-H' is!" in fab_only_flag
    assert command_problems(["invoke"]) == [
        f"`invoke`: names no task (tasks: {', '.join(sorted(ns.task_names))})"]


def test_a_workflow_with_wrong_commands_fails_the_check(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text(textwrap.dedent("""\
        on: push
        jobs:
          ship:
            runs-on: ubuntu-latest
            steps:
              - uses: actions/checkout@v4
              - name: deploy
                run: |
                  invoke deploy --hostz "${{ vars.DEPLOY_HOSTS }}"
                  fab -H web1 deplo
              - name: fine
                run: invoke check-tables --expected
        """))
    problems = workflow_problems(bad)
    assert len(problems) == 2, problems
    assert problems[0].startswith("bad.yml: jobs.ship.steps[1] (deploy): `invoke deploy --hostz")
    assert "No idea what '--hostz' is!" in problems[0]
    assert "No idea what 'deplo' is!" in problems[1]
