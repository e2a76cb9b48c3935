"""Releases on a host: bundle, upload, switch `current`, keep N, roll back.

    DEPLOY_PATH/releases/<UTC time>-<git sha>/   compose files, build context, migrations, .env
    DEPLOY_PATH/current -> releases/<…>           the live release
"""

from __future__ import annotations

import io
import re
import subprocess
import tarfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from deploy import remote, shell
from deploy.errors import ConfigError, DeployError, Refused
from deploy.lifecycle import Stack, StepTimer, print_summary
from deploy.settings import Settings

# <UTC time>-<image tag>: the tag is release_switch.release_id() (git sha, or
# <sha>-dirty-<hash>), the backend image on the host is BACKEND_IMAGE:<tag>.
RELEASE_RE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-z][0-9a-z-]*$")
_VAR_RE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)")
# Always shipped, whether the compose file names them or not.
ALWAYS = ("COMPOSE_PROJECT_NAME", "DEPLOY_ENV", "MIGRATION_TABLE")


def git_sha(cwd: Path | None = None) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=cwd,
                             capture_output=True, text=True, timeout=10)
    except OSError:
        return "nogit"
    sha = out.stdout.strip().lower()
    return sha if out.returncode == 0 and re.fullmatch(r"[0-9a-f]+", sha) else "nogit"


def release_name(now: datetime | None = None, sha: str | None = None) -> str:
    from deploy.release_switch import release_id

    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{sha or release_id()}"


def image_tag(release: str) -> str:
    """The backend image tag of a release directory: what follows its time."""
    return release.split("-", 1)[1]


def render_env(settings: Settings) -> str:
    """The release's .env: every variable the compose file uses, from the host's settings.

    Written to the host over SFTP with mode 600, never on a command line.
    """
    text = Path(settings.compose_file).read_text(encoding="utf-8")
    names = sorted(set(_VAR_RE.findall(text)) | set(ALWAYS))
    lines = ["# Written by `invoke deploy`; mode 600. Do not edit: the next release replaces it."]
    for name in names:
        value = settings.values.get(name)
        if value is None:
            continue
        if "\n" in value:
            raise ConfigError(f"{name}: a value with a newline cannot go into the release .env")
        # Compose reads `KEY=value` literally up to the end of the line (v1 and v2 alike
        # for unquoted values), so no quoting that one of them would keep.
        lines.append(f"{name}={value}")
    lines.append(f"COMPOSE_PROJECT_NAME={settings.project_name}")
    return "\n".join(dict.fromkeys(lines)) + "\n"


def bundle(settings: Settings) -> bytes:
    """deploy/ (package and stack), migrations/ and .dockerignore, as a tar.gz."""
    package = Path(__file__).resolve().parent
    root = Path.cwd()

    def skip(info: tarfile.TarInfo):
        parts = PurePosixPath(info.name).parts
        if "__pycache__" in parts or info.name.endswith((".pyc", ".env")):
            return None
        if parts[:2] == ("deploy", "hosts"):
            return None  # other hosts' settings never travel
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
        tar.add(package, arcname="deploy", filter=skip)
        tar.add(settings.migrations_dir, arcname="migrations", filter=skip)
        compose_rel = remote.relative_compose(settings)
        if compose_rel.parts[0] != "deploy":
            tar.add(Path(settings.compose_file).parent,
                    arcname=str(compose_rel.parent), filter=skip)
        dockerignore = root / ".dockerignore"
        if dockerignore.is_file():
            tar.add(dockerignore, arcname=".dockerignore", filter=skip)
    return buf.getvalue()


_UNPACK = 'tar -xzf "$1/bundle.tar.gz" -C "$1" && rm -f "$1/bundle.tar.gz"'


def upload(c, settings: Settings, release: str, out) -> PurePosixPath:
    """SFTP (no shell on the host) for the directory, the bundle and the .env; one command
    to unpack. DEPLOY_PATH/releases exists: the host lock made it."""
    target = PurePosixPath(settings.deploy_path) / "releases" / release
    data = bundle(settings)
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


def prune(c, settings: Settings, keep: int, out, state: HostReleases) -> None:
    """Keep the newest `keep` releases (and `current`); one command for all the others."""
    old = [n for n in state.names[:-keep] if n != state.current] if keep else []
    if old:
        root = PurePosixPath(settings.deploy_path) / "releases"
        shell.run(c, ["rm", "-rf", *(str(root / n) for n in old)], what="prune")
        out(f"   removed {len(old)} old release(s), keeping {keep}: {', '.join(old)}")


