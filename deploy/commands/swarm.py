"""Docker Swarm as data: argv builders for the CLI a manager runs, parsers of what it prints,
and the rollout's state classified as a value.

Nothing here runs a process (docs/design.md, "commands are data"); the output shapes are
those of Docker 20.10, captured on a real three-node Swarm (tests/support/swarm-captures/).

What Docker 20.10 does and does not do, and so what is built here:
- `docker stack deploy` and `docker service update --detach` return at once: a deploy polls
  `service inspect` (UpdateStatus.State) and `service ps` itself, and classifies them with
  `rollout_state`. An update the engine rolled back by itself still exits 0 from the CLI.
- A service's UpdateStatus is absent after its creation and after an update that changed
  nothing; then the tasks alone say whether it runs.
- `--mode replicated-job` re-runs endlessly on 20.10: a one-off task (migrations) is a
  service with one replica and `--restart-condition none`, whose task is polled to
  `complete` or `failed`; its exit code comes from `docker inspect` of the task.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from deploy.errors import DeployError

# A service, stack, network or config name (Docker: [a-zA-Z0-9][a-zA-Z0-9_.-]*).
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
# `service ps` CurrentState: "Running 11 seconds ago", "Failed about a minute ago".
_CURRENT_RE = re.compile(r"^([A-Za-z]+)\b")

# UpdateStatus.State values (moby api/types/swarm/service.go) and what they mean here.
COMPLETED = "completed"
UPDATING = "updating"
STARTING = "starting"  # no UpdateStatus yet: a new service whose tasks are not all running
ROLLBACK_STARTED = "rollback_started"
ROLLBACK_COMPLETED = "rollback_completed"
ROLLBACK_PAUSED = "rollback_paused"
PAUSED = "paused"
FAILED_STATES = (ROLLBACK_STARTED, ROLLBACK_COMPLETED, ROLLBACK_PAUSED, PAUSED)
# Task states after which a task never runs again.
TASK_DONE = ("complete", "failed", "shutdown", "rejected", "orphaned", "remove")


def _name(value: str, what: str = "service") -> str:
    if not _NAME_RE.match(value or ""):
        raise ValueError(f"not a {what} name: {value!r}")
    return value


def _operand(value: str, what: str) -> str:
    """An image, file or ID: anything but empty or an option."""
    if not value or value.startswith("-"):
        raise ValueError(f"{what} expected, got {value!r}")
    return value


# --- argv builders ------------------------------------------------------------------------


def node_ls() -> list[str]:
    """One JSON object a node (ID, Hostname, Status, Availability, ManagerStatus, Self…)."""
    return ["docker", "node", "ls", "--format", "{{json .}}"]


def node_addresses(ids: Iterable[str]) -> list[str]:
    """`ID HOSTNAME ADDRESS` a line: where each node is reached (its advertise address)."""
    return ["docker", "node", "inspect", "--format",
            "{{.ID}} {{.Description.Hostname}} {{.Status.Addr}}",
            *(_operand(i, "a node ID") for i in ids)]


def service_inspect(*services: str) -> list[str]:
    """The services' JSON array: spec (image, replicas), previous spec, UpdateStatus."""
    return ["docker", "service", "inspect", *(_name(s) for s in services)]


def service_ps(service: str, *, desired_running: bool = False) -> list[str]:
    """The service's tasks, one JSON object a line, untruncated (IDs and errors)."""
    argv = ["docker", "service", "ps", "--no-trunc", "--format", "{{json .}}"]
    if desired_running:
        argv += ["--filter", "desired-state=running"]
    return argv + [_name(service)]


def task_status(*task_ids: str) -> list[str]:
    """Each task's status as JSON a line: state, error, container exit code."""
    return ["docker", "inspect", "--type", "task", "--format", "{{json .Status}}",
            *(_operand(t, "a task ID") for t in task_ids)]


def stack_deploy(stack_file: str, stack: str, *, resolve_image: bool = True) -> list[str]:
    """Deploy the rendered stack file; services no longer in it are removed (--prune), and
    the nodes get this client's registry login (--with-registry-auth). Without
    ``resolve_image`` the images stay as written (image IDs: no registry to ask)."""
    argv = ["docker", "stack", "deploy", "--compose-file", _operand(stack_file, "a file"),
            "--with-registry-auth", "--prune"]
    if not resolve_image:
        argv += ["--resolve-image", "never"]
    return argv + [_name(stack, "stack")]


def stack_services(stack: str) -> list[str]:
    """The names of the stack's services, one a line."""
    return ["docker", "service", "ls", "--filter",
            f"label=com.docker.stack.namespace={_name(stack, 'stack')}",
            "--format", "{{.Name}}"]


