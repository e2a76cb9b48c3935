"""Docker images and containers as data: argv builders for the release switch.

Like compose.py, nothing here runs a process: deploy/shell.py does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

RELEASE_LABEL = "deploy.release"
# On the proxy image: a hash of what it was built from (builds.proxy_source).
PROXY_SOURCE_LABEL = "deploy.proxy.source"


def _ids(ids: Iterable[str]) -> list[str]:
    out = list(ids)
    if not out or any(not i or i.startswith("-") for i in out):
        raise ValueError(f"container or image ids expected, got {out!r}")
    return out


def build(image: str, dockerfile: str, context: str, *, build_args: Mapping[str, str],
          labels: Mapping[str, str], no_cache: bool = False) -> list[str]:
    argv = ["docker", "build", "--file", dockerfile, "--tag", image]
    for key, value in build_args.items():
        argv += ["--build-arg", f"{key}={value}"]
    for key, value in labels.items():
        argv += ["--label", f"{key}={value}"]
    if no_cache:
        argv.append("--no-cache")
    return argv + [context]


def tag(source: str, target: str) -> list[str]:
    return ["docker", "tag", source, target]


def image_id(*images: str) -> list[str]:
    """Prints each image's ID, one per line; fails when any is missing."""
    return ["docker", "image", "inspect", "--format", "{{.Id}}", *images]


def image_release(image: str) -> list[str]:
    """Prints the image's deploy.release label (empty without one); fails without the image."""
    return image_label(image, RELEASE_LABEL)


def image_label(image: str, label: str) -> list[str]:
    """Prints one label of the image (empty without it); fails without the image."""
    return ["docker", "image", "inspect", "--format",
            '{{index .Config.Labels "' + label + '"}}', image]


def remove_tag(image: str) -> list[str]:
    """Untag (the image itself stays while another tag or a container uses it)."""
    return ["docker", "image", "rm", "--no-prune", image]


def stop(ids: Iterable[str], seconds: int) -> list[str]:
    return ["docker", "stop", "--time", str(int(seconds)), *_ids(ids)]


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