def deploy_host(c, settings: Settings, *, build: bool = True, lock_wait: float = 300.0,
                out=print, stream=None) -> dict:
    """One host: lock → upload → the zero-downtime sequence of release_switch.py on the
    host (build there, migrate through the tunnel, start new beside old, switch its proxy,
    drain) → `current` → prune.

    A failure before the switch leaves the previous release serving (it was never
    stopped) and removes the failed release's directory.
    """
    from deploy.lifecycle import require_stack_settings
    from deploy.release_switch import deploy as switch_deploy

    require_stack_settings(settings)
    started = time.perf_counter()
    remote.open_connection(c, settings)
    release = release_name()
    timer = StepTimer(out)
    with remote.host_lock(c, settings, wait=lock_wait, release=release, out=out):
        before = list_releases(c, settings)
        try:
            timer.step(f"upload {release}", upload, c, settings, release, out)
        except DeployError:
            _remove(c, settings, release)
            raise
        switched = []

        def on_switch() -> None:
            switch_current(c, settings, release)
            switched.append(release)

        try:
            summary = switch_deploy(c, remote.release_paths(settings, release), build=build,
                                    out=out, stream=stream, release=image_tag(release),
                                    database=lambda: _database(c, settings),
                                    on_switch=on_switch)
        except BaseException:
            if not switched:
                _remove(c, settings, release)
            raise
        prune(c, settings, settings.keep_releases, out,
              HostReleases(sorted({*before.names, release}), release))
    out(f"deploy: {c.host} now serves {release} (done in {time.perf_counter() - started:.1f} s)")
    print_summary(summary, out)
    return {**summary, "release": release}


@contextmanager
def _database(c, settings: Settings):
    with remote.database_url(c, settings) as url:
        yield settings.with_database_url(url)


def _remove(c, settings: Settings, release: str) -> None:
    path = PurePosixPath(settings.deploy_path) / "releases" / release
    shell.run(c, ["rm", "-rf", str(path)], check=False)


def rollback_host(c, settings: Settings, *, lock_wait: float = 300.0, out=print,
                  stream=None) -> str:
    """Switch `current` to the previous release and bring it up; migrations stay applied."""
    from deploy.release_switch import deploy as switch_deploy
    from deploy.release_switch import image, image_id

    remote.open_connection(c, settings)
    with remote.host_lock(c, settings, wait=lock_wait, release="rollback", out=out):
        state = list_releases(c, settings)
        target = state.previous
        if target is None:
            raise Refused(f"rollback: {c.host} has no release before "
                          f"{state.current or '(none)'} to return to")
        paths = remote.release_paths(settings, target)
        # The previous release's image is still on the host; built again only if removed.
        tag = image_tag(target)
        missing = image_id(Stack(c, paths, out, stream), image(paths, tag)) is None
        switch_deploy(c, paths, build=missing, out=out, stream=stream, release=tag,
                      schema=False, on_switch=lambda: switch_current(c, settings, target))
        notes = _rollback_notes(c, settings, state.current, target)
    out(f"rollback: {c.host} now serves {target} (was {state.current})")
    out("rollback: migrations are NOT reversed; the schema stays as the newer release left it.")
    if notes:
        out("rollback: documented undo (-- ROLLBACK:) of the migrations added since:")
        for filename, lines in notes:
            for line in lines or ["(no -- ROLLBACK: note)"]:
                out(f"   {filename}: {line}")
    return target


def _rollback_notes(c, settings: Settings, newer: str, older: str) -> list:
    from deploy.migrations import parse_file

    root = PurePosixPath(settings.deploy_path) / "releases"

    def files(release: str) -> set[str]:
        out = shell.run(c, ["ls", "-1", str(root / release / "migrations")], check=False)
        return {n for n in out.stdout.split() if n.endswith(".sql")}

    added = sorted(files(newer) - files(older), key=lambda n: int(n.split("_")[0])
                   if n.split("_")[0].isdigit() else -1)
    notes = []
    sftp = c.sftp()
    for name in added:
        path = root / newer / "migrations" / name
        with sftp.open(str(path), "r") as fh:
            data = fh.read()
        try:
            notes.append((name, list(parse_file(Path(name), data).rollback)))
        except DeployError:
            notes.append((name, []))
    return notes
