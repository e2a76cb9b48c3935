"""`invoke --hosts` / `fab -H` against two hosts that share nothing with this machine but
its kernel: each its own network namespace, sshd and Docker engine, with no registry
access (tests/support/netns.py). Whatever runs there after a deploy came from here.

h1 uses the shared settings; h2 has an overlay with its own Compose project name and
ports (tests/support/fleet_rig.py). The hosts are shared by the tests, but each test first
brings them to the state it needs (`fleet.ensure_releases`: so many releases, serving,
the tree clean), so each passes alone and in any order; in file order little is redone:

    1. deploy, both hosts (first release)       5. dirty tree refused; --allow-dirty; lock
    2. a code-only change, --parallel 2         6. a failing first host stops the rollout;
    3. rollback of h1 under load                   a host that cannot be staged stops it first
    4. --no-build without the image             7. rolling deploy under load on both hosts
                                                8. plain `fab up`, host keys, `fab -H deploy`
                                                   refused, secrets
"""

from __future__ import annotations

import re
import signal
import time

import invoke

from deploy.commands import docker
from deploy.fleet import registry
from deploy.fleet.releases import RELEASE_RE
from tests.support.fleet_rig import BUILD, KEEP, SECRET
from tests.support.netns_load import NetnsLoad
from tests.support.shipping_rig import local_images

TUNNEL_BYTES = re.compile(r"^\[(\S+)\]    \1: ([\d,]+) bytes through the tunnel to the host$",
                          re.M)


class Since:
    """What a host was sent after this point: command lines, bytes on its veth."""

    def __init__(self, fleet, host):
        self.fleet, self.host = fleet, host
        self.offset = len(fleet.rig.commands(host))
        self.sent = fleet.rig.traffic(host)[0]

    @property
    def commands(self) -> str:
        return self.fleet.rig.commands(self.host)[self.offset:]

    @property
    def bytes(self) -> int:
        return self.fleet.rig.traffic(self.host)[0] - self.sent


def tunnel_bytes(output: str) -> dict[str, int]:
    return {host: int(n.replace(",", "")) for host, n in TUNNEL_BYTES.findall(output)}


def ok(done) -> None:
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]


def test_deploy_hosts_ships_both_the_image_built_here_once_and_neither_host_builds(fleet):
    fleet.ensure_releases(0)
    rig, (h1, h2) = fleet.rig, fleet.hosts
    postgres = local_images()["POSTGRES_IMAGE"]
    for h in fleet.hosts:  # hosts without the stack's images (earlier tests shipped some)
        fleet.docker(h, "image", "rm", postgres)
        assert fleet.image_id(h, postgres) is None
    # …and without registry access: nothing can be pulled from anywhere but here.
    pulled = fleet._run(rig.ssh_argv(h1, f"docker pull {postgres}"), timeout=120)
    assert pulled.returncode != 0 and "registry-1.docker.io" in pulled.stderr
    since = {h.name: Since(fleet, h) for h in fleet.hosts}
    done = fleet.invoke("deploy", "--hosts", fleet.spec())
    ok(done)
    sha = fleet.tree.sha
    built = fleet.local_id(f"{fleet.project}-backend:{sha}")
    assert built and fleet.local_id(f"{fleet.projects[h2.name]}-backend:{sha}") == built
    # Built once, here, for both hosts (h2's names are tags of the same images).
    assert done.stdout.count("==> build ") == 2, done.stdout
    assert done.stdout.count(f"==> build {fleet.project}-backend:{sha} here (once, for every "
                             "host)") == 1
    assert f"==> build {fleet.project}-proxy:live here" in done.stdout
    for h, addr in zip(fleet.hosts, fleet.names, strict=True):
        project = fleet.projects[h.name]
        assert fleet.backend_ids(h) == [built], rig.logs(h)
        assert fleet.image_id(h, f"{project}-backend:live") == built
        assert fleet.image_id(h, postgres) == fleet.local_id(postgres)
        assert fleet.image_id(h, f"{project}-proxy:live") == \
            fleet.local_id(f"{fleet.project}-proxy:live")
        sent = since[h.name].commands
        assert not BUILD.search(sent), BUILD.search(sent)
        assert len(re.findall(r"^docker image pull 127\.0\.0\.1:\d+/", sent, re.M)) == 3, sent
        assert f"[{addr}]    {addr}: verified 3 image(s): " in done.stdout
        assert fleet.health(h) == 200
        (release,) = fleet.releases(h)
        assert fleet.current(h) == release and RELEASE_RE.match(release)
        assert release.endswith(f"-{sha}")
        # The release directory: the stack's files and migrations, no build context.
        root = fleet.path(h) / "releases" / release
        files = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
        # The proxy's config is rendered into its image here; the override Compose reads
        # beside the compose file is written by the deploy on the host.
        override = f"deploy/stack/.deploy-{fleet.projects[fleet.rig.host(h).name]}.override.yml"
        assert {".env", "deploy/stack/docker-compose.yml", override} <= files
        assert not [f for f in files if f.startswith(("deploy/stack/backend", "deploy/tasks"))
                    or f.endswith(".py")], files
        env = (root / ".env")
        assert env.stat().st_mode & 0o777 == 0o600
        text = env.read_text()
        assert f"POSTGRES_PASSWORD={SECRET}\n" in text
        assert f"BACKEND_IMAGE={project}-backend\nBACKEND_TAG=live\n" in text
    listing = fleet.invoke("releases", "--hosts", fleet.spec())
    ok(listing)
    for h, addr in zip(fleet.hosts, fleet.names, strict=True):
        project = fleet.projects[h.name]
        assert (f"[{addr}] * {fleet.current(h)}  {project}-backend:{sha}  {built}  live"
                in listing.stdout.splitlines()), listing.stdout