def one_off(name: str, image: str, command: Sequence[str], *, network: str,
            env: Mapping[str, str] = (), env_file: str | None = None,
            labels: Mapping[str, str] = (), entrypoint: str | None = None,
            resolve_image: bool = True) -> list[str]:
    """A task that runs once (a migration): one replica, never restarted, detached.

    ``env`` holds values that may be seen (they are on this command line, in a manager's
    process list and a host's recorded commands); secrets go in ``env_file``, a file on the
    manager that the CLI reads there. ``entrypoint`` replaces the image's (one word: the
    program; ``command`` its arguments)."""
    argv = ["docker", "service", "create", "--detach", "--name", _name(name),
            "--replicas", "1", "--restart-condition", "none",
            "--network", _name(network, "network")]
    if entrypoint is not None:
        argv += ["--entrypoint", _operand(entrypoint, "a program")]
    if not resolve_image:
        argv.append("--no-resolve-image")
    if env_file:
        argv += ["--env-file", _operand(env_file, "a file")]
    for key, value in dict(env).items():
        argv += ["--env", f"{key}={value}"]
    for key, value in dict(labels).items():
        argv += ["--label", f"{key}={value}"]
    return [*argv, _operand(image, "an image"), *command]


def service_rm(*services: str) -> list[str]:
    if not services:
        raise ValueError("no service to remove")
    return ["docker", "service", "rm", *(_name(s) for s in services)]


def service_logs(service: str, *, tail: int | None = None, since: str | None = None
                 ) -> list[str]:
    """A service's task logs (or one task's, by its ID) as written: no task IDs, no prefix."""
    argv = ["docker", "service", "logs", "--raw", "--no-task-ids"]
    if tail is not None:
        argv += ["--tail", str(int(tail))]
    if since:
        argv += ["--since", _operand(since, "a time")]
    return argv + [_name(service)]


def service_update_image(service: str, image: str, *, registry_auth: bool = False,
                         resolve_image: bool = True, labels: Mapping[str, str] = ()
                         ) -> list[str]:
    """Roll the service to `image` with its own update_config; returns at once. ``labels``
    are added to (or replaced on) the service."""
    argv = ["docker", "service", "update", "--image", _operand(image, "an image"), "--detach"]
    if registry_auth:
        argv.append("--with-registry-auth")
    if not resolve_image:
        argv.append("--no-resolve-image")
    for key, value in dict(labels).items():
        argv += ["--label-add", f"{key}={value}"]
    return argv + [_name(service)]


# --- parsers ------------------------------------------------------------------------------


def _json_lines(text: str, what: str) -> list[dict]:
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            raise DeployError(f"{what}: line {number} is not JSON: {line.strip()[:120]!r}"
                              ) from None
        if not isinstance(value, dict):
            raise DeployError(f"{what}: line {number} is not a JSON object")
        found.append(value)
    return found


@dataclass(frozen=True)
class Node:
    id: str
    hostname: str
    status: str  # Ready, Down, Unknown, Disconnected
    availability: str  # Active, Pause, Drain
    manager_status: str  # Leader, Reachable, Unreachable; "" on a worker
    engine_version: str = ""
    self_: bool = False  # the node the CLI talks to

    @property
    def ready(self) -> bool:
        """Takes tasks: up and not paused or drained."""
        return self.status == "Ready" and self.availability == "Active"


def parse_nodes(text: str) -> list[Node]:
    """`node_ls` output."""
    return [Node(id=n.get("ID", ""), hostname=n.get("Hostname", ""),
                 status=n.get("Status", ""), availability=n.get("Availability", ""),
                 manager_status=n.get("ManagerStatus", ""),
                 engine_version=n.get("EngineVersion", ""), self_=bool(n.get("Self")))
            for n in _json_lines(text, "docker node ls")]


def parse_node_addresses(text: str) -> dict[str, str]:
    """Hostname -> advertise address, from `node_addresses` output."""
    found = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 3:
            found[fields[1]] = fields[2]
    return found


@dataclass(frozen=True)
class Service:
    """What a deploy reads of `service inspect`."""

    name: str
    image: str  # the spec's image: what the service is meant to run
    previous_image: str | None  # the spec before the last update (what a rollback returns to)
    replicas: int | None  # None: a global service
    update_state: str | None  # UpdateStatus.State; None before any update
    update_message: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    version: int = 0  # Version.Index: changes with every update of the spec


def _image(spec: dict | None) -> str | None:
    if not spec:
        return None
    return spec.get("TaskTemplate", {}).get("ContainerSpec", {}).get("Image")


