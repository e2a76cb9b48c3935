"""Ship images to a host that cannot build or pull them, and prove it runs the exact ones.

Per host (`c` a fabric Connection), after deploy/fleet/registry.py pushed the images once:

1. ask the host for each image's ID; an image it already has with the same ID is skipped;
2. for the rest: with the local registry, a reverse tunnel from the host's 127.0.0.1:<port
   the SSH server picks> to it (Docker treats 127.0.0.0/8 registries as plain HTTP), then
   `docker pull 127.0.0.1:<port>/<path>:<tag>` — the host's engine fetches only the layers
   it lacks; with DEPLOY_REGISTRY, a `docker login` whose password arrives over the SSH
   channel's stdin, into a client config directory removed right after the pulls;
3. tag each pulled image with its plain name (what the Compose file uses) and drop the
   registry's name;
4. verify: `docker image inspect` on the host gives, for every image, the ID it has here.
   The ID is the digest of the image's config, which push and pull keep, so equal IDs mean
   the same layers, command and environment. A difference stops the deploy (exit 1).

Nothing is ever built on a host. `prune` keeps a host's last KEEP_RELEASES backend images.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

from deploy import shell
from deploy.commands import docker
from deploy.errors import ConfigError, DeployError
from deploy.fleet.registry import Published, Registry, login
from deploy.fleet.tunnel import forward_remote
from deploy.machine.builds import image_id
from deploy.output import Output, as_output


class ImageMismatch(DeployError):
    """A host holds another image than the one built here under the same name (exit 1)."""


@dataclass
class ImageResult:
    ref: str
    id: str
    action: str  # "present" (already there, same ID) or "pulled"
    seconds: float = 0.0


@dataclass
class HostReport:
    host: str
    images: list[ImageResult] = field(default_factory=list)
    sent: int = 0  # bytes through the tunnel to the host (registry → host)
    received: int = 0  # bytes through the tunnel from the host
    seconds: float = 0.0

    @property
    def pulled(self) -> list[str]:
        return [r.ref for r in self.images if r.action == "pulled"]


def ship(c, registry: Registry, published: Sequence[Published], *,
         out: Output | None = None) -> HostReport:
    """Bring every published image to the host `c` (only what it lacks), then verify."""
    out = as_output(out)
    report = transfer(c, registry, published, out=out)
    verify(c, {p.ref: p.id for p in published})
    out(f"   {c.host}: verified {len(published)} image(s): "
        + ", ".join(f"{p.ref} {p.id[:19]}" for p in published))
    return report


def transfer(c, registry: Registry, published: Sequence[Published], *,
             out: Output | None = None) -> HostReport:
    """Steps 1–3 of the module docstring: skip what the host has, pull the rest, rename."""
    out = as_output(out)
    started = time.monotonic()
    report = HostReport(c.host)
    missing = []
    for p in published:
        if image_id(c, p.ref) == p.id:
            report.images.append(ImageResult(p.ref, p.id, "present"))
            out(f"   {c.host}: {p.ref} already there ({p.id[:19]})")
        else:
            missing.append(p)
    if missing:
        with _pull_from(c, registry) as (tunnel_port, config_dir, forward):
            for p in missing:
                name = pull_name(p, registry, tunnel_port)
                report.images.append(_pull(c, p, name, config_dir, out))
        if forward is not None:  # closed: every byte it carried is counted
            report.sent, report.received = forward.bytes_out, forward.bytes_in
            out(f"   {c.host}: {report.sent:,} bytes through the tunnel to the host")
    report.seconds = time.monotonic() - started
    return report


def pull_name(p: Published, registry: Registry, tunnel_port: int | None) -> str:
    """What the host pulls: through the tunnel, the pushed path and tag at the host's
    127.0.0.1:<tunnel port>; from DEPLOY_REGISTRY, the very name pushed there."""
    if registry.tunnelled:
        return p.at(f"127.0.0.1:{tunnel_port}")
    return str(p.remote)


def _pull(c, p: Published, name: str, config_dir: str | None, out: Output) -> ImageResult:
    started = time.monotonic()
    result = shell.run(c, docker.pull(name, config_dir), check=False)
    if result.exited != 0:
        raise DeployError(f"{c.host}: docker pull {name} failed: "
                          + docker.error_line(result.stderr or result.stdout or "",
                                              result.exited))
    if name != p.ref:
        shell.run(c, docker.tag(name, p.ref), what=f"{c.host}: tag")
        shell.run(c, docker.untag(name), what=f"{c.host}: untag")
    seconds = time.monotonic() - started
    out(f"   {c.host}: pulled {p.ref} in {seconds:.1f} s")
    return ImageResult(p.ref, p.id, "pulled", seconds)


@contextmanager
def _pull_from(c, registry: Registry) -> Iterator[tuple[int | None, str | None, object]]:
    """(the tunnel's port on the host, client config dir, the tunnel's Forward): None for
    what this registry does not need."""
    if registry.tunnelled:
        import paramiko  # a heavy import, only for a host reached through the tunnel

        with ExitStack() as stack:
            try:
                forward = stack.enter_context(forward_remote(
                    c.client.get_transport(), "127.0.0.1", registry.local_port))
            except paramiko.SSHException as exc:
                raise ConfigError(
                    f"{c.host}: the SSH server refused a reverse tunnel to the registry "
                    f"({exc}); allow it in the host's sshd_config: AllowTcpForwarding yes "
                    "(or remote)") from None
            yield forward.port, None, forward
        return
    if not registry.user:
        yield None, None, None
        return
    made = shell.run(c, docker.temp_dir(), what=f"{c.host}: mktemp")
    config_dir = made.stdout.strip()
    try:
        login(c, registry, where=c.host, config_dir=config_dir)
        yield None, config_dir, None
    finally:
        shell.run(c, docker.remove_dir(config_dir), check=False)


def verify(c, expected: Mapping[str, str]) -> None:
    """Every image on the host has the ID it has here; else ImageMismatch naming them all."""
    wrong = []
    for ref, want in expected.items():
        got = image_id(c, ref)
        if got != want:
            wrong.append(f"{ref}: expected {want}, the host has {got or 'no such image'}")
    if wrong:
        raise ImageMismatch(f"{c.host}: image check failed: " + "; ".join(wrong)
                            + " (the host does not run what was built and tested here)")


# --- pruning ------------------------------------------------------------------------------


def prune(c, repository: str, keep: int, *, protect: Iterable[str] = (),
          out: Output | None = None) -> list[str]:
    """Remove `repository:<tag>` images beyond the newest `keep` (never `live`, the tags in
    `protect`, or an image a container uses); the tags removed."""
    out = as_output(out)
    tags = docker.parse_tags(shell.run(c, docker.list_tags(repository),
                                       what="image list").stdout)
    protect = set(protect)
    named = [t for t, _ in tags if t != docker.LIVE]
    if len(named) <= keep or all(t in protect for t in named):
        return []  # nothing beyond the newest `keep`, or all protected: no need to ask more
    ids = sorted({id_ for _, id_ in tags})
    created_at = docker.parse_created(shell.run(c, docker.created(ids), check=False).stdout)
    containers = shell.run(c, docker.all_containers(), what="container list").stdout.split()
    in_use: set[str] = set()
    if containers:
        # A container removed in between makes inspect fail for it alone: use the rest.
        listing = shell.run(c, docker.container_images(containers), check=False).stdout
        in_use = {line.strip() for line in listing.splitlines() if line.strip()}
    doomed = docker.plan_prune(tags, created_at, keep, in_use, protect)
    if not doomed:
        return []
    refs = [f"{repository}:{t}" for t in doomed]
    result = shell.run(c, docker.remove_tags(refs), check=False)
    host = getattr(c, "host", None) or "here"
    if result.exited != 0:
        out(f"   {host}: could not remove every old image: "
            + docker.error_line(result.stderr or "", result.exited))
    kept = f"keeping {keep}" if keep else "keeping those of the releases kept"
    out(f"   {host}: removed {len(doomed)} old image(s) of {repository}, {kept}: "
        + ", ".join(doomed))
    return doomed
