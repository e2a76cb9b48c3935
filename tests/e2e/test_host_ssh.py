"""The sshd test hosts behave like real, locked-down hosts: key auth only, known host keys."""

from __future__ import annotations

import os
import shutil
import subprocess

import paramiko
import pytest

from tests.e2e.conftest import _missing


def _client(known_hosts) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.load_host_keys(str(known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return client


def _connect_with_key(ssh_hosts, host, known_hosts=None) -> paramiko.SSHClient:
    client = _client(known_hosts or ssh_hosts.known_hosts)
    client.connect(host, port=ssh_hosts.port, username=ssh_hosts.user,
                   key_filename=str(ssh_hosts.key_file), look_for_keys=False,
                   allow_agent=False, timeout=10)
    return client


@pytest.mark.parametrize("host", ["127.0.0.2", "127.0.0.3"])
def test_key_auth_with_known_hosts_and_reject_policy_runs_a_command(ssh_hosts, host):
    client = _connect_with_key(ssh_hosts, host)
    try:
        _, stdout, stderr = client.exec_command("echo ok")
        assert stdout.read().decode() == "ok\n", stderr.read().decode()
        assert stdout.channel.recv_exit_status() == 0
        # The key the client accepted is the one the rig says the host has.
        remote_key = client.get_transport().get_remote_server_key()
        assert f"{remote_key.get_name()} {remote_key.get_base64()}" == \
            ssh_hosts.host_public_key(host)
    finally:
        client.close()


def test_the_two_hosts_have_different_host_keys_and_sshd_style_fingerprints(ssh_hosts):
    first, second = (ssh_hosts.host_key_fingerprint(h) for h in ssh_hosts.hosts)
    assert first != second
    for fingerprint in (first, second):
        assert fingerprint.startswith("SHA256:") and len(fingerprint) == len("SHA256:") + 43
    lines = ssh_hosts.known_hosts.read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["[127.0.0.2]:2222", "[127.0.0.3]:2222"]
    assert all(line.split()[1] == "ssh-ed25519" for line in lines)


def test_a_password_is_refused_only_publickey_is_offered(ssh_hosts):
    client = _client(ssh_hosts.known_hosts)
    with pytest.raises(paramiko.BadAuthenticationType) as refused:
        client.connect(ssh_hosts.hosts[0], port=ssh_hosts.port, username=ssh_hosts.user,
                       password="hunter2", look_for_keys=False, allow_agent=False,
                       timeout=10)
    client.close()
    assert refused.value.allowed_types == ["publickey"]


def test_a_key_not_in_authorized_keys_is_refused(ssh_hosts, tmp_path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                    str(tmp_path / "stranger")], check=True, capture_output=True)
    client = _client(ssh_hosts.known_hosts)
    with pytest.raises(paramiko.AuthenticationException):
        client.connect(ssh_hosts.hosts[0], port=ssh_hosts.port, username=ssh_hosts.user,
                       key_filename=str(tmp_path / "stranger"), look_for_keys=False,
                       allow_agent=False, timeout=10)
    client.close()


def test_a_host_missing_from_known_hosts_is_refused_naming_it(ssh_hosts):
    only_first = ssh_hosts.only_known("127.0.0.2")
    assert "[127.0.0.3]" not in only_first.read_text()
    _connect_with_key(ssh_hosts, "127.0.0.2", only_first).close()

    client = _client(only_first)
    with pytest.raises(paramiko.SSHException) as refused:
        client.connect("127.0.0.3", port=ssh_hosts.port, username=ssh_hosts.user,
                       key_filename=str(ssh_hosts.key_file), look_for_keys=False,
                       allow_agent=False, timeout=10)
    client.close()
    assert "[127.0.0.3]:2222" in str(refused.value)
    assert "not found in known_hosts" in str(refused.value)


def test_a_changed_host_key_is_refused(ssh_hosts):
    client = _client(ssh_hosts.changed_key("127.0.0.2"))
    with pytest.raises(paramiko.BadHostKeyException) as refused:
        client.connect("127.0.0.2", port=ssh_hosts.port, username=ssh_hosts.user,
                       key_filename=str(ssh_hosts.key_file), look_for_keys=False,
                       allow_agent=False, timeout=10)
    client.close()
    assert "127.0.0.2" in str(refused.value)


def test_the_openssh_client_connects_with_strict_host_key_checking(ssh_hosts):
    for host in ssh_hosts.hosts:
        done = subprocess.run(ssh_hosts.ssh_argv(host, "echo ok"), capture_output=True,
                              text=True, timeout=30, stdin=subprocess.DEVNULL)
        assert (done.returncode, done.stdout) == (0, "ok\n"), done.stderr
    unknown = subprocess.run(
        ssh_hosts.ssh_argv("127.0.0.3", "echo ok", ssh_hosts.only_known("127.0.0.2")),
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert unknown.returncode == 255
    assert "Host key verification failed" in unknown.stderr


def test_the_client_environment_does_not_reach_the_host(ssh_hosts):
    argv = ssh_hosts.ssh_argv(ssh_hosts.hosts[0], 'echo "[$LC_DEPLOY_PROBE]"')
    argv[1:1] = ["-o", "SendEnv=LC_DEPLOY_PROBE"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL, env={**os.environ, "LC_DEPLOY_PROBE": "leak"})
    assert (done.returncode, done.stdout) == (0, "[]\n"), done.stderr


def test_the_remote_shell_finds_docker_compose_flock_and_tar(ssh_hosts):
    if not shutil.which("docker"):
        _missing("docker CLI not installed (bash .ci/provision installs it)")
    # sshd's own PATH (what the shell started with, before ~/.bashrc) has /usr/local/bin.
    script = ('tr "\\0" "\\n" < /proc/$$/environ | grep "^PATH="; '
              "command -v docker flock tar; "
              "command -v docker-compose || docker compose version --short")
    done = subprocess.run(ssh_hosts.ssh_argv(ssh_hosts.hosts[0], script),
                          capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    initial_path, docker, flock, tar, *_ = done.stdout.splitlines()
    assert "/usr/local/bin" in initial_path.removeprefix("PATH=").split(":")
    assert docker.endswith("/docker") and flock.endswith("/flock") and tar.endswith("/tar")
