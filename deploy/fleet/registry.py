"""Where images travel through: a registry on this machine, or DEPLOY_REGISTRY.

Without DEPLOY_REGISTRY a deploy starts a real registry here (REGISTRY_IMAGE, registry:2 by
default) for its own duration:

- container `<project>-registry`, published on 127.0.0.1 only, on a port Docker picks;
- storage in the named volume `<project>-registry`, which outlives the container, so a
  later deploy's push sends only the layers the registry does not have yet;
- removed when the deploy ends (also on failure): nothing listens here between deploys,
  and no container is left behind. Two deploys of one project here at the same time
  share it (the last one out removes it; local locks in /tmp, see local_registry), and a
  container left by a killed deploy is replaced.

Hosts reach it through a reverse SSH tunnel (deploy/fleet/shipping.py). With DEPLOY_REGISTRY,
images are pushed there once (after `docker login --password-stdin` into a client config
directory of our own when DEPLOY_REGISTRY_USER is set) and hosts pull from it.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from deploy import shell
from deploy.commands import docker
from deploy.defaults import DEPLOY_LOCK_WAIT
from deploy.errors import ConfigError, DeployError, DeployTimeout
from deploy.machine.builds import image_id
from deploy.output import Output, as_output
from deploy.redaction import redact
from deploy.release.locks import LocalLock
from deploy.settings import Settings

DEFAULT_IMAGE = "registry:2"
LABEL = "deploy.registry.project"
MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"


@dataclass(frozen=True)
class ReadyPolicy:
    """How long a started registry may take to answer GET /v2/, and how often to ask."""

    interval: float = 0.1
    budget: float = 30.0


READY = ReadyPolicy()


@dataclass(frozen=True)
class RegistryConfig:
    image: str  # REGISTRY_IMAGE: the local registry's image
    remote: str | None  # DEPLOY_REGISTRY: host[:port][/namespace]
    user: str | None = None
    password: str | None = field(default=None, repr=False)


def registry_config(settings: Settings) -> RegistryConfig:
    """REGISTRY_IMAGE, DEPLOY_REGISTRY, DEPLOY_REGISTRY_USER, DEPLOY_REGISTRY_PASSWORD."""
    values = settings.values

    def get(name: str) -> str | None:
        value = values.get(name)
        return value if value not in (None, "") else None

    image = get("REGISTRY_IMAGE") or DEFAULT_IMAGE
    try:
        docker.parse_ref(image, "REGISTRY_IMAGE")
        remote = docker.parse_registry(get("DEPLOY_REGISTRY")) \
            if get("DEPLOY_REGISTRY") else None
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    user, password = get("DEPLOY_REGISTRY_USER"), get("DEPLOY_REGISTRY_PASSWORD")
    if (user or password) and not remote:
        name = "DEPLOY_REGISTRY_USER" if user else "DEPLOY_REGISTRY_PASSWORD"
        raise ConfigError(f"{name}: set, but DEPLOY_REGISTRY is not: the login is for the "
                          "registry named there")
    if user and not password:
        raise ConfigError("DEPLOY_REGISTRY_PASSWORD: missing; DEPLOY_REGISTRY_USER is set "
                          "(a secret in CI, or .env; it goes to docker login on stdin)")
    if password and not user:
        raise ConfigError("DEPLOY_REGISTRY_USER: missing; DEPLOY_REGISTRY_PASSWORD is set")
    return RegistryConfig(image, remote, user, password)


@dataclass
class Registry:
    """What a deploy pushes to and hosts pull from."""

    address: str  # where this machine pushes: 127.0.0.1:PORT or DEPLOY_REGISTRY
    local_port: int | None  # the local registry's port (hosts reach it via a tunnel)
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    config_dir: str | None = None  # the docker client config holding our login here

    @property
    def tunnelled(self) -> bool:
        return self.local_port is not None


def names(project: str) -> tuple[str, str]:
    """(container, volume) of the project's registry here."""
    return f"{project}-registry", f"{project}-registry"


def lock_path(project: str) -> Path:
    return Path(tempfile.gettempdir()) / f"deploy-{project}-registry.lock"