def test_a_code_only_change_sends_each_host_only_the_changed_layers(fleet):
    fleet.ensure_releases(1)
    old_sha = fleet.current(fleet.hosts[0]).split("-", 1)[1]
    new_sha = fleet.tree.change()  # one comment in the backend's app.py, committed
    since = {h.name: Since(fleet, h) for h in fleet.hosts}
    done = fleet.invoke("deploy", "--hosts", fleet.spec(), "--parallel", "2")
    ok(done)
    new_id = fleet.local_id(f"{fleet.project}-backend:{new_sha}")
    # What the registry holds of both releases: the layers that differ, compressed.
    settings = fleet.settings(fleet.hosts[0])
    with registry.open_registry(invoke.Context(), settings, out=lambda _: None) as reg:
        old, new = (registry.manifest(reg.address, docker.parse_ref(
            f"{fleet.project}-backend:{tag}").in_registry(reg.address))
            for tag in (old_sha, new_sha))
    known = {layer["digest"] for layer in old["layers"]}
    changed = sum(layer["size"] for layer in new["layers"] if layer["digest"] not in known)
    total = sum(layer["size"] for layer in new["layers"])
    assert 0 < changed < total / 20, (changed, total)
    tunnelled = tunnel_bytes(done.stdout)
    # Built and published here first (unprefixed), then every line is its host's.
    head, _, per_host = done.stdout.partition(
        f"deploy: {', '.join(fleet.names)} (at most 2 at once)\n")
    assert "pushed " in head and per_host, done.stdout
    lines = per_host.splitlines()
    assert lines[-1].startswith("hosts: done: ")
    assert all(re.match(r"\[10\.213\.\d+\.2\] ", line) for line in lines[:-1]), lines
    for h, addr in zip(fleet.hosts, fleet.names, strict=True):
        assert fleet.backend_ids(h) == [new_id]
        assert f"[{addr}]    {addr}: {local_images()['POSTGRES_IMAGE']} already there" \
            in done.stdout
        pulls = re.findall(r"^docker image pull 127\.0\.0\.1:\d+/(\S+)$",
                           since[h.name].commands, re.M)
        assert pulls == [f"{fleet.projects[h.name]}-backend:{new_sha}"], pulls
        # Through the tunnel: the changed layers and the registry protocol around them.
        assert changed <= tunnelled[addr] <= 1.2 * changed, (tunnelled[addr], changed)
        # On the veth: that, plus everything else the deploy sent (its SSH commands, the
        # release directory, the migration runner's queries through the database tunnel).
        assert since[h.name].bytes <= 1.2 * changed + 256 * 1024, (since[h.name].bytes,
                                                                  changed)
        assert not BUILD.search(since[h.name].commands)
        assert len(fleet.releases(h)) == 2 and fleet.current(h).endswith(new_sha)
        # The compose file and .env are the current release's, postgres and the proxy run
        # healthy on their images: Compose touches the backend only.
        assert (f"[{addr}]    postgres + proxy: up and healthy; only the app and workers "
                "change") in done.stdout
        composes = re.findall(r"^env .*docker-compose .* up -d (.*)$", since[h.name].commands,
                              re.M)
        assert composes == ["--no-deps --no-recreate --no-build --scale backend=2 backend"], \
            composes


