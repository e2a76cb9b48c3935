"""Releases on a host: bundle, upload, ship the images, switch `current`, keep N, roll back.

    DEPLOY_PATH/releases/<UTC time>-<tag>/   compose file, proxy config, migrations, .env
    DEPLOY_PATH/current -> releases/<…>       the live release

A release directory holds no build context: the images arrive already built
(deploy/fleet/rollout.py, deploy/fleet/shipping.py), and the backend image of release
`<time>-<tag>` is
BACKEND_IMAGE:<tag> on the host. Compose runs BACKEND_IMAGE:live, which the switch moves.
"""

from __future__ import annotations

import io
import re
import tarfile
import time
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from deploy import shell
from deploy.commands import docker
from deploy.defaults import DEPLOY_LOCK_WAIT
from deploy.errors import CheckFailed, ConfigError, DeployError
from deploy.fleet import hostlock, shipping, trust, tunnel
from deploy.fleet import hosts as remote
from deploy.fleet.imagenames import build_contexts, image_names, release_image
from deploy.machine.stack import require_stack_settings
from deploy.migrate.files import parse_file
from deploy.output import Output, as_output
from deploy.release.revision import revision
from deploy.release.sequence import Deploy, prepare_on_host, rollback_on_host, switch_on_host
from deploy.release.summary import print_summary
from deploy.settings import Settings

# <UTC time>-<tag>, the tag being deploy/release/revision.py's: the short sha, <sha>-dirty-<hash>
# for a tree with uncommitted changes (--allow-dirty), nogit-<UTC time> outside git.
RELEASE_RE = re.compile(r"^\d{8}T\d{6}Z-(?:[0-9a-f]{4,40}(?:-dirty-[0-9a-f]{4,64})?"
                        r"|nogit(?:-\d{8}T\d{6}Z)?)$")
_VAR_RE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)")
# Always shipped, whether the compose file names them or not.
ALWAYS = ("COMPOSE_PROJECT_NAME", "DEPLOY_ENV", "MIGRATION_TABLE")
# The sample stack's way to give its backend a database outside the stack: on a host
# without a database service (DB_SERVICE=), DATABASE_URL unless the host sets it.
APP_DATABASE = "APP_DATABASE_URL"


