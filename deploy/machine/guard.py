"""The guard of a destructive task (`reset`, `restore`): a name typed at a prompt or passed
with --yes-destroy, exactly, and --production when DEPLOY_ENV=production."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from deploy.errors import Refused


@dataclass(frozen=True)
class Guard:
    task: str  # "reset"
    name: str  # what must be typed: "shop"
    kind: str  # what the name is: "the Compose project name"
    target: str  # what is destroyed, for the --production line: "project 'shop'"
    destroys: str  # the non-interactive refusal: "destroys the volumes of project 'shop'"
    prompt: str  # the question asked on a terminal


# What each guarded task says, each text formatted with the name that must be typed:
# (kind, target, destroys, prompt) as in Guard.
TEXTS = {
    "reset": ("the Compose project name", "project {name!r}",
              "destroys the volumes of project {name!r}",
              "This destroys every volume of Compose project {name!r} (a backup is taken "
              "first). Type the project name to confirm: "),
    "restore": ("the database name", "database {name!r}",
                "replaces the contents of database {name!r}",
                "This replaces the contents of database {name!r} with the backup. Type the "
                "database name to confirm: "),
}


def guard_for(task: str, name: str) -> Guard:
    return Guard(task, name, *(text.format(name=name) for text in TEXTS[task]))


def confirm(guard: Guard, deploy_env: str, yes_destroy: str | None, production: bool,
            interactive: bool, ask: Callable[[str], str] = input) -> None:
    """Refused (exit 5, nothing touched) unless the name was typed or passed exactly."""
    task, name = guard.task, guard.name
    if deploy_env == "production" and not production:
        raise Refused(f"{task}: DEPLOY_ENV=production; add --production to {task} "
                      f"{guard.target} (nothing was touched)")
    if yes_destroy is not None:
        if yes_destroy != name:
            raise Refused(f"{task}: --yes-destroy={yes_destroy!r} does not match {guard.kind} "
                          f"{name!r}; nothing was touched")
        return
    if not interactive:
        raise Refused(f"{task}: {guard.destroys}; not interactive, so pass "
                      f"--yes-destroy={name} (nothing was touched)")
    typed = ask(guard.prompt)
    if typed.strip() != name:
        raise Refused(f"{task}: you typed {typed.strip()!r}, not {name!r}; nothing was touched")
