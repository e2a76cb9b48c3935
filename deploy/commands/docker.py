"""Docker as data: argv builders and parsers for images, their references and containers.

Like compose.py, nothing here runs a process (docs/design.md, "commands are data"): every
builder returns a ``list[str]`` that deploy/shell.py runs, on this machine or on a host.
The release switch uses the container and image builders; deploy/fleet/shipping.py and
deploy/fleet/registry.py the references, registry and pruning ones.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

RELEASE_LABEL = "deploy.release"
# On the proxy image: a hash of what it was built from (builds.proxy_source).
PROXY_SOURCE_LABEL = "deploy.proxy.source"
# On the proxy image: the ID of the PROXY_IMAGE it was built on (a newer one pulled: rebuilt).
PROXY_BASE_LABEL = "deploy.proxy.base"
# The tag Compose always runs: the switch moves it to the release that serves; never pruned.
LIVE = "live"

# Docker's reference grammar (distribution/reference), in its parts.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_DOMAIN_RE = re.compile(r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
                        r"(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
                        r"|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}$")
IMAGE_ID_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
# The port the registry listens on inside its container (registry:2 and the stand-in).
REGISTRY_PORT = 5000
REGISTRY_STORAGE = "/var/lib/registry"


@dataclass(frozen=True)
class Ref:
    """An image reference: [domain/]path[:tag][@digest]."""

    domain: str | None
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        return f"{self.domain}/{self.path}" if self.domain else self.path

    def __str__(self) -> str:
        return (self.name + (f":{self.tag}" if self.tag else "")
                + (f"@{self.digest}" if self.digest else ""))

    def in_registry(self, registry: str) -> Ref:
        """The same image under `registry` (host[:port][/namespace]): a registry-less or
        foreign name is moved under it, path and tag kept; a name already there is kept."""
        domain, _, namespace = registry.partition("/")
        if self.domain == domain and (not namespace or self.path.startswith(namespace + "/")):
            return self
        path = f"{namespace}/{self.path}" if namespace else self.path
        return Ref(domain, path, self.tag, self.digest)


def parse_ref(text: str, what: str = "image") -> Ref:
    """Docker's grammar; a tag-less name means `:latest`, as Docker reads it."""
    rest, at, digest = text.partition("@")
    if at and not _DIGEST_RE.match(digest):
        raise ValueError(f"{what}: {text!r} has a malformed digest")
    name, tag = rest, None
    last = rest.rsplit("/", 1)[-1]
    if ":" in last:
        name, _, tag = rest.rpartition(":")
        if not _TAG_RE.match(tag):
            raise ValueError(f"{what}: {text!r} has a malformed tag {tag!r}")
    first, slash, remainder = name.partition("/")
    domain = None
    if slash and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        if not _DOMAIN_RE.match(first):
            raise ValueError(f"{what}: {text!r} has a malformed registry {first!r}")
        domain, name = first, remainder
    if not _PATH_RE.match(name):
        raise ValueError(f"{what}: {text!r} is not an image name (lower-case letters, digits, "
                         "'.', '_', '-', '/' between components)")
    if tag is None and not digest:
        tag = "latest"
    return Ref(domain, name, tag, digest or None)


def parse_registry(text: str, what: str = "DEPLOY_REGISTRY") -> str:
    """host[:port][/namespace] of a registry; the domain must look like one (a dot, a
    port or localhost), or Docker would read it as a path on Docker Hub."""
    text = text.strip().removeprefix("https://").removeprefix("http://").rstrip("/")
    domain, _, namespace = text.partition("/")
    if not (_DOMAIN_RE.match(domain) and ("." in domain or ":" in domain
                                          or domain == "localhost")):
        raise ValueError(f"{what}: {text!r} is not a registry address (host[:port][/namespace]"
                         ", e.g. ghcr.io/acme or registry.example.com:5000)")
    if namespace and not _PATH_RE.match(namespace):
        raise ValueError(f"{what}: {text!r} has a malformed namespace {namespace!r}")
    return text


def registry_domain(registry: str) -> str:
    """What `docker login` takes: the registry's host[:port], without a namespace."""
    return registry.partition("/")[0]


# --- argv builders ------------------------------------------------------------------------


def _docker(config: str | None) -> list[str]:
    """`docker`, with a client config directory of its own when given (`--config`): a
    login there never touches ~/.docker, and removing the directory forgets it."""
    return ["docker", "--config", config] if config else ["docker"]


def image_id(*refs: str) -> list[str]:
    """Prints each image's ID (its config digest, which push and pull keep), one a line;
    fails when any is missing."""
    return ["docker", "image", "inspect", "--format", "{{.Id}}", *refs]


def tag(source: str, target: str) -> list[str]:
    return ["docker", "image", "tag", source, target]


def untag(ref: str) -> list[str]:
    """Remove one name (the switch's `live`, a registry's name for a pushed image); the
    image stays while another name or a container holds it."""
    return ["docker", "image", "rm", ref]


