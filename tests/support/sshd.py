"""An sshd instance set up as a locked-down host's: what the network-namespace test hosts
(tests/support/netns.py) run, one per host.

Each has its own ed25519 host key, config, pid file and log, accepts only one freshly
generated client key, and records every command line a client sends (tests assert that
no build ran on a host and that secrets never reach a command line).

The remote PATH: with `UsePAM no`, sshd gives a session its compiled-in default PATH
(Debian: `/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin` for root,
`/usr/local/bin:/usr/bin:/bin:/usr/games` for others), which already has /usr/local/bin.
The user's login shell then runs the command, and Debian's bash sources ~/.bashrc for
commands that arrive over ssh, so that file can prepend to it (it never removes).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

SSHD = Path("/usr/sbin/sshd")

CONFIG = """\
# Written by tests/support/sshd.py; nothing from /etc/ssh is included.
Port {port}
ListenAddress {host}
AddressFamily inet
HostKey {host_key}
PidFile {pid_file}
AuthorizedKeysFile {authorized_keys}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
PermitEmptyPasswords no
# Without PAM, sshd sets the session's PATH itself (see the module docstring).
UsePAM no
# The keys live under a temp dir in the world-writable /tmp.
StrictModes no
# No AcceptEnv: a client's environment never reaches the host (sshd's default).
PermitUserEnvironment no
# Fabric's put() speaks SFTP; the tunnel to PostgreSQL is a direct-tcpip channel.
Subsystem sftp {sftp_server}
# Every command line a client sends is recorded (tests assert secrets never appear in
# one), then run as sent; SFTP sessions arrive here too and are handed to sftp-server.
ForceCommand {record}
AllowTcpForwarding yes
AllowAgentForwarding no
X11Forwarding no
PrintMotd no
PrintLastLog no
UseDNS no
# Parallel deploys and lock tests open several connections and channels at once.
MaxStartups 100:30:200
MaxSessions 50
LogLevel VERBOSE
"""


SFTP_SERVER = "/usr/lib/openssh/sftp-server"
RECORD = """\
#!/bin/sh
# ForceCommand: append the client's command line to {log}, then run it as sent,
# with the login shell, as sshd itself would.
printf '%s\\n' "$SSH_ORIGINAL_COMMAND" >> '{log}'
case "$SSH_ORIGINAL_COMMAND" in
    ""|internal-sftp|*sftp-server) exec {sftp_server} ;;
esac
exec "${{SHELL:-/bin/sh}}" -c "$SSH_ORIGINAL_COMMAND"
"""


class SshdError(RuntimeError):
    """The rig could not be set up; the message says what to do."""


def missing_tools() -> list[str]:
    """The binaries the rig needs that this machine lacks."""
    missing = [] if os.access(SSHD, os.X_OK) else [str(SSHD)]
    return missing + [tool for tool in ("ssh-keygen", "ssh") if not shutil.which(tool)]


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment,
                    "-f", str(path)], check=True, capture_output=True, text=True)


def _fingerprint(pub: Path) -> str:
    # `ssh-keygen -lf` prints "256 SHA256:… comment (ED25519)".
    out = subprocess.run(["ssh-keygen", "-lf", str(pub)], check=True,
                         capture_output=True, text=True).stdout
    return out.split()[1]


def _descendants(pid: int) -> list[int]:
    """Every live process below pid (Linux /proc), children before grandchildren."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name (field 2) may hold spaces and parentheses: parse after it.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(0), []):
            found.append(child)
            todo.append(child)
    return found


def _kill(pid: int, sig: int = signal.SIGTERM) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


class SshHost:
    """One sshd instance: its files, its process, and its host key."""

    def __init__(self, root: Path, host: str, port: int, authorized_keys: Path):
        self.host = host
        self.port = port
        self.dir = root / host
        self.dir.mkdir()
        self.host_key = self.dir / "ssh_host_ed25519_key"
        self.config = self.dir / "sshd_config"
        self.pid_file = self.dir / "sshd.pid"
        self.log = self.dir / "sshd.log"
        _keygen(self.host_key, f"deploy-e2e host {host}")
        self.public_key = " ".join(self.host_key.with_suffix(".pub").read_text().split()[:2])
        self.fingerprint = _fingerprint(self.host_key.with_suffix(".pub"))
        self.commands = self.dir / "commands.log"
        self.record = self.dir / "record-command"
        self.record.write_text(RECORD.format(log=self.commands, sftp_server=SFTP_SERVER))
        self.record.chmod(0o755)
        self.config.write_text(CONFIG.format(
            port=port, host=host, host_key=self.host_key, pid_file=self.pid_file,
            authorized_keys=authorized_keys, sftp_server=SFTP_SERVER, record=self.record))
        self.process: subprocess.Popen | None = None

    @property
    def known_hosts_line(self) -> str:
        return f"[{self.host}]:{self.port} {self.public_key}\n"

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def start(self) -> None:
        test = subprocess.run([str(SSHD), "-t", "-f", str(self.config)],
                              capture_output=True, text=True)
        if test.returncode != 0:
            raise SshdError(f"sshd rejects {self.config}: {test.stderr.strip()}")
        # -D: stay in the foreground, so an early exit is seen; -E: log to our file.
        with open(os.devnull, "rb") as devnull, open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [str(SSHD), "-D", "-f", str(self.config), "-E", str(self.log)],
                stdin=devnull, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Until the pid file exists and the port answers with an SSH banner."""
        deadline = time.monotonic() + timeout
        last = "no attempt"
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise SshdError(f"sshd for {self.host}:{self.port} exited with "
                                f"{self.process.returncode}; its log ({self.log}):\n"
                                f"{self.log_tail()}")
            if self.pid_file.exists():
                try:
                    with socket.create_connection((self.host, self.port), timeout=2) as s:
                        s.settimeout(2)
                        banner = s.recv(256)
                    if banner.startswith(b"SSH-2.0-"):
                        return
                    last = f"unexpected banner {banner[:60]!r}"
                except OSError as e:
                    last = str(e)
            else:
                last = f"no pid file {self.pid_file} yet"
            time.sleep(0.05)
        raise SshdError(f"sshd for {self.host}:{self.port} not ready after {timeout:.0f} s "
                        f"({last}); its log ({self.log}):\n{self.log_tail()}")

    def stop(self) -> None:
        """Kill the pid in the pid file, then any session processes it left behind."""
        pids = []
        try:
            pids.append(int(self.pid_file.read_text().split()[0]))
        except (OSError, ValueError, IndexError):
            pass
        if self.process is not None and self.process.pid not in pids:
            pids.append(self.process.pid)
        for pid in pids:
            # A connection a test left open lives on in its own process after the
            # listener dies: end those too, so nothing outlives the session.
            sessions = _descendants(pid)
            _kill(pid)
            for child in sessions:
                _kill(child)
        if self.process is not None:
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
