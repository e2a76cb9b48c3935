"""Reaching a host over SSH: known host keys only, and failures that say what to do.

Fabric's own default auto-adds an unknown host key; here an unknown key is refused with its
fingerprint and a changed key is refused outright (docs/design.md, "Safety").

Fabric and Paramiko are imported inside the functions that use them: importing them costs
more than the rest of the tasks together, and local tasks never need them.
"""

from __future__ import annotations

import base64
import hashlib

from deploy.errors import ConfigError, DeployError
from deploy.fleet.hosts import Host
from deploy.settings import Settings

# Seconds an SSH connection may take to open before the host counts as unreachable.
CONNECT_TIMEOUT = 15


def fingerprint(key) -> str:
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _reject_policy():
    import paramiko

    class RejectUnknownHosts(paramiko.RejectPolicy):
        """RejectPolicy that keeps the offered key, so the refusal can show its fingerprint."""

        def missing_host_key(self, client, hostname, key):
            raise UnknownHostKey(hostname, key)

    return RejectUnknownHosts()


class UnknownHostKey(Exception):
    def __init__(self, hostname: str, key):
        super().__init__(f"Server {hostname!r} not found in known_hosts")
        self.hostname = hostname
        self.key = key


def secure(c, settings: Settings) -> None:
    """Refuse unknown or changed host keys; Fabric's own default would auto-add them."""
    known = settings.ssh_known_hosts
    if not known.is_file():
        raise ConfigError(f"SSH_KNOWN_HOSTS: {known} does not exist; write the hosts' keys "
                          "there (ssh-keyscan, or the DEPLOY_KNOWN_HOSTS secret in CI)")
    c.client.set_missing_host_key_policy(_reject_policy())
    c.client.load_host_keys(str(known))
    if settings.ssh_key_file and not c.connect_kwargs.get("key_filename"):
        c.connect_kwargs["key_filename"] = [str(settings.ssh_key_file)]
    c.connect_kwargs.setdefault("look_for_keys", settings.ssh_key_file is None)


def open_connection(c, settings: Settings) -> None:
    """Open the SSH connection, turning each failure into a message that says what to do."""
    import paramiko

    where = f"{c.user}@{c.host}:{c.port}"
    try:
        c.open()
    except UnknownHostKey as exc:
        raise ConfigError(
            f"{c.host}: host key not in SSH_KNOWN_HOSTS ({settings.ssh_known_hosts}); the "
            f"server offers {exc.key.get_name()} {fingerprint(exc.key)}. Refusing to connect: "
            f"verify that fingerprint out of band, then add the key "
            f"(ssh-keyscan -p {c.port} {c.host} >> {settings.ssh_known_hosts})") from None
    except paramiko.BadHostKeyException as exc:
        raise ConfigError(
            f"{c.host}: host key CHANGED: the server offers {exc.key.get_name()} "
            f"{fingerprint(exc.key)} but SSH_KNOWN_HOSTS has {fingerprint(exc.expected_key)}. "
            "Refusing to connect (a reinstalled host, or someone in the middle)") from None
    except paramiko.AuthenticationException as exc:
        raise ConfigError(f"{where}: SSH authentication failed ({exc}); check DEPLOY_USER and "
                          "SSH_KEY_FILE") from None
    except (OSError, paramiko.SSHException) as exc:
        raise DeployError(f"{where}: cannot connect: {exc}") from None


def connection(host: Host, settings: Settings):
    """A Connection to `host` that trusts only SSH_KNOWN_HOSTS (not opened yet)."""
    from fabric import Config, Connection

    c = Connection(host.name, user=host.user or settings.deploy_user, port=host.port,
                   connect_timeout=CONNECT_TIMEOUT,
                   config=Config(overrides={"run": {"in_stream": False}}))
    secure(c, settings)
    return c
