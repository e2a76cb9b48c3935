"""The migration runner (`python3 -m deploy migrate|migrate-status|check-tables`) as a one-off
task on the Swarm: from the first app service's image, on the stack's network, with the
app service's environment (so DATABASE_URL is the one the app's tasks use, e.g.
`postgres:5432` on the overlay), the runner's lock and lock-timeout policy included.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence

from deploy.errors import ConfigError
from deploy.output import Output, as_output
from deploy.settings import Settings
from deploy.swarm import oneoff
from deploy.swarm.target import SwarmConfig

# How long the runner in the task retries its first connection (the database may still be
# starting on a first deploy).
DATABASE_WAIT = 60


def app_environment(config: dict, settings: Settings) -> dict[str, str]:
    """The first app service's environment from `compose config` (variables resolved)."""
    if not settings.app_services:
        raise ConfigError("APP_SERVICES: empty; on a Swarm the migrations run from the first "
                          "app service's image")
    body = (config.get("services") or {}).get(settings.app_services[0]) or {}
    env = body.get("environment") or {}
    if isinstance(env, list):  # KEY=VALUE items
        env = dict(item.partition("=")[::2] for item in env)
    return oneoff.task_env(env)


def migrate_args(lock_wait: float, extra: Sequence[str] = ()) -> list[str]:
    return ["migrate", "--wait", str(DATABASE_WAIT), "--lock-wait", f"{lock_wait:g}", *extra]


def run_runner(manager, config: SwarmConfig, *, image: str, resolve_image: bool,
               env: Mapping[str, str], args: Sequence[str], what: str,
               out: Output | None = None, budget: float | None = None
               ) -> oneoff.OneOffResult:
    """The runner with ``args`` (e.g. migrate_args(60)) once; its result, lines shown."""
    out = as_output(out)
    name = oneoff.task_name(config.stack, what)
    out(f"   one-off task {name}: {shlex.join([*config.runner, *args])} "
        f"(image {image[:19] if image.startswith('sha256:') else image}, network "
        f"{config.network})")
    policy = oneoff.PollPolicy(budget=budget or config.rollout_timeout)
    url = env.get("DATABASE_URL", "")
    from urllib.parse import urlsplit

    try:
        password = urlsplit(url).password if url else None
    except ValueError:
        password = None
    result = oneoff.run_once(manager, name=name, image=image, argv=[*config.runner, *args],
                             network=config.network, env=env, resolve_image=resolve_image,
                             labels={"deploy.task": what}, policy=policy, out=out,
                             secrets_=[password] if password else [])
    return result


def show(result: oneoff.OneOffResult, out: Output, prefix: str = "   | ") -> None:
    for line in result.lines:
        out(prefix + line)
