"""The test hosts behave like real, locked-down hosts over SSH: key auth only, known host
keys only, no client environment, and the tools a deploy needs on the remote PATH.

(Each network-namespace host of tests/support/netns.py runs its own sshd, configured as
tests/support/sshd.py writes it.)
"""

from __future__ import annotations

import os
import subprocess

import paramiko
import pytest


def _client(known_hosts) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.load_host_keys(str(known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return client


def _connect(rig, host, known_hosts=None, **kw) -> paramiko.SSHClient:
    client = _client(known_hosts or rig.known_hosts)
    kw.setdefault("key_filename", str(rig.key_file))
    try:
        client.connect(host.address, port=rig.port, username=rig.user, look_for_keys=False,
                       allow_agent=False, timeout=10, **kw)
    except BaseException:
        client.close()
        raise
    return client


def test_the_hosts_have_different_host_keys_and_sshd_style_fingerprints(netns_hosts):
    first, second = (netns_hosts.host_key_fingerprint(h) for h in netns_hosts.hosts)
    assert first != second
    for fingerprint in (first, second):
        assert fingerprint.startswith("SHA256:") and len(fingerprint) == len("SHA256:") + 43
    lines = netns_hosts.known_hosts.read_text().splitlines()
    assert [line.split()[0] for line in lines] == netns_hosts.addresses
    assert all(line.split()[1] == "ssh-ed25519" for line in lines)


def test_a_password_is_refused_only_publickey_is_offered(netns_hosts):
    with pytest.raises(paramiko.BadAuthenticationType) as refused:
        _connect(netns_hosts, netns_hosts.hosts[0], key_filename=None, password="hunter2")
    assert refused.value.allowed_types == ["publickey"]


def test_a_key_not_in_authorized_keys_is_refused(netns_hosts, tmp_path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                    str(tmp_path / "stranger")], check=True, capture_output=True)
    with pytest.raises(paramiko.AuthenticationException):
        _connect(netns_hosts, netns_hosts.hosts[0], key_filename=str(tmp_path / "stranger"))


def test_a_host_missing_from_known_hosts_is_refused_naming_it(netns_hosts):
    first, second = netns_hosts.hosts
    only_first = netns_hosts.only_known(first)
    assert second.address not in only_first.read_text()
    _connect(netns_hosts, first, only_first).close()
    with pytest.raises(paramiko.SSHException) as refused:
        _connect(netns_hosts, second, only_first)
    assert str(refused.value) == f"Server {second.address!r} not found in known_hosts"


def test_a_changed_host_key_is_refused(netns_hosts):
    first = netns_hosts.hosts[0]
    with pytest.raises(paramiko.BadHostKeyException) as refused:
        _connect(netns_hosts, first, netns_hosts.changed_key(first))
    assert first.address in str(refused.value)


def test_the_client_environment_does_not_reach_the_host(netns_hosts):
    argv = netns_hosts.ssh_argv(netns_hosts.hosts[0], 'echo "[$LC_DEPLOY_PROBE]"')
    argv[1:1] = ["-o", "SendEnv=LC_DEPLOY_PROBE"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL, env={**os.environ, "LC_DEPLOY_PROBE": "leak"})
    assert (done.returncode, done.stdout) == (0, "[]\n"), done.stderr


def test_the_remote_shell_finds_docker_compose_flock_and_tar(netns_hosts):
    # sshd's own PATH (what the shell started with, before ~/.bashrc) has /usr/local/bin.
    script = ('tr "\\0" "\\n" < /proc/$$/environ | grep "^PATH="; '
              "command -v docker flock tar; "
              "command -v docker-compose || docker compose version --short")
    done = subprocess.run(netns_hosts.ssh_argv(netns_hosts.hosts[0], script),
                          capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    initial_path, docker, flock, tar, compose = done.stdout.splitlines()
    assert "/usr/local/bin" in initial_path.removeprefix("PATH=").split(":")
    assert docker.endswith("/docker") and flock.endswith("/flock") and tar.endswith("/tar")
    assert compose.endswith("/docker-compose") or compose[:1].isdigit(), compose