@contextmanager
def open_registry(local, settings: Settings, *, out: Output | None = None,
                  lock_wait: float = DEPLOY_LOCK_WAIT, policy: ReadyPolicy = READY
                  ) -> Iterator[Registry]:
    """DEPLOY_REGISTRY (logged in when a user is set), or a registry started here."""
    out = as_output(out)
    config = registry_config(settings)
    if config.remote:
        with _remote_registry(local, config, out) as registry:
            yield registry
    else:
        with local_registry(local, settings.project_name, config.image, out=out,
                            lock_wait=lock_wait, policy=policy) as registry:
            yield registry


@contextmanager
def _remote_registry(local, config: RegistryConfig, out: Output) -> Iterator[Registry]:
    registry = Registry(config.remote, None, config.user, config.password)
    if not config.user:
        yield registry  # no login: the registry is open, or this machine is logged in
        return
    registry.config_dir = tempfile.mkdtemp(prefix="deploy-docker-config.")
    try:
        login(local, registry, where="here", config_dir=registry.config_dir)
        out(f"   logged in to {docker.registry_domain(config.remote)} as {config.user}")
        yield registry
    finally:
        shutil.rmtree(registry.config_dir, ignore_errors=True)


def login(c, registry: Registry, *, where: str, config_dir: str) -> None:
    """`docker login --password-stdin`: the password travels on stdin only."""
    result = shell.run(c, docker.login(registry.address, registry.user, config_dir),
                       check=False, input=registry.password + "\n")
    if result.exited != 0:
        reason = docker.error_line(result.stderr or result.stdout or "", result.exited)
        raise DeployError(f"{where}: docker login to {docker.registry_domain(registry.address)}"
                          f" as {registry.user} failed: {redact(reason, registry.password)}")


@contextmanager
def local_registry(local, project: str, image: str = DEFAULT_IMAGE, *,
                   out: Output | None = None, lock_wait: float = DEPLOY_LOCK_WAIT,
                   policy: ReadyPolicy = READY) -> Iterator[Registry]:
    """Start the project's registry here, or join the one another deploy of the project on
    this machine is running; the last deploy out removes the container (never the volume).

    Two locks: the project's registry lock (exclusive, held only while the container is
    started, joined or removed) and a shared flock on `<lock>.users` held for as long as
    a deploy uses the registry. Under the first, a deploy that can take the second one
    exclusively knows nobody uses the registry: a container of that name is then what a
    killed deploy left behind, and is replaced (on the way in) or removed (on the way out).
    """
    out = as_output(out)
    container, _ = names(project)
    users = open(users_path(project), "a+")  # held until the deploy ends
    try:
        with LocalLock(lock_path(project), lock_wait, out):
            alone = _exclusive(users)
            fcntl.flock(users, fcntl.LOCK_SH)  # one of its users from here on
            registry = None if alone else _join(local, container, policy, out)
            if registry is None:
                registry = _start(local, project, image, policy, out)
        yield registry
    finally:
        try:
            with LocalLock(lock_path(project), lock_wait, out):
                if _exclusive(users):
                    shell.run(local, docker.remove_container(container), check=False)
        finally:
            users.close()


def users_path(project: str) -> Path:
    return lock_path(project).with_suffix(".users")


def _exclusive(users) -> bool:
    """Whether no other deploy holds the users lock (then this one holds it exclusively)."""
    try:
        fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _join(local, container: str, policy: ReadyPolicy, out: Output) -> Registry | None:
    """The registry another deploy of this project runs here, or None if it is not up."""
    state = shell.run(local, docker.container_state(container), check=False).stdout.strip()
    if state != "running":
        return None
    port = docker.parse_port(shell.run(local, docker.container_port(container),
                                       what="registry port").stdout)
    address = f"127.0.0.1:{port}"
    wait_ready(local, address, container, policy)
    out(f"   registry at {address} (container {container}, shared with another deploy of "
        "this project here)")
    return Registry(address, port)