def remove_tags(refs: Iterable[str]) -> list[str]:
    refs = list(refs)
    if not refs or any(r.startswith("-") for r in refs):
        raise ValueError(f"image names expected, got {refs!r}")
    return ["docker", "image", "rm", *refs]


def push(ref: str, config: str | None = None) -> list[str]:
    return [*_docker(config), "image", "push", ref]


def pull(ref: str, config: str | None = None) -> list[str]:
    return [*_docker(config), "image", "pull", ref]


def login(registry: str, user: str, config: str | None = None) -> list[str]:
    """The password goes to stdin (shell.run's input), never onto this command line."""
    return [*_docker(config), "login", "--username", user, "--password-stdin",
            registry_domain(registry)]


def temp_dir() -> list[str]:
    """A private (mode 700) directory for a client config holding a login."""
    return ["mktemp", "-d", "-t", "deploy-docker-config.XXXXXXXX"]


def remove_dir(path: str) -> list[str]:
    return ["rm", "-rf", "--", path]


def run_registry(name: str, image: str, volume: str, *, bind: str = "127.0.0.1",
                 labels: Mapping[str, str] = ()) -> list[str]:
    """The registry container: published on `bind` only, on a port Docker picks (read it
    with `container_port`), its storage in a named volume so that it outlives the
    container and a later push sends only new layers."""
    argv = ["docker", "container", "run", "--detach", "--name", name,
            "--publish", f"{bind}::{REGISTRY_PORT}",
            "--volume", f"{volume}:{REGISTRY_STORAGE}"]
    for key, value in dict(labels).items():
        argv += ["--label", f"{key}={value}"]
    return argv + [image]


def container_port(name: str, port: int = REGISTRY_PORT) -> list[str]:
    return ["docker", "container", "port", name, f"{port}/tcp"]


def container_state(name: str) -> list[str]:
    """Prints running, exited, …; exit 1 when there is no such container."""
    return ["docker", "container", "inspect", "--format", "{{.State.Status}}", name]


def container_logs(name: str, tail: int) -> list[str]:
    return ["docker", "container", "logs", "--tail", str(int(tail)), name]


def remove_container(name: str) -> list[str]:
    return ["docker", "container", "rm", "--force", "--volumes", name]


def list_tags(repository: str) -> list[str]:
    """Every `repository:tag` here, one `tag<TAB>id` a line."""
    return ["docker", "image", "ls", "--no-trunc", "--format", "{{.Tag}}\t{{.ID}}",
            repository]


def created(ids: Iterable[str]) -> list[str]:
    """`id<TAB>created` for each image (RFC 3339 with nanoseconds)."""
    ids = list(ids)
    if not ids or any(not IMAGE_ID_RE.match(i) for i in ids):
        raise ValueError(f"image IDs expected, got {ids!r}")
    return ["docker", "image", "inspect", "--format", "{{.Id}}\t{{.Created}}", *ids]


def all_containers() -> list[str]:
    return ["docker", "container", "ls", "--all", "--quiet", "--no-trunc"]


def container_images(containers: Iterable[str]) -> list[str]:
    """The image ID each container was created from (running or not)."""
    containers = list(containers)
    if not containers or any(not c or c.startswith("-") for c in containers):
        raise ValueError(f"container IDs expected, got {containers!r}")
    return ["docker", "container", "inspect", "--format", "{{.Image}}", *containers]


# --- parsers ------------------------------------------------------------------------------