def test_rollback_under_load_brings_back_the_previous_image_without_building_or_uploading(
        fleet):
    h1, addr = fleet.hosts[0], fleet.names[0]
    fleet.ensure_releases(2, h1)
    first, second = fleet.releases(h1)
    assert fleet.current(h1) == second
    first_id = fleet.local_id(f"{fleet.project}-backend:{first.split('-', 1)[1]}")
    since = Since(fleet, h1)
    with NetnsLoad(fleet.rig, h1, fleet.ports[h1.name][1], clients=4, slow=1.0) as load:
        done = fleet.invoke("rollback", "--hosts", fleet.spec(h1))
        time.sleep(0.5)
    ok(done)
    assert load.clients["failure_count"] == 0, load.clients["failures"]
    assert load.clients["requests"] > 20
    assert load.slow["failure_count"] == 0 and load.slow["requests"] >= 2, load.slow
    assert fleet.backend_ids(h1) == [first_id]
    assert fleet.current(h1) == first and fleet.releases(h1) == [first, second]
    assert f"rollback: {addr} now serves {first} (was {second})" in done.stdout
    assert "migrations are NOT reversed" in done.stdout
    assert "point of no return: traffic moves from" in done.stdout
    sent = since.commands
    assert not BUILD.search(sent)
    assert "docker image pull" not in sent and "tar -xzf" not in sent
    assert since.bytes < 256 * 1024, since.bytes  # commands only: no image, no upload
    again = fleet.invoke("rollback", "--hosts", fleet.spec(h1))
    assert again.returncode == 3  # a check failed: there is nothing to go back to
    assert f"rollback: {addr} has no release before {first} to return to" in again.stderr


def test_no_build_without_this_commits_image_here_exits_2_naming_it(fleet):
    sha = fleet.tree.change()
    before = {h.name: (fleet.releases(h), Since(fleet, h)) for h in fleet.hosts}
    done = fleet.invoke("deploy", "--hosts", fleet.spec(), "--no-build")
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip() == (
        f"--no-build: there is no image {fleet.project}-backend:{sha} here, the backend "
        f"image of {sha}; build it here first with `invoke deploy` (it also checks that the "
        "stack comes up healthy with it), or deploy without --no-build")
    for h in fleet.hosts:
        releases, since = before[h.name]
        assert fleet.releases(h) == releases and since.commands == ""


