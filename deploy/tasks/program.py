"""What `invoke` and `fab` do as programs, beyond what Invoke does for us.

Installed when the task collection is imported (deploy/tasks/__init__.py), so `invoke`,
`fab` and their `--list`/`--help` all behave the same:

- A closed pipe (`invoke migrate-status | head`, `fab --list | head`) ends quietly with
  exit 141 (deploy/cli.py, shared with `python -m deploy`).
- Argument errors that Invoke's parser finds (an unknown flag or task, a missing
  argument) exit 2, the code docs/design.md gives bad arguments; Invoke itself exits 1.
"""

from __future__ import annotations

from invoke.exceptions import Exit, ParseError
from invoke.program import Program

from deploy import cli

BAD_ARGUMENTS_EXIT = 2


def _parse_errors_exit_2() -> None:
    original = Program.parse_tasks
    if getattr(original, "_deploy", False):
        return

    def parse_tasks(self):
        try:
            return original(self)
        except ParseError as exc:
            hint = "; see `invoke --list` and `invoke --help TASK`"
            raise Exit(f"{exc}{hint}", code=BAD_ARGUMENTS_EXIT) from None

    parse_tasks._deploy = True  # type: ignore[attr-defined]
    Program.parse_tasks = parse_tasks


def install() -> None:
    cli.install()
    _parse_errors_exit_2()