def parse_services(text: str) -> list[Service]:
    """`service_inspect` output (a JSON array)."""
    try:
        doc = json.loads(text)
    except ValueError:
        raise DeployError("docker service inspect: its output is not JSON") from None
    if not isinstance(doc, list):
        raise DeployError("docker service inspect: expected a JSON array")
    services = []
    for item in doc:
        spec = item.get("Spec") or {}
        status = item.get("UpdateStatus") or {}
        replicated = (spec.get("Mode") or {}).get("Replicated")
        services.append(Service(
            name=spec.get("Name", ""), image=_image(spec) or "",
            previous_image=_image(item.get("PreviousSpec")),
            replicas=int(replicated.get("Replicas", 0)) if replicated is not None else None,
            update_state=status.get("State") or None,
            update_message=status.get("Message", ""),
            labels=tuple(sorted((spec.get("Labels") or {}).items())),
            version=int((item.get("Version") or {}).get("Index", 0))))
    return services


@dataclass(frozen=True)
class Task:
    """One line of `service ps`."""

    id: str
    name: str  # <service>.<slot>
    node: str  # the node's hostname
    desired: str  # running, shutdown, …: what the orchestrator wants (lower case)
    current: str  # running, starting, failed, complete, …: what it is
    error: str
    image: str

    @property
    def running(self) -> bool:
        return self.desired == "running" and self.current == "running"


def _unquote(text: str) -> str:
    # The 20.10 CLI prints the error JSON-quoted inside the JSON string: "\"task: …\"".
    text = text.strip()
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def parse_tasks(text: str) -> list[Task]:
    """`service_ps` output."""
    tasks = []
    for t in _json_lines(text, "docker service ps"):
        m = _CURRENT_RE.match(t.get("CurrentState", ""))
        tasks.append(Task(id=t.get("ID", ""), name=t.get("Name", ""), node=t.get("Node", ""),
                          desired=t.get("DesiredState", "").lower(),
                          current=m[1].lower() if m else "",
                          error=_unquote(t.get("Error", "")), image=t.get("Image", "")))
    return tasks


@dataclass(frozen=True)
class TaskStatus:
    """A task's `docker inspect` status: how a one-off task ended."""

    state: str  # complete, failed, running, …
    error: str
    exit_code: int | None  # None while its container has not exited

    @property
    def done(self) -> bool:
        return self.state in TASK_DONE


def parse_task_status(text: str) -> list[TaskStatus]:
    """`task_status` output."""
    found = []
    for s in _json_lines(text, "docker inspect (task)"):
        container = s.get("ContainerStatus") or {}
        state = s.get("State", "")
        exit_code = container.get("ExitCode") if state in TASK_DONE else None
        found.append(TaskStatus(state=state, error=s.get("Err", "") or "",
                                exit_code=int(exit_code) if exit_code is not None else None))
    return found


# --- the rollout, as data -----------------------------------------------------------------


def _same_image(task_image: str, spec_image: str) -> bool:
    """`service ps` prints the spec's image without the digest the CLI pinned."""
    return task_image == spec_image or task_image == spec_image.split("@", 1)[0] \
        or spec_image == task_image.split("@", 1)[0]


@dataclass(frozen=True)
class Rollout:
    """Where one service's update stands: its phase, how many replicas run the spec's
    image, and the errors of the tasks that failed on it."""

    service: str
    phase: str  # completed, updating, starting, rollback_*, paused
    updated: int  # running tasks on the spec's image
    total: int  # the replicas wanted (running tasks for a global service)
    message: str = ""
    errors: tuple[str, ...] = ()  # "<task> on <node>: <error>", in `service ps` order

    @property
    def finished(self) -> bool:
        return self.phase in (COMPLETED, ROLLBACK_COMPLETED, ROLLBACK_PAUSED, PAUSED)

    @property
    def failed(self) -> bool:
        return self.phase in FAILED_STATES

    @property
    def ok(self) -> bool:
        return self.phase == COMPLETED

    def progress(self) -> str:
        return f"{self.service} {self.updated}/{self.total} on the new release"


def rollout_state(service: Service, tasks: Sequence[Task]) -> Rollout:
    """Classify a service's update from `parse_services` and `parse_tasks` values.

    UpdateStatus.State decides when Swarm reports one; "completed" also needs every wanted
    replica running the spec's image (Swarm marks an update completed while the last new
    task may still be starting). Without an UpdateStatus (a new service, or an update that
    changed nothing) the tasks alone decide: completed when all run, else starting."""
    current = [t for t in tasks if t.running and _same_image(t.image, service.image)]
    total = service.replicas if service.replicas is not None else \
        len([t for t in tasks if t.desired == "running"])
    state = service.update_state
    if state in FAILED_STATES or state == UPDATING:
        phase = state
    elif len(current) >= total:
        phase = COMPLETED
    else:
        phase = UPDATING if state == COMPLETED else STARTING
    # After a rollback the spec is the old one again (and PreviousSpec gone): the failed
    # tasks ran an image the spec no longer names, so a failed phase shows every error.
    errors = tuple(f"{t.name} on {t.node}: {t.error}" for t in tasks
                   if t.error and (phase in FAILED_STATES
                                   or _same_image(t.image, service.image)))
    return Rollout(service.name, phase, min(len(current), total), total,
                   service.update_message, errors)