def test_a_dirty_tree_is_refused_unless_allowed_and_a_second_deploy_waits_for_the_lock(fleet):
    h2, addr = fleet.hosts[1], fleet.names[1]
    # Fewer than KEEP_RELEASES: this test's deploy prunes none.
    fleet.ensure_releases(1, h2, most=KEEP - 1)
    app = fleet.tree.path / "deploy/stack/backend/app.py"
    app.write_text(app.read_text() + "# not committed\n")
    (fleet.tree.path / "migrations/024_fleet_notes.sql").write_text(
        "-- ROLLBACK: DROP TABLE IF EXISTS fleet_notes;\n"
        "CREATE TABLE IF NOT EXISTS fleet_notes (id INTEGER PRIMARY KEY);\n")
    releases = fleet.releases(h2)
    refused = fleet.invoke("deploy", "--hosts", fleet.spec(h2))
    assert refused.returncode == 5, refused.stdout + refused.stderr
    assert (f"deploy: refusing to ship uncommitted changes to hosts: the working tree differs "
            f"from commit {fleet.tree.sha} in 2 file(s) (deploy/stack/backend/app.py, "
            "migrations/024_fleet_notes.sql)" in refused.stderr)
    assert "or pass --allow-dirty to ship this tree as " in refused.stderr
    assert fleet.releases(h2) == releases

    first = fleet.popen_invoke("deploy", "--hosts", fleet.spec(h2), "--allow-dirty")
    holder_file = fleet.path(h2) / ".deploy.lock.holder"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (holder_file.exists()
                                               and holder_file.read_text().strip()):
        assert first.poll() is None, first.communicate()
        time.sleep(0.1)
    second = fleet.invoke("deploy", "--hosts", fleet.spec(h2), "--allow-dirty", "--no-build",
                          "--lock-wait", "1")
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, out[-3000:] + err[-3000:]
    assert second.returncode == 4, second.stdout + second.stderr
    assert f"{addr}: another deploy holds /srv/{fleet.projects[h2.name]}/.deploy.lock" \
        in second.stderr
    holder = second.stderr.split("(holder: ", 1)[1].split("); waited")[0]
    assert re.fullmatch(r"\S+@\S+ pid \d+, release \d{8}T\d{6}Z-[0-9a-f]+-dirty-[0-9a-f]+, "
                        r"since \S+", holder), holder
    assert f"[{addr}] {addr}: waiting for the deploy lock held by {holder} (" in second.stdout
    # Both shared this project's registry here: the second joined it.
    assert "shared with another deploy of this project here" in second.stdout
    dirty = fleet.current(h2)
    assert re.fullmatch(rf"\d{{8}}T\d{{6}}Z-{fleet.tree.sha}-dirty-[0-9a-f]{{8}}", dirty)
    assert RELEASE_RE.match(dirty) and fleet.releases(h2) == [*releases, dirty]
    assert "deploy: --allow-dirty: shipping this tree as " in out
    fleet.tree.commit("the change that was shipped dirty")
    # Back to the release before it: the schema stays, and its documented undo is shown.
    back = fleet.invoke("rollback", "--hosts", fleet.spec(h2))
    ok(back)
    assert fleet.current(h2) == releases[-1]
    assert (f"[{addr}] rollback: documented undo (-- ROLLBACK:) of the migrations added since:\n"
            f"[{addr}]    024_fleet_notes.sql: DROP TABLE IF EXISTS fleet_notes;\n"
            in back.stdout), back.stdout


def test_a_failing_first_host_stops_the_rollout_and_its_previous_release_keeps_serving(fleet):
    fleet.ensure_releases(1, most=KEEP)
    (bad, good), (bad_addr, good_addr) = fleet.hosts, fleet.names
    before = {h.name: (fleet.releases(h), fleet.current(h), fleet.backend_ids(h))
              for h in fleet.hosts}
    fleet.write_overlay(bad, BACKEND_FAIL_AT_START="1")
    try:
        done = fleet.invoke("deploy", "--hosts", fleet.spec(bad, good))
    finally:
        fleet.write_overlay(bad)
    assert done.returncode == 1, done.stdout + done.stderr
    # Every host is staged and prepared (the new release running beside the old, no
    # traffic) before any host switches: the bad one fails there, so none switches.
    assert f"stage: {fleet.names[0]}, {fleet.names[1]} (lock, upload, ship, migrate," \
        in done.stdout
    assert (f"hosts: ready: {good_addr}; failed: {bad_addr} (exit 1: service failed: "
            "backend: ") in done.stdout, done.stdout
    assert f"stage failed on {bad_addr}: service failed: backend" in done.stderr
    assert "stage: no host switched: each still serves what it served" in done.stderr
    assert "exit code:  1" in done.stderr  # the crash's exit code, though Docker restarted it
    assert "point of no return" not in done.stdout
    # The bad host took back its new container at once; the good one, prepared, when the
    # run ended, with its release directory.
    for addr in (bad_addr, good_addr):
        assert (f"[{addr}]    the old release keeps serving; removing what this deploy "
                "started") in done.stdout, addr
    for h in fleet.hosts:
        assert (fleet.releases(h), fleet.current(h), fleet.backend_ids(h)) == before[h.name]
        assert fleet.health(h) == 200
    assert re.search(rf"^\[{re.escape(good_addr)}\]    \S+ not switched to: its directory "
                     rf"removed; {re.escape(before[good.name][1])} still current$",
                     done.stdout, re.M), done.stdout
    assert f"[{good_addr}]    point of no return" not in done.stdout