def release_name(now: datetime | None = None, tag: str | None = None) -> str:
    """`<UTC time>-<tag>`: sorts by time; the tag names the backend image."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{tag or revision().tag}"


def image_tag(release: str) -> str:
    """The backend image tag of a release directory: what follows its time."""
    return release.split("-", 1)[1]


def render_env(settings: Settings) -> str:
    """The release's .env: every variable the compose file uses, from the host's settings
    (APP_DATABASE_URL: DATABASE_URL on a host with no database service).

    Written to the host over SFTP with mode 600, never on a command line.
    """
    text = Path(settings.compose_file).read_text(encoding="utf-8")
    names = sorted(set(_VAR_RE.findall(text)) | set(ALWAYS))
    lines = ["# Written by `invoke deploy`; mode 600. Do not edit: the next release replaces it."]
    for name in names:
        value = settings.values.get(name)
        if name == APP_DATABASE and not value and not settings.db_service:
            value = settings.values.get("DATABASE_URL")  # a web host: the shared database
        if value is None:
            continue
        if "\n" in value:
            raise ConfigError(f"{name}: a value with a newline cannot go into the release .env")
        # Compose reads `KEY=value` literally up to the end of the line (v1 and v2 alike
        # for unquoted values), so no quoting that one of them would keep.
        lines.append(f"{name}={value}")
    lines.append(f"COMPOSE_PROJECT_NAME={settings.project_name}")
    # What Compose runs (deploy/machine/stack.py passes the same): a plain `docker compose up`
    # in the release directory starts the live release too.
    lines.append(f"BACKEND_IMAGE={settings.backend_image}")
    lines.append("BACKEND_TAG=live")
    return "\n".join(dict.fromkeys(lines)) + "\n"


def tar_member(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    """A release tarball's filter: no bytecode, no .env (secrets travel separately), and
    files owned by root on the host rather than by whoever packed them here."""
    parts = PurePosixPath(info.name).parts
    if "__pycache__" in parts or info.name.endswith((".pyc", ".env")):
        return None
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def bundle(settings: Settings, contexts: Iterable[str] = ()) -> bytes:
    """The compose file and the migrations, as a tar.gz.

    No build context: nothing is built on a host. The Compose file's `build:` sections
    stay (`invoke deploy` here uses them); each context (``contexts``, absolute paths here)
    is an empty directory in the release directory, so Compose v1, which checks that a
    build context exists even for `up --no-build`, accepts the file."""
    compose_rel = remote.relative_compose(settings)
    root = Path.cwd().resolve()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
        for context in sorted(set(contexts)):
            try:
                rel = Path(context).resolve().relative_to(root)
            except ValueError:
                continue  # outside the project: Compose v1 on the host says which
            if rel.parts:
                info = tarfile.TarInfo(rel.as_posix())
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
        tar.add(settings.compose_file, arcname=str(compose_rel), filter=tar_member)
        tar.add(settings.migrations_dir, arcname="migrations", filter=tar_member)
    return buf.getvalue()


_UNPACK = 'tar -xzf "$1/bundle.tar.gz" -C "$1" && rm -f "$1/bundle.tar.gz"'


def upload(c, settings: Settings, release: str, out: Output,
           contexts: Iterable[str] = ()) -> PurePosixPath:
    """SFTP (no shell on the host) for the directory, the bundle and the .env; one command
    to unpack. DEPLOY_PATH/releases exists: the host lock made it."""
    target = PurePosixPath(settings.deploy_path) / "releases" / release
    data = bundle(settings, contexts)
    env_text = render_env(settings)
    try:
        sftp = c.sftp()
        sftp.mkdir(str(target), mode=0o755)
        with sftp.open(str(target / "bundle.tar.gz"), "wb") as fh:
            fh.write(data)
        env_path = str(target / ".env")
        with sftp.open(env_path, "w") as fh:
            sftp.chmod(env_path, 0o600)  # before any secret is written
            fh.write(env_text)
    except OSError as exc:
        raise DeployError(f"{c.host}: upload to {target} failed: {exc}") from None
    shell.run(c, ["sh", "-c", _UNPACK, "sh", str(target)], what="upload")
    out(f"   uploaded {len(data):,} bytes to {target} (.env mode 600)")
    return target


@dataclass
class HostReleases:
    names: list[str]
    current: str | None

    @property
    def previous(self) -> str | None:
        if self.current not in self.names:
            return None
        index = self.names.index(self.current)
        return self.names[index - 1] if index > 0 else None


_LIST = 'ls -1 "$1/releases" 2>/dev/null; echo "--current--"; readlink "$1/current"; true'
# A new symlink renamed over the old one: `current` is never missing or half-made.
_SWITCH = 'ln -sfn "releases/$2" "$1/.current-$2" && mv -T "$1/.current-$2" "$1/current"'


def list_releases(c, settings: Settings) -> HostReleases:
    listing = shell.run(c, ["sh", "-c", _LIST, "sh", settings.deploy_path],
                        what="releases").stdout
    names_part, _, link = listing.partition("--current--")
    names = sorted(n for n in names_part.split() if RELEASE_RE.match(n))
    link = link.strip()
    return HostReleases(names, PurePosixPath(link).name if link else None)


def switch_current(c, settings: Settings, release: str) -> None:
    shell.run(c, ["sh", "-c", _SWITCH, "sh", settings.deploy_path, release], what="switch")


def prune(c, settings: Settings, keep: int, out: Output, state: HostReleases) -> list[str]:
    """Keep the newest `keep` release directories (and `current`), removing the others in
    one command; then every backend image but those of the releases kept (never `live`
    or one a container uses: deploy/fleet/shipping.py), also one shipped for a release no host
    switched to (its directory was removed). Returns the releases kept."""
    old = [n for n in state.names[:-keep] if n != state.current] if keep else []
    if old:
        root = PurePosixPath(settings.deploy_path) / "releases"
        shell.run(c, ["rm", "-rf", *(str(root / n) for n in old)], what="prune")
        out(f"   removed {len(old)} old release(s), keeping {keep}: {', '.join(old)}")
    kept = [n for n in state.names if n not in old]
    for name in image_names(settings) or (settings.backend_image,):
        shipping.prune(c, name, 0, protect=[image_tag(n) for n in kept], out=out)
    return kept


@dataclass
class Staged:
    """A host holding everything a release needs (its directory, its images), under its
    deploy lock, nothing switched yet: what `staged` yields to `switch_host`."""

    c: object
    settings: Settings
    release: str
    tag: str
    before: HostReleases
    started: float
    switched: bool = False
    prepared: Deploy | None = None  # the new release running beside the old, not switched


@contextmanager
def staged(c, settings: Settings, rollout, *, lock_wait: float = DEPLOY_LOCK_WAIT,
           out: Output):
    """lock → upload the release directory → ship the images (deploy/fleet/rollout.py made and
    published them here). Nothing on the host changes what it serves; the lock is held
    until the block ends, and the release directory is removed then unless the host
    switched to it (`switch_host`). `invoke deploy --hosts` stages every host before any
    host switches."""
    require_stack_settings(settings)
    started = time.perf_counter()
    trust.open_connection(c, settings)
    published = rollout.images_for(settings)
    release = release_name(tag=rollout.tag)
    with hostlock.host_lock(c, settings, wait=lock_wait, release=release, out=out):
        state = Staged(c, settings, release, rollout.tag, list_releases(c, settings), started)
        try:
            out.step(f"upload {release}", upload, c, settings, release, out,
                     build_contexts(settings, rollout.local))
            out.step("ship images", shipping.ship, c, rollout.registry, published, out=out)
            yield state
        finally:
            if not state.switched:
                if state.prepared is not None:
                    try:
                        state.prepared.undo()
                    except Exception as exc:  # noqa: BLE001 - the lock and directory still go
                        out(f"   could not take back the prepared release: {exc}")
                _remove(c, settings, release)
                out(f"   {release} not switched to: its directory removed; "
                    f"{state.before.current or 'nothing'} still current")


def prepare_host(state: Staged, *, out: Output, migrate: bool = True) -> None:
    """A staged host, up to the point of no return (sequence.prepare_on_host), nothing
    built there: migrate through the tunnel, the new containers started beside the old
    ones, healthy, and their proxy slots checked, taking no traffic. `invoke deploy
    --hosts` prepares every host before any host switches; `staged` takes a prepared
    release back when its host never switches. ``migrate=False``: its database is shared
    and was migrated once for every host (deploy/fleet/databases.py)."""
    c, settings = state.c, state.settings
    state.prepared = prepare_on_host(
        c, remote.release_paths(settings, state.release), state.tag,
        database=lambda: _database(c, settings),
        base_unchanged=_same_stack_config(c, settings, state), out=out, migrate=migrate)


def switch_host(state: Staged, *, out: Output) -> dict:
    """A staged host (prepared first when it is not yet: `prepare_host`): the switch
    (sequence.switch_on_host) → `current` → prune releases and images. A failure before
    the switch leaves the previous release serving (it was never stopped)."""
    c, settings, release = state.c, state.settings, state.release

    def on_switch() -> None:
        switch_current(c, settings, release)
        state.switched = True

    if state.prepared is None:
        prepare_host(state, out=out)
    summary = switch_on_host(state.prepared, on_switch)
    prune(c, settings, settings.keep_releases, out,
          HostReleases(sorted({*state.before.names, release}), release))
    out(f"deploy: {c.host} now serves {release} (done in "
        f"{time.perf_counter() - state.started:.1f} s)")
    print_summary(summary, out)
    return {**summary, "release": release}


# Exit 0 when the new release's compose file and .env are byte for byte the current one's.
_SAME = 'cmp -s "$1/$3" "$2/$3" && cmp -s "$1/.env" "$2/.env"'


def _same_stack_config(c, settings: Settings, state: Staged) -> bool:
    """Does the new release run postgres and the proxy exactly as the current one does?
    (compared on the host: the .env holds secrets)."""
    if not state.before.current:
        return False
    root = PurePosixPath(settings.deploy_path) / "releases"
    result = shell.run(c, ["sh", "-c", _SAME, "sh", str(root / state.before.current),
                           str(root / state.release), str(remote.relative_compose(settings))],
                       check=False)
    return result.exited == 0


@contextmanager
def _database(c, settings: Settings):
    with tunnel.database_url(c, settings) as url:
        yield settings.with_database_url(url)


def _remove(c, settings: Settings, release: str) -> None:
    path = PurePosixPath(settings.deploy_path) / "releases" / release
    shell.run(c, ["rm", "-rf", str(path)], check=False)


@dataclass(frozen=True)
class ReleaseImage:
    release: str
    image: str  # BACKEND_IMAGE:<tag>
    id: str | None  # on the host; None when it is gone
    current: bool
    live: bool  # `live` names this image


def release_images(c, settings: Settings, state: HostReleases | None = None
                   ) -> list[ReleaseImage]:
    """Each release kept on the host with its (first app service's) image and that image's
    ID there."""
    state = state or list_releases(c, settings)
    name = release_image(settings)
    listing = shell.run(c, docker.list_tags(name), what="image list")
    ids = dict(docker.parse_tags(listing.stdout))
    live = ids.get(docker.LIVE)
    rows = []
    for release in state.names:
        tag = image_tag(release)
        id_ = ids.get(tag)
        rows.append(ReleaseImage(release, f"{name}:{tag}", id_,
                                 release == state.current, id_ is not None and id_ == live))
    return rows


def format_release(row: ReleaseImage) -> str:
    mark = "*" if row.current else " "
    image_id = row.id or "(image no longer on the host)"
    return f"{mark} {row.release}  {row.image}  {image_id}" + ("  live" if row.live else "")


def rollback_host(c, settings: Settings, *, lock_wait: float = DEPLOY_LOCK_WAIT,
                  out: Output | None = None) -> str:
    """Switch back to the previous release's image, already on the host: no build, no
    upload; the same proxy switch as a deploy. Migrations stay applied."""
    out = as_output(out)
    trust.open_connection(c, settings)
    with hostlock.host_lock(c, settings, wait=lock_wait, release="rollback", out=out):
        state = list_releases(c, settings)
        target = state.previous
        if target is None:
            raise CheckFailed(f"rollback: {c.host} has no release before "
                          f"{state.current or '(none)'} to return to")
        row = next(r for r in release_images(c, settings, state) if r.release == target)
        if row.id is None:
            raise DeployError(
                f"rollback: {c.host} no longer has {row.image}, the image of release {target} "
                f"(deploys keep the last KEEP_RELEASES={settings.keep_releases}); nothing was "
                f"changed. Deploy that commit again instead")
        out(f"   rolling back to {row.image} ({row.id}), already on {c.host}")
        rollback_on_host(c, remote.release_paths(settings, target), image_tag(target),
                         on_switch=lambda: switch_current(c, settings, target), out=out)
        notes = _rollback_notes(c, settings, state.current, target)
    out(f"rollback: {c.host} now serves {target} (was {state.current})")
    out("rollback: migrations are NOT reversed; the schema stays as the newer release left it.")
    if notes:
        out("rollback: documented undo (-- ROLLBACK:) of the migrations added since:")
        for filename, lines in notes:
            for line in lines or ["(no -- ROLLBACK: note)"]:
                out(f"   {filename}: {line}")
    return target


_LIST_MIGRATIONS = 'ls -1 "$1" 2>/dev/null; echo "--"; ls -1 "$2" 2>/dev/null; true'


def _rollback_notes(c, settings: Settings, newer: str, older: str) -> list:
    """The `-- ROLLBACK:` notes of the migrations `newer` has and `older` lacks (one command
    lists both; the files are read only when there are such migrations)."""
    root = PurePosixPath(settings.deploy_path) / "releases"
    listing = shell.run(c, ["sh", "-c", _LIST_MIGRATIONS, "sh",
                            str(root / newer / "migrations"), str(root / older / "migrations")],
                        check=False).stdout
    new_part, _, old_part = listing.partition("--")

    def sql(text: str) -> set[str]:
        return {n for n in text.split() if n.endswith(".sql")}

    added = sorted(sql(new_part) - sql(old_part), key=lambda n: int(n.split("_")[0])
                   if n.split("_")[0].isdigit() else -1)
    notes = []
    sftp = c.sftp() if added else None
    for name in added:
        path = root / newer / "migrations" / name
        with sftp.open(str(path), "r") as fh:
            data = fh.read()
        try:
            notes.append((name, list(parse_file(Path(name), data).rollback)))
        except DeployError:
            notes.append((name, []))
    return notes
