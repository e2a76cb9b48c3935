"""A one-off task on the Swarm: the migration runner (or migrate-status, check-tables) run
once from an app image, on the stack's overlay network, with the app's environment.

Docker 20.10's `--mode replicated-job` re-runs endlessly, so a one-off task is a service of
one replica that is never restarted (deploy/commands/swarm.py `one_off`): its task is
polled until it is done, its exit code read from `docker inspect` of the task, its output
from `service logs --raw`, and the service removed, also when anything fails.

The environment (DATABASE_URL with its password) reaches the CLI in an env file in a
private directory on the manager (mktemp -d, mode 700), removed right after the create:
never on a command line, which a manager's process list and sshd's logs show.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from deploy.commands import docker, swarm
from deploy.errors import ConfigError, DeployError, DeployTimeout
from deploy.output import Output, as_output
from deploy.redaction import redact

# The task's last lines read.
LOG_TAIL = 5000


@dataclass(frozen=True)
class PollPolicy:
    """How often a one-off task is asked about, and how long it may take in all."""

    interval: float = 1.0
    budget: float = 600.0


@dataclass(frozen=True)
class OneOffResult:
    service: str
    state: str  # complete, failed, rejected, …
    exit_code: int | None
    error: str
    lines: tuple[str, ...]  # what it printed

    @property
    def ok(self) -> bool:
        return self.state == "complete" and self.exit_code == 0


class TaskFailed(DeployError):
    """A one-off task ended non-zero: the tool exits with the task's own code (the runner's
    documented codes) or 1."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def env_file_text(env: Mapping[str, str]) -> str:
    """`docker --env-file` text: KEY=VALUE a line, taken literally (no quotes, no `#`)."""
    lines = []
    for key, value in env.items():
        value = "" if value is None else str(value)
        if "\n" in value or "\r" in value:
            raise ConfigError(f"{key}: a value with a line break cannot reach a Swarm task "
                              "through an env file")
        lines.append(f"{key}={value}")
    return "".join(f"{line}\n" for line in lines)


def task_env(environment: Mapping[str, str | None]) -> dict[str, str]:
    """The app service's environment as its task sees it: its DATABASE_URL, or the sample
    entrypoint's APP_DATABASE_URL when that is set (deploy/stack/backend/entrypoint.sh
    replaces one by the other; the runner is started without that entrypoint)."""
    env = {k: "" if v is None else str(v) for k, v in environment.items()}
    if env.get("APP_DATABASE_URL"):
        env["DATABASE_URL"] = env["APP_DATABASE_URL"]
    env.pop("APP_DATABASE_URL", None)
    return env


def task_name(stack: str, what: str) -> str:
    return f"{stack}-{what}-{secrets.token_hex(3)}"


def run_once(manager, *, name: str, image: str, argv: Sequence[str], network: str,
             env: Mapping[str, str], resolve_image: bool, labels: Mapping[str, str] = (),
             policy: PollPolicy = PollPolicy(), out: Output | None = None,
             secrets_: Sequence[str] = ()) -> OneOffResult:
    """Run `argv` (its first word the entrypoint) once in a task from `image`; its result.
    ``secrets_`` are removed from the lines shown (the log is the runner's: it redacts its
    own URLs; this is for anything else)."""
    out = as_output(out)
    private = manager.run(docker.temp_dir(), what="mktemp on the manager").stdout.strip()
    try:
        path = f"{private}/task.env"
        manager.write_file(path, env_file_text(env))
        manager.run(swarm.one_off(name, image, list(argv[1:]), network=network,
                                  env_file=path, labels=labels, entrypoint=argv[0],
                                  resolve_image=resolve_image),
                    what=f"docker service create {name}")
    finally:
        manager.run(docker.remove_dir(private), check=False)
    try:
        task_id, status = _wait(manager, name, policy)
        # By task ID: `service logs SERVICE` of 20.10 may not return (deploy/swarm/views.py).
        logs = manager.run(swarm.service_logs(task_id, tail=LOG_TAIL), check=False)
        text = (logs.stdout or "") + (logs.stderr or "")
        lines = tuple(redact(line, *secrets_) for line in text.splitlines() if line.strip())
        return OneOffResult(name, status.state, status.exit_code, status.error, lines)
    finally:
        manager.run(swarm.service_rm(name), check=False)


def _wait(manager, name: str, policy: PollPolicy) -> tuple[str, swarm.TaskStatus]:
    deadline = time.monotonic() + policy.budget
    last = "no task yet"
    while True:
        tasks = swarm.parse_tasks(manager.run(swarm.service_ps(name), check=False).stdout)
        if tasks:
            found = swarm.parse_task_status(
                manager.run(swarm.task_status(tasks[0].id), check=False).stdout)
            if found:
                status = found[0]
                if status.done:
                    return tasks[0].id, status
                last = status.state + (f" ({status.error})" if status.error else "")
        if time.monotonic() >= deadline:
            raise DeployTimeout(f"one-off task {name}: not done after {policy.budget:g} s "
                                f"(last: {last}); its service was removed")
        time.sleep(policy.interval)


def describe(result: OneOffResult) -> str:
    """One line: how the task ended."""
    if result.exit_code is not None:
        how = f"exit code {result.exit_code}"
    else:
        how = result.state
    return how + (f" ({result.error})" if result.error and not result.ok else "")