def test_a_host_that_cannot_get_the_release_stops_the_deploy_before_any_host_switches(fleet):
    # h1 can be staged; h2 cannot (its DEPLOY_PATH cannot be created): h1 must not switch
    # either, though it comes first in the rolling order.
    fleet.ensure_releases(1, most=KEEP)
    before = {h.name: (fleet.releases(h), fleet.current(h), fleet.backend_ids(h))
              for h in fleet.hosts}
    fleet.tree.change()
    good, bad = fleet.hosts
    good_addr, bad_addr = fleet.names
    fleet.write_overlay(bad, DEPLOY_PATH="/proc/deploy-here")
    try:
        done = fleet.invoke("deploy", "--hosts", fleet.spec())
    finally:
        fleet.write_overlay(bad)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"stage failed on {bad_addr}: {bad_addr}: cannot take the deploy lock in " \
        "/proc/deploy-here" in done.stderr, done.stderr
    assert "stage: no host switched: each still serves what it served" in done.stderr
    assert f"hosts: ready: {good_addr}; failed: {bad_addr} (exit 1: " in done.stdout
    assert re.search(rf"^\[{re.escape(good_addr)}\]    \S+ not switched to: its directory "
                     rf"removed; {re.escape(before[good.name][1])} still current$",
                     done.stdout, re.M), done.stdout
    assert "point of no return" not in done.stdout
    for h in fleet.hosts:
        assert (fleet.releases(h), fleet.current(h), fleet.backend_ids(h)) == before[h.name]
        assert fleet.health(h) == 200


def test_sigterm_while_the_hosts_are_prepared_takes_every_new_release_back(fleet):
    # SIGTERM once a host runs its new container beside the old one (prepared, no traffic):
    # the run stops, every host takes its new release back, none switched.
    fleet.ensure_releases(1, most=KEEP)
    before = {h.name: (fleet.releases(h), fleet.current(h), fleet.backend_ids(h))
              for h in fleet.hosts}
    fleet.tree.change()
    deploy = fleet.popen_invoke("deploy", "--hosts", fleet.spec())
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not any(
            len(fleet.backend_ids(h)) > len(before[h.name][2]) for h in fleet.hosts):
        assert deploy.poll() is None, deploy.communicate()
        time.sleep(0.1)
    deploy.send_signal(signal.SIGTERM)
    out, err = deploy.communicate(timeout=300)
    assert deploy.returncode == 143, out[-3000:] + err[-3000:]
    assert "deploy: interrupted (SIGTERM)" in err, err[-2000:]
    assert "Traceback" not in out + err
    assert "point of no return" not in out
    for h, addr in zip(fleet.hosts, fleet.names, strict=True):
        assert (fleet.releases(h), fleet.current(h), fleet.backend_ids(h)) == before[h.name]
        assert fleet.health(h) == 200
        assert re.search(rf"^\[{re.escape(addr)}\]    \S+ not switched to: its directory "
                         rf"removed; {re.escape(before[h.name][1])} still current$", out,
                         re.M), out[-3000:]


def test_a_rolling_deploy_under_load_fails_no_request_on_either_host(fleet):
    fleet.ensure_releases(1, fleet.hosts[0], most=KEEP)
    fleet.ensure_releases(KEEP, fleet.hosts[1])  # KEEP_RELEASES: the next deploy prunes one
    before = {h.name: fleet.releases(h) for h in fleet.hosts}
    sha = fleet.tree.change()
    loads = [NetnsLoad(fleet.rig, h, fleet.ports[h.name][1], clients=4, slow=2.0)
             for h in fleet.hosts]
    for load in loads:
        load.__enter__()
    try:
        done = fleet.invoke("deploy", "--hosts", fleet.spec())
        time.sleep(0.5)
    finally:
        for load in loads:
            load.__exit__(None, None, None)
    ok(done)
    assert "(rolling, one host at a time)" in done.stdout
    new_id = fleet.local_id(f"{fleet.project}-backend:{sha}")
    for h, addr, load in zip(fleet.hosts, fleet.names, loads, strict=True):
        assert load.clients["failure_count"] == 0, (addr, load.clients["failures"])
        assert load.clients["requests"] > 50, addr
        # A 2 s request was in flight at the switch on each host: it completed.
        assert load.slow["failure_count"] == 0 and load.slow["requests"] >= 3, load.slow
        assert re.search(rf"^\[{re.escape(addr)}\]    old slots drained in \d+\.\d s",
                         done.stdout, re.M)
        assert fleet.backend_ids(h) == [new_id]
        assert fleet.health(h) == 200
    # KEEP_RELEASES=3: h2 had three releases, so its oldest one and that one's image went;
    # the previous release and its image stay, for a rollback.
    h2 = fleet.hosts[1]
    oldest, previous = before[h2.name][0], before[h2.name][-1]
    assert fleet.releases(h2) == [*before[h2.name][1:], fleet.current(h2)]
    backend = fleet.backend_image(h2)
    assert fleet.image_id(h2, f"{backend}:{oldest.split('-', 1)[1]}") is None
    assert fleet.image_id(h2, f"{backend}:{previous.split('-', 1)[1]}") is not None
    tags = fleet.docker(h2, "image", "ls", "--format", "{{.Tag}}", backend).stdout.split()
    assert sorted(tags) == sorted(["live", *(r.split("-", 1)[1] for r in fleet.releases(h2))])