def _start(local, project: str, image: str, policy: ReadyPolicy, out: Output) -> Registry:
    container, volume = names(project)
    # Nobody uses the registry: a container of that name is what a killed deploy left.
    shell.run(local, docker.remove_container(container), check=False)
    started = time.monotonic()
    result = shell.run(local, docker.run_registry(container, image, volume,
                                                  labels={LABEL: project}), check=False)
    try:
        if result.exited != 0:
            raise DeployError(
                f"registry: cannot start {image} as {container}: "
                f"{docker.error_line(result.stderr or '', result.exited)}"
                "; on a machine that cannot pull it, set REGISTRY_IMAGE to a local image "
                "(bash .ci/build-images builds one)")
        port = docker.parse_port(shell.run(local, docker.container_port(container),
                                           what="registry port").stdout)
        address = f"127.0.0.1:{port}"
        wait_ready(local, address, container, policy)
    except BaseException:
        shell.run(local, docker.remove_container(container), check=False)
        raise
    out(f"   registry {image} at {address} (container {container}, volume {volume}; "
        f"ready in {time.monotonic() - started:.1f} s)")
    return Registry(address, port)


def wait_ready(local, address: str, container: str, policy: ReadyPolicy = READY) -> None:
    """Until GET /v2/ answers (200, or 401 with auth on); fail fast if the container died."""
    deadline = time.monotonic() + policy.budget
    last = ""
    while True:
        try:
            with urllib.request.urlopen(f"http://{address}/v2/", timeout=2) as answer:
                if answer.status == 200:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                return
            last = f"HTTP {exc.code}"
        except OSError as exc:
            last = str(getattr(exc, "reason", exc))
        state = shell.run(local, docker.container_state(container), check=False).stdout.strip()
        if state not in ("running", "created"):
            logs = shell.run(local, docker.container_logs(container, 15), check=False,
                             merge_stderr=True).stdout.strip()
            raise DeployError(f"registry: {container} is {state or 'gone'} before it answered"
                              + (f"; its log:\n{logs}" if logs else ""))
        if time.monotonic() >= deadline:
            raise DeployTimeout(f"registry: {container} did not answer http://{address}/v2/ "
                                f"within {policy.budget:g} s (last: {last})")
        time.sleep(policy.interval)


# --- pushing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Published:
    ref: str  # the plain name the Compose file uses, e.g. app-backend:abc1234
    id: str  # its image ID here: what every host must end up with
    remote: docker.Ref  # its name in the registry (the domain as this machine reaches it)

    def at(self, domain: str) -> str:
        """The name a host pulls: the same path and tag at the host's view of the registry."""
        return str(docker.Ref(domain, self.remote.path, self.remote.tag))


def publish(local, registry: Registry, refs: Iterable[str], *, out: Output | None = None
            ) -> list[Published]:
    """Push each image once (only layers the registry lacks travel); return its ID here."""
    out = as_output(out)
    published = []
    for text in dict.fromkeys(refs):
        try:
            ref = docker.parse_ref(text)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if ref.digest:
            raise ConfigError(f"image {text}: a digest reference cannot be re-tagged on a host; "
                              "name the image by a tag")
        plain = str(ref)
        id_ = image_id(local, plain)
        if id_ is None:
            raise DeployError(f"image {plain} is not on this machine (docker image inspect "
                              "finds none): build or pull it before shipping")
        remote = ref.in_registry(registry.address)
        started = time.monotonic()
        if str(remote) != plain:
            shell.run(local, docker.tag(plain, str(remote)), what="tag")
        try:
            shell.run(local, docker.push(str(remote), registry.config_dir), what="push")
        finally:
            if str(remote) != plain:
                shell.run(local, docker.untag(str(remote)), check=False)
        out(f"   pushed {plain} ({id_[:19]}) to {registry.address} "
            f"in {time.monotonic() - started:.1f} s")
        published.append(Published(plain, id_, remote))
    return published


def manifest(address: str, remote: docker.Ref) -> dict:
    """The image manifest (schema 2) of a tag in an open registry: config and layers, each
    with its digest and compressed size (for the tests and benchmarks)."""
    request = urllib.request.Request(
        f"http://{address}/v2/{remote.path}/manifests/{remote.tag}",
        headers={"Accept": MANIFEST_V2})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)