def error_line(stderr: str, exited: int) -> str:
    """The line of a failed docker command that says why: its last line, minus the
    "Run 'docker … --help'" hint the CLI appends to some errors."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()
             and not re.match(r"^(See|Run) '.*--help'", line.strip())]
    return lines[-1] if lines else f"exit code {exited}"


def parse_image_id(output: str) -> str | None:
    value = output.strip()
    return value if IMAGE_ID_RE.match(value) else None


def parse_port(output: str, bind: str = "127.0.0.1") -> int:
    """`docker port` prints one `address:port` a line (IPv4 and IPv6 maybe both)."""
    for line in output.splitlines():
        address, _, port = line.strip().rpartition(":")
        if address == bind and port.isdigit():
            return int(port)
    raise ValueError(f"no port published on {bind} in {output.strip()!r}")


def parse_tags(output: str) -> list[tuple[str, str]]:
    """(tag, id) pairs from `list_tags`; `<none>` tags are not names and are skipped."""
    pairs = []
    for line in output.splitlines():
        tag_, _, id_ = line.strip().partition("\t")
        if tag_ and tag_ != "<none>" and IMAGE_ID_RE.match(id_):
            pairs.append((tag_, id_))
    return pairs


def parse_created(output: str) -> dict[str, datetime]:
    found = {}
    for line in output.splitlines():
        id_, _, when = line.strip().partition("\t")
        if not IMAGE_ID_RE.match(id_):
            continue
        # Go prints nanoseconds; Python takes microseconds.
        m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", when)
        if m:
            fraction = (m.group(2) or "0")[:6].ljust(6, "0")
            zone = "+00:00" if m.group(3) == "Z" else m.group(3)
            found[id_] = datetime.fromisoformat(f"{m.group(1)}.{fraction}{zone}")
    return found


# --- pruning, as a plan -------------------------------------------------------------------


def plan_prune(tags: Iterable[tuple[str, str]], created_at: Mapping[str, datetime],
               keep: int, in_use: Iterable[str] = (), protect: Iterable[str] = ()
               ) -> list[str]:
    """The tags of one repository to remove so that the newest `keep` releases stay.

    A release is a tag other than `live`; newest by the image's creation time (the build,
    which shipping keeps), ties broken by tag. Never removed: `live`, the tags in
    `protect`, and any tag of an image that `live` names or a container (running or
    stopped) was created from. ``keep=0``: exactly those stay (`protect` must name some).
    """
    protect = set(protect)
    if keep < 1 and not (keep == 0 and protect):
        raise ValueError(f"keep must be at least 1 (got {keep}), or 0 with the tags to keep "
                         "in protect")
    pairs = list(tags)
    busy = set(in_use) | {id_ for tag_, id_ in pairs if tag_ == LIVE}
    protected = protect | {LIVE}
    releases = [(tag_, id_) for tag_, id_ in pairs if tag_ != LIVE]

    def age(pair):
        when = created_at.get(pair[1])
        return (when.timestamp() if when else float("-inf"), pair[0])

    releases.sort(key=age, reverse=True)
    return [tag_ for tag_, id_ in releases[keep:]
            if tag_ not in protected and id_ not in busy]


# --- containers and the release switch ---------------------------------------------------

def _ids(ids: Iterable[str]) -> list[str]:
    out = list(ids)
    if not out or any(not i or i.startswith("-") for i in out):
        raise ValueError(f"container or image ids expected, got {out!r}")
    return out


def build(image: str, dockerfile: str, context: str, *, build_args: Mapping[str, str],
          labels: Mapping[str, str], no_cache: bool = False, target: str | None = None,
          also: Iterable[str] = ()) -> list[str]:
    """``also``: more tags for the same image (services sharing one build)."""
    argv = ["docker", "build", "--file", dockerfile, "--tag", image]
    for other in also:
        argv += ["--tag", other]
    if target:
        argv += ["--target", target]
    for key, value in build_args.items():
        argv += ["--build-arg", f"{key}={value}"]
    for key, value in labels.items():
        argv += ["--label", f"{key}={value}"]
    if no_cache:
        argv.append("--no-cache")
    return argv + [context]


def image_release(image: str) -> list[str]:
    """Prints the image's deploy.release label (empty without one); fails without the image."""
    return image_label(image, RELEASE_LABEL)


def image_labels(labels: Iterable[str], *images: str) -> list[str]:
    """Prints, one line per image, its ID then each label (`-` without it); fails when
    any image is missing."""
    fields = " ".join('{{with .Config.Labels}}{{or (index . "' + label + '") "-"}}'
                      '{{else}}-{{end}}' for label in labels)  # an image may have no labels
    return ["docker", "image", "inspect", "--format", "{{.Id}} " + fields, *images]


def image_label(image: str, label: str) -> list[str]:
    """Prints one label of the image (empty without it); fails without the image."""
    return ["docker", "image", "inspect", "--format",
            '{{index .Config.Labels "' + label + '"}}', image]


def stop(ids: Iterable[str], seconds: int | None) -> list[str]:
    """``seconds`` None: each container's own stop timeout (Compose's stop_grace_period)."""
    time = [] if seconds is None else ["--time", str(int(seconds))]
    return ["docker", "stop", *time, *_ids(ids)]


def remove(ids: Iterable[str]) -> list[str]:
    """Remove containers (stopped or not) with their anonymous volumes."""
    return ["docker", "rm", "--force", "--volumes", *_ids(ids)]


def logs(container: str, tail: int) -> list[str]:
    return ["docker", "logs", "--tail", str(int(tail)), *_ids([container])]


def exit_codes(container: str, until: str, since: str = "1h") -> list[str]:
    """The exit code of each time the container stopped (its `die` events), oldest first:
    a container its restart policy started again shows exit code 0 in `docker inspect`.
    ``until``: a time from the daemon, e.g. the container's last StartedAt (RFC 3339, ns):
    a relative one (`0s`) is cut to whole seconds, and would miss a die just before."""
    return ["docker", "events", "--since", since, "--until", until,
            "--filter", f"container={_ids([container])[0]}", "--filter", "event=die",
            "--format", "{{.Actor.Attributes.exitCode}}"]


def healthcheck(container: str, test: Sequence[str]) -> list[str] | None:
    """The container's own healthcheck, run now (`docker exec`), as Docker runs it: a
    ``CMD`` test as is, a ``CMD-SHELL`` one through ``/bin/sh -c``; None when it has none."""
    if len(test) >= 2 and test[0] == "CMD":
        return ["docker", "exec", *_ids([container]), *test[1:]]
    if len(test) == 2 and test[0] == "CMD-SHELL":
        return ["docker", "exec", *_ids([container]), "/bin/sh", "-c", test[1]]
    return None
