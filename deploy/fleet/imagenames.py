"""The names of a release's images, read from the compose file here: each app and worker
service's image name as Compose resolves it with a host's settings (a host's release
directory holds the same file), and the one whose tags list a host's releases."""

from __future__ import annotations

import threading

from invoke import Context

from deploy.machine.stack import Stack
from deploy.settings import Settings

_READ: dict[tuple, tuple[tuple[str, ...], tuple[str, ...]]] = {}
_LOCK = threading.Lock()


def _read(settings: Settings, local) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(image names, build contexts) of the app and worker services, read once per
    settings with `compose config` here."""
    services = (*settings.app_services, *settings.worker_services)
    if not services:
        return (), ()
    key = (str(settings.compose_file), services, tuple(sorted(settings.values.items())))
    with _LOCK:
        if key not in _READ:
            stack = Stack(local if local is not None else Context(), settings)
            mine = [s for s in services if s in stack.project.services]
            builds = [stack.project.services[s].build for s in mine]
            _READ[key] = (tuple(dict.fromkeys(stack.image_name(s) for s in mine)),
                          tuple(dict.fromkeys(b.context for b in builds if b is not None)))
        return _READ[key]


def image_names(settings: Settings, local=None) -> tuple[str, ...]:
    """The image names (no tag) of the app and worker services of ``settings``' compose
    file, each once in service order, as Compose resolves that file here with those
    settings (a host's release directory holds the same file)."""
    return _read(settings, local)[0]


def build_contexts(settings: Settings, local=None) -> tuple[str, ...]:
    """Their `build:` contexts, as Compose resolves them here (absolute paths)."""
    return _read(settings, local)[1]


def release_image(settings: Settings) -> str:
    """The image whose tags are a host's releases: its first app or worker service's."""
    names = image_names(settings)
    return names[0] if names else settings.backend_image
