"""What the image-shipping tests and bench/bench_images.py share: settings and connections
for the network-namespace hosts, small app images built here, and a TLS registry with a
login that the hosts reach directly (a DEPLOY_REGISTRY stand-in)."""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from deploy.fleet import hosts as remote
from deploy.settings import Settings, load_settings
from tests.support.base import LOCAL_IMAGES_ENV, read_env_file
from tests.support.busybox import busybox_tar
from tests.support.netns_cleanup import NetnsError

ROOT_CERTS = Path("/etc/docker/certs.d")


def run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 300)
    return subprocess.run(argv, **kw)


def local_images() -> dict[str, str]:
    return read_env_file(LOCAL_IMAGES_ENV) if LOCAL_IMAGES_ENV.exists() else {}


def registry_image() -> str | None:
    return os.environ.get("REGISTRY_IMAGE") or local_images().get("REGISTRY_IMAGE")


def settings_for(rig, project: str, **values: str) -> Settings:
    base = {"SSH_KEY_FILE": str(rig.key_file), "SSH_KNOWN_HOSTS": str(rig.known_hosts),
            "DEPLOY_USER": rig.user, "COMPOSE_PROJECT_NAME": project,
            "REGISTRY_IMAGE": registry_image() or "registry:2"}
    return load_settings(environ={**base, **values}, read_file=False)


def connect(rig, host, settings: Settings):
    """An open fabric Connection to a rig host, host key checked as a deploy does."""
    c = remote.connection(remote.parse_hosts(rig.spec(host))[0], settings)
    remote.open_connection(c, settings)
    return c


def image_id(argv_prefix: list[str], ref: str) -> str | None:
    done = run([*argv_prefix, "image", "inspect", "--format", "{{.Id}}", ref])
    return done.stdout.strip() if done.returncode == 0 else None


class AppImages:
    """A small app image built here the way a real one is (docker build, classic builder):
    busybox, a `deps` layer that code changes never touch, and a top `app` layer holding a
    version file and an incompressible payload, the stand-in for the code."""

    def __init__(self, repository: str, workdir: Path, deps_bytes: int = 4 << 20):
        self.repository = repository
        self.base = f"{repository}-base:1"
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tags: list[str] = []
        imported = run(["docker", "import", "-", self.base], input=busybox_tar(), text=False)
        if imported.returncode != 0:
            raise NetnsError(f"docker import {self.base}: {imported.stderr!r}")
        (self.dir / "deps.bin").write_bytes(os.urandom(deps_bytes))
        (self.dir / "Dockerfile").write_text(
            f"FROM {self.base}\nCOPY deps.bin /opt/deps.bin\nCOPY app/ /app/\n"
            'CMD ["cat", "/app/version"]\n')

    def build(self, tag: str, version: str, payload_bytes: int = 512 << 10) -> str:
        """Build repository:tag with a new app layer; its image ID."""
        app = self.dir / "app"
        shutil.rmtree(app, ignore_errors=True)
        app.mkdir()
        (app / "version").write_text(version + "\n")
        (app / "payload.bin").write_bytes(os.urandom(payload_bytes))
        ref = f"{self.repository}:{tag}"
        done = run(["docker", "build", "--quiet", "--tag", ref, str(self.dir)],
                   env={**os.environ, "DOCKER_BUILDKIT": "0"})
        if done.returncode != 0:
            raise NetnsError(f"docker build {ref}: {done.stderr.strip()}")
        self.tags.append(ref)
        return image_id(["docker"], ref)

    def remove(self) -> None:
        run(["docker", "image", "rm", "--force", *self.tags, self.base])


def _self_signed(address: str, workdir: Path) -> tuple[Path, Path, str]:
    """A key and a self-signed certificate (CA:true) for the IP address; (key, cert, pem)."""
    # cryptography is imported only here: the TLS registry tests alone need it.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"deploy-e2e {address}")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(address))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_path, cert_path = workdir / "key.pem", workdir / "cert.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_text(pem)
    return key_path, cert_path, pem


def _free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


class LoginRegistry:
    """A real registry (REGISTRY_IMAGE) on this machine with TLS and an htpasswd login,
    listening on one address that every rig host reaches (the first host's veth end here;
    the others get a route) and that this machine's engine trusts (certs.d)."""

    def __init__(self, rig, image: str, user: str = "deployer"):
        self.rig = rig
        self.image = image
        self.user = user
        self.password = "pw-" + secrets.token_urlsafe(18)
        self.ip = rig.hosts[0].root_address
        self.port = _free_port(self.ip)
        self.address = f"{self.ip}:{self.port}"
        self.name = "deploy-e2e-login-registry-" + uuid.uuid4().hex[:8]
        self.dir = Path(tempfile.mkdtemp(prefix="deploy-e2e-registry-"))

    def start(self) -> None:
        import bcrypt

        key, cert, pem = _self_signed(self.ip, self.dir)
        hashed = bcrypt.hashpw(self.password.encode(), bcrypt.gensalt(rounds=6)).decode()
        (self.dir / "htpasswd").write_text(f"{self.user}:{hashed}\n")
        os.chmod(self.dir, 0o755)
        self.made_certs_dir = not ROOT_CERTS.exists()
        self.root_certs = ROOT_CERTS / self.address
        self.root_certs.mkdir(parents=True, exist_ok=True)
        (self.root_certs / "ca.crt").write_text(pem)
        self.rig.reach(self.ip)
        self.rig.trust_registry(self.address, pem)
        # The host's network: no published-port NAT between the hosts and the registry.
        done = run(["docker", "run", "--detach", "--name", self.name, "--network", "host",
                    "--volume", f"{self.dir}:/auth:ro",
                    "--env", f"REGISTRY_HTTP_ADDR={self.address}",
                    "--env", "REGISTRY_HTTP_TLS_CERTIFICATE=/auth/cert.pem",
                    "--env", "REGISTRY_HTTP_TLS_KEY=/auth/key.pem",
                    "--env", "REGISTRY_AUTH=htpasswd",
                    "--env", "REGISTRY_AUTH_HTPASSWD_REALM=deploy-e2e",
                    "--env", "REGISTRY_AUTH_HTPASSWD_PATH=/auth/htpasswd", self.image])
        if done.returncode != 0:
            raise NetnsError(f"login registry: {done.stderr.strip()}")
        import ssl

        context = ssl.create_default_context(cafile=str(cert))
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"https://{self.address}/v2/", timeout=2,
                                       context=context)
            except urllib.error.HTTPError as exc:
                if exc.code == 401:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                logs = run(["docker", "logs", "--tail", "20", self.name]).stderr
                raise NetnsError(f"login registry at {self.address} never answered:\n{logs}")
            time.sleep(0.1)

    def stop(self) -> None:
        run(["docker", "rm", "--force", "--volumes", self.name])
        shutil.rmtree(getattr(self, "root_certs", self.dir / "none"), ignore_errors=True)
        if getattr(self, "made_certs_dir", False):
            try:
                ROOT_CERTS.rmdir()  # only if empty: another run may be using it
            except OSError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def login_registry(rig, image: str) -> Iterator[LoginRegistry]:
    registry = LoginRegistry(rig, image)
    try:
        registry.start()
        yield registry
    finally:
        registry.stop()
