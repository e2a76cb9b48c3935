"""The network-namespace test hosts are really separate hosts: own engine, own sshd, own
network with no way out but to this machine; and they leave nothing behind."""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import paramiko
import pytest

from tests.support import busybox as busybox_image
from tests.support import netns, netns_cleanup
from tests.support.base import ROOT
from tests.support.services import missing as _missing
from tests.support.stack import compose_command


def run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=kw.pop("timeout", 120),
                          stdin=kw.pop("stdin", subprocess.DEVNULL), **kw)


def ssh(rig, host, command: str, **kw) -> subprocess.CompletedProcess:
    return run(rig.ssh_argv(host, command), **kw)


@pytest.fixture(scope="module")
def busybox():
    if not busybox_image.BUSYBOX.exists():
        _missing(f"{busybox_image.BUSYBOX} missing: apt-get install busybox-static")
    return "deploy-netns/busybox:" + uuid.uuid4().hex[:8]


@pytest.fixture
def root_only_image(busybox):
    """An image that exists in the root engine only, under a tag of its own."""
    tag = "deploy-netns/root-only:" + uuid.uuid4().hex[:8]
    done = subprocess.run(["docker", "import", "-", tag], input=busybox_image.busybox_tar(),
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    yield tag
    run(["docker", "image", "rm", "-f", tag])


def test_each_host_has_its_own_engine_and_none_is_the_root_engine(netns_hosts):
    root_id = run(["docker", "info", "--format", "{{.ID}}"]).stdout.strip()
    ids = {}
    for host in netns_hosts.hosts:
        done = run(netns_hosts.docker_argv(host, "info", "--format",
                                           "{{.ID}}|{{.DockerRootDir}}|{{.Driver}}"))
        assert done.returncode == 0, done.stderr + netns_hosts.logs(host)
        ids[host.name], root_dir, driver = done.stdout.strip().split("|")
        assert root_dir == str(host.data_root)
        assert driver == "overlay2"
    assert len(set(ids.values())) == len(netns_hosts.hosts) == 2
    assert root_id and root_id not in ids.values()


def test_docker_in_an_ssh_session_reaches_that_hosts_engine_not_the_root_one(
        netns_hosts, root_only_image):
    for host in netns_hosts.hosts:
        done = ssh(netns_hosts, host,
                   "docker info --format '{{.ID}}|{{.DockerRootDir}}'; "
                   "docker -H unix:///var/run/docker.sock info --format '{{.ID}}'; "
                   f"docker image inspect {root_only_image} >/dev/null")
        lines = done.stdout.splitlines()
        assert lines[:2] == [f"{host.engine_id}|{host.data_root}", host.engine_id], \
            done.stderr + netns_hosts.logs(host)
        assert done.returncode == 1
        assert f"No such image: {root_only_image}" in done.stderr


def test_an_image_loaded_into_one_host_is_absent_on_the_other_and_in_the_root_engine(
        netns_hosts, busybox):
    first, second = netns_hosts.hosts
    image_id = netns_hosts.load_busybox(first, busybox)
    assert image_id.startswith("sha256:")
    seen = run(netns_hosts.docker_argv(first, "image", "inspect", "-f", "{{.Id}}", busybox))
    assert seen.stdout.strip() == image_id
    for argv in (netns_hosts.docker_argv(second, "image", "inspect", busybox),
                 ["docker", "image", "inspect", busybox]):
        absent = run(argv)
        assert absent.returncode == 1
        assert f"No such image: {busybox}" in absent.stderr


def test_ssh_to_each_host_works_with_strict_host_key_checking_and_only_known_keys(
        netns_hosts, tmp_path):
    for host in netns_hosts.hosts:
        done = ssh(netns_hosts, host, "echo ok")
        assert (done.returncode, done.stdout) == (0, "ok\n"), done.stderr
        # Fabric speaks paramiko: it reads the same known_hosts (port 22: no brackets).
        client = paramiko.SSHClient()
        client.load_host_keys(str(netns_hosts.known_hosts))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect(host.address, port=netns_hosts.port, username=netns_hosts.user,
                       key_filename=str(netns_hosts.key_file), look_for_keys=False,
                       allow_agent=False, timeout=10)
        key = client.get_transport().get_remote_server_key()
        client.close()
        assert f"{key.get_name()} {key.get_base64()}" == netns_hosts.host_public_key(host)
    first, second = netns_hosts.hosts
    only_first = tmp_path / "known_hosts"
    only_first.write_text(first.sshd.known_hosts_line)
    refused = run(netns_hosts.ssh_argv(second, "echo ok", known_hosts=only_first))
    assert refused.returncode == 255
    assert "Host key verification failed" in refused.stderr


def test_every_command_line_sent_to_a_host_is_recorded_on_that_host_only(netns_hosts):
    first, second = netns_hosts.hosts
    marker = "probe-" + uuid.uuid4().hex[:8]
    assert ssh(netns_hosts, first, f"echo {marker}").stdout == f"{marker}\n"
    assert f"echo {marker}\n" in netns_hosts.commands(first)
    assert marker not in netns_hosts.commands(second)


def test_the_traffic_counters_see_the_bytes_sent_to_one_host_only(netns_hosts):
    first, second = netns_hosts.hosts
    payload = os.urandom(4 * 1024 * 1024)  # random: nothing on the way can compress it
    before = [netns_hosts.traffic(h) for h in (first, second)]
    done = subprocess.run(netns_hosts.ssh_argv(first, "wc -c"), input=payload,
                          capture_output=True, timeout=60)
    assert done.stdout.split() == [str(len(payload)).encode()], done.stderr
    after = [netns_hosts.traffic(h) for h in (first, second)]
    sent = after[0][0] - before[0][0]
    # The payload plus SSH's framing and TCP/IP headers, a few percent at most.
    assert len(payload) < sent < len(payload) * 1.1, sent
    assert after[1][0] - before[1][0] < 64 * 1024


def test_a_host_reaches_this_machine_but_no_registry(netns_hosts):
    host = netns_hosts.hosts[0]
    routes = run(netns_hosts.netns_exec_argv(host, "ip", "-4", "route")).stdout
    assert "default" not in routes and f"src {host.address}" in routes, routes

    pulled = ssh(netns_hosts, host, "docker pull busybox:latest")
    assert pulled.returncode == 1, pulled.stdout
    # No route (or, where resolv.conf points into /run, no resolver): a network error.
    assert "registry-1.docker.io" in pulled.stderr, pulled.stderr
    assert any(reason in pulled.stderr for reason in (
        "network is unreachable", "connection refused", "no such host")), pulled.stderr

    # This machine's end of the veth is reachable: a listener here answers the host.
    with socket.create_server((host.root_address, 0)) as server:
        port = server.getsockname()[1]

        def answer():
            conn, _ = server.accept()
            with conn:
                conn.sendall(b"deploying machine\n")

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        probe = ("import socket, sys; s = socket.create_connection((sys.argv[1], "
                 "int(sys.argv[2])), timeout=5); print(s.recv(64).decode(), end='')")
        done = run(netns_hosts.netns_exec_argv(host, sys.executable, "-c", probe,
                                               host.root_address, str(port)))
        thread.join(timeout=10)
    assert (done.returncode, done.stdout) == (0, "deploying machine\n"), done.stderr


COMPOSE = """\
services:
  inside:
    image: {image}
    command: ["sh", "-c", "echo inside {host} > /www/index.html && exec httpd -f -p 80 -h /www"]
    ports: ["127.0.0.1:8080:80"]
  outside:
    image: {image}
    command: ["sh", "-c", "echo outside {host} > /www/index.html && exec httpd -f -p 80 -h /www"]
    ports: ["0.0.0.0:8081:80"]
"""

FETCH = """\
import sys, time, urllib.request
for attempt in range(int(sys.argv[2]) if len(sys.argv) > 2 else 50):
    try:
        print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode(), end="")
        break
    except OSError as e:
        error = e
        time.sleep(0.2)
else:
    sys.exit(f"{sys.argv[1]}: {error}")
"""


def test_compose_over_ssh_runs_on_the_host_engine_and_its_ports_answer(netns_hosts, busybox):
    host, other = netns_hosts.hosts
    if run(netns_hosts.docker_argv(host, "image", "inspect", busybox)).returncode != 0:
        netns_hosts.load_busybox(host, busybox)
    project = "rig" + uuid.uuid4().hex[:8]
    compose_file = f"/srv/{project}/docker-compose.yml"
    wrote = ssh(netns_hosts, host, f"mkdir -p /srv/{project} && cat > {compose_file}",
                input=COMPOSE.format(image=busybox, host=host.name), stdin=None)
    assert wrote.returncode == 0, wrote.stderr
    # /srv is the host's own: the file is in its directory, not in this machine's /srv.
    assert (host.srv / project / "docker-compose.yml").is_file()
    assert not Path("/srv", project).exists() and not (other.srv / project).exists()
    # The host runs this machine's binaries: docker-compose v1, or the v2 plugin.
    compose = f"{shlex.join(compose_command())} -p {project} -f {compose_file}"
    try:
        up = ssh(netns_hosts, host, f"{compose} up -d", timeout=180)
        assert up.returncode == 0, up.stderr + netns_hosts.logs(host)
        label = f"label=com.docker.compose.project={project}"
        on_host = run(netns_hosts.docker_argv(host, "ps", "-q", "--filter", label))
        assert len(on_host.stdout.split()) == 2
        for argv in (["docker", "ps", "-aq", "--filter", label],
                     netns_hosts.docker_argv(other, "ps", "-aq", "--filter", label)):
            assert run(argv).stdout == ""

        inside = run(netns_hosts.netns_exec_argv(host, sys.executable, "-c", FETCH,
                                                 "http://127.0.0.1:8080/"))
        assert (inside.returncode, inside.stdout) == (0, f"inside {host.name}\n"), \
            inside.stderr
        outside = run([sys.executable, "-c", FETCH, f"http://{host.address}:8081/"])
        assert (outside.returncode, outside.stdout) == (0, f"outside {host.name}\n"), \
            outside.stderr
    finally:
        down = ssh(netns_hosts, host, f"{compose} down -t 1 && rm -r /srv/{project}")
    assert down.returncode == 0, down.stderr


def _traces(rig_name: str, rig_root: Path) -> list[str]:
    """Everything of one rig still on this machine, found by its name."""
    found = [f"netns {n}" for n in os.listdir("/run/netns") if n.startswith(rig_name)] \
        if os.path.isdir("/run/netns") else []
    found += [f"cgroup {p}" for p in netns_cleanup.cgroup_tops(f"{rig_name}-h*")]
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes() if entry.name.isdigit() else b""
        except OSError:
            continue
        if str(rig_root).encode() in cmdline:
            shown = cmdline.replace(b"\0", b" ")[:120]
            found.append(f"process {entry.name}: {shown!r}")
    links = run(["ip", "-o", "link", "show"]).stdout
    rig_id = rig_name.rsplit("-", 1)[1]
    found += [f"link {line.split()[1]}" for line in links.splitlines() if f"dn{rig_id}" in line]
    if rig_root.exists():
        found.append(f"dir {rig_root}")
    return found


def test_teardown_leaves_no_namespace_dockerd_container_or_file_behind(netns_hosts, busybox):
    rig = netns.NetnsHosts(1)
    try:
        rig.start()
        host = rig.hosts[0]
        rig.load_busybox(host, busybox)
        started = run(rig.docker_argv(host, "run", "-d", busybox, "sleep", "600"))
        assert started.returncode == 0, started.stderr
        container_pid = int(run(rig.docker_argv(
            host, "inspect", "-f", "{{.State.Pid}}", started.stdout.strip())).stdout)
        dockerd_pid = int(host.docker_pid_file.read_text())
        assert _traces(rig.name, rig.root)  # the probe sees a live rig
    finally:
        rig.stop()
    assert _traces(rig.name, rig.root) == []
    for pid in (container_pid, dockerd_pid):
        assert not Path(f"/proc/{pid}").exists(), pid


def test_cleanup_removes_what_an_interrupted_run_left_behind(netns_hosts):
    # A run killed with SIGKILL never tears down: its dockerd and sshd live on.
    held = subprocess.Popen([sys.executable, "-m", "tests.support.netns", "up", "1"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = held.stdout.readline()
        assert line.startswith("h1: ssh root@10.213."), line + held.stderr.read()
    finally:
        held.send_signal(signal.SIGKILL)
        held.wait(timeout=10)
    rig_name = re.search(r"/(deploy-netns-\d+-[0-9a-f]+)/", line)[1]
    assert rig_name.startswith(f"{netns.PREFIX}{held.pid}-")
    rig_root = netns.TMP / rig_name
    assert rig_name in netns_cleanup.leftovers()
    assert any(t.startswith("process ") for t in _traces(rig_name, rig_root))

    removed = netns.cleanup_leftovers()
    assert any(r.startswith(f"{rig_name}-h1: ") and "left" not in r for r in removed), removed
    deadline = time.monotonic() + 5
    while _traces(rig_name, rig_root) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _traces(rig_name, rig_root) == []
    # The session's own rig is alive and was left alone.
    assert all(ssh(netns_hosts, h, "true").returncode == 0 for h in netns_hosts.hosts)


def test_the_rig_explains_itself_when_busybox_is_not_static(monkeypatch, tmp_path):
    fake = tmp_path / "busybox"
    fake.write_bytes(Path(sys.executable).read_bytes()[:4096])
    monkeypatch.setattr(busybox_image, "BUSYBOX", fake)
    with pytest.raises(netns.NetnsError) as refused:
        busybox_image.busybox_tar()
    assert str(refused.value) == (f"{fake} is missing or not static: apt-get install "
                                  "busybox-static (bash .ci/provision installs it)")


def test_a_reverse_tunnel_lets_a_host_reach_a_service_on_this_machines_loopback(
        netns_hosts, tmp_path):
    # What a registry on the deploying machine, reached through SSH, relies on: the
    # host's 127.0.0.1:PORT (where its dockerd would pull from) is this machine's service.
    host = netns_hosts.hosts[0]
    (tmp_path / "v2").mkdir()
    (tmp_path / "v2" / "index.html").write_text("registry stand-in\n")
    # (The host runs the system python3: this interpreter may live under the hidden /root.)
    server = subprocess.Popen([sys.executable, "-u", "-m", "http.server", "--bind", "127.0.0.1",
                               "0"], cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    try:
        port = int(re.search(r"port (\d+)", server.stdout.readline())[1])
        argv = netns_hosts.ssh_argv(
            host, f"python3 -c {shlex.quote(FETCH)} http://127.0.0.1:5000/v2/")
        argv[1:1] = ["-o", "ExitOnForwardFailure=yes", "-R", f"5000:127.0.0.1:{port}"]
        done = run(argv)
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert (done.returncode, done.stdout) == (0, "registry stand-in\n"), done.stderr
    # Without the tunnel, nothing answers there.
    direct = ssh(netns_hosts, host, f"python3 -c {shlex.quote(FETCH)} "
                                    "http://127.0.0.1:5000/v2/ 1", timeout=60)
    assert direct.returncode == 1 and "Connection refused" in direct.stderr, direct.stderr