def test_a_plain_fab_up_after_down_runs_the_live_release_from_the_release_directory(fleet):
    h2 = fleet.hosts[1]
    fleet.ensure_releases(1, h2, most=KEEP)
    live = fleet.image_id(h2, f"{fleet.backend_image(h2)}:live")
    ok(fleet.fab("-H", fleet.spec(h2), "down"))
    assert fleet.backend_ids(h2) == []
    ok(fleet.fab("-H", fleet.spec(h2), "up"))  # Compose v1 checks build contexts: they exist
    deadline = time.monotonic() + 90
    while fleet.health(h2) != 200 and time.monotonic() < deadline:
        time.sleep(1)
    assert fleet.health(h2) == 200
    assert fleet.backend_ids(h2) == [live]


def test_an_unknown_host_key_is_refused_with_its_fingerprint_and_nothing_is_uploaded(fleet):
    (h1, h2), addr = fleet.hosts, fleet.names[1]
    known = fleet.rig.only_known(h1)
    releases = fleet.releases(h2)
    since = Since(fleet, h2)
    done = fleet.invoke("deploy", "--hosts", fleet.spec(h2), "--no-build",
                        env={"SSH_KNOWN_HOSTS": str(known)})
    fabbed = fleet.fab("-H", fleet.spec(h2), "ps", env={"SSH_KNOWN_HOSTS": str(known)})
    for result in (done, fabbed):
        assert result.returncode == 2, result.stdout + result.stderr
        assert f"{addr}: host key not in SSH_KNOWN_HOSTS ({known})" in result.stderr
        assert fleet.rig.host_key_fingerprint(h2) in result.stderr
    assert fleet.releases(h2) == releases and since.commands == ""
    changed = fleet.invoke("releases", "--hosts", fleet.spec(h2),
                           env={"SSH_KNOWN_HOSTS": str(fleet.rig.changed_key(h2))})
    assert changed.returncode == 2
    assert f"{addr}: host key CHANGED" in changed.stderr


def test_fab_h_deploy_and_rollback_are_refused_naming_the_command_that_stages_every_host(
        fleet):
    since = {h.name: Since(fleet, h) for h in fleet.hosts}
    for task, why in (("deploy", "a deploy must stage every host first"),
                      ("rollback", "a rollback must stop at the first failing host and report "
                                   "every host")):
        done = fleet.fab("-H", fleet.spec(), task)
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stderr.splitlines() == [f"fab -H runs a task on each host in turn; {why}: "
                                            f"use invoke {task} --hosts {fleet.spec()}"]
        assert done.stdout == ""
    for h in fleet.hosts:
        assert since[h.name].commands == ""


def test_secrets_never_appear_in_output_or_on_a_command_line(fleet):
    # Every command of this run so far, and enough of its own that the check is never
    # vacuous: a deploy, and each task that reads a host, through fab -H and --hosts.
    fleet.ensure_releases(1, most=KEEP)
    for h in fleet.hosts:
        for task in (["ps"], ["logs", "all", "--tail", "200"], ["migrate-status"],
                     ["releases"]):
            ok(fleet.fab("-H", fleet.spec(h), *task))
    for task in (["ps"], ["logs", "all", "--tail", "200"], ["wait-healthy"], ["releases"]):
        ok(fleet.invoke(*task, "--hosts", fleet.spec()))
    assert len(fleet.outputs) > 10, "the earlier tests ran no command"
    for output in fleet.outputs:
        assert SECRET not in output
    for h in fleet.hosts:
        commands = fleet.rig.commands(h)
        assert "docker" in commands and "flock" in commands  # the log is real
        assert SECRET not in commands

