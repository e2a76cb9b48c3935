"""Compose argv builders and parsers: exact argv for v1 and v2, real output shapes."""

import pytest

from deploy.commands import compose
from deploy.commands.compose import Compose, ContainerState
from deploy.errors import ConfigError

FILE = "deploy/stack/docker-compose.yml"
V2 = Compose(("docker", "compose"), "v2", FILE, "app")
V1 = Compose(("docker-compose",), "v1", FILE, "app")
V2_HEAD = ["docker", "compose", "-f", FILE, "-p", "app"]
V1_HEAD = ["docker-compose", "-f", FILE, "-p", "app"]


# --- builders ------------------------------------------------------------------------


def test_logs_with_tail_for_one_service_is_the_exact_argv():
    assert compose.logs(V2, ["backend"], tail=10) == [
        "docker", "compose", "-f", FILE, "-p", "app",
        "logs", "--no-color", "--tail", "10", "backend",
    ]  # fmt: skip
    assert compose.logs(V1, ["backend"], tail=10) == [
        "docker-compose", "-f", FILE, "-p", "app",
        "logs", "--no-color", "--tail", "10", "backend",
    ]  # fmt: skip


def test_logs_with_every_option_on_v2():
    argv = compose.logs(V2, ["backend", "postgres"], tail="all", since="10m", timestamps=True)
    assert argv == V2_HEAD + [
        "logs", "--no-color", "--timestamps", "--tail", "all", "--since", "10m",
        "backend", "postgres",
    ]  # fmt: skip


def test_logs_of_all_services_names_none():
    assert compose.logs(V1) == V1_HEAD + ["logs", "--no-color"]


def test_logs_since_on_v1_is_refused_with_what_to_install():
    with pytest.raises(ConfigError) as err:
        compose.logs(V1, since="10m")
    assert str(err.value).startswith("--since needs Docker Compose v2")
    assert err.value.exit_code == 2


def test_logs_tail_must_be_a_number_or_all():
    with pytest.raises(ConfigError, match=r"--tail: expected a number of lines or 'all', got '-5'"):
        compose.logs(V2, tail="-5")


def test_a_single_service_string_is_one_service_not_letters():
    assert compose.logs(V2, "backend") == V2_HEAD + ["logs", "--no-color", "backend"]


def test_scale_up_starts_each_service_beside_its_running_ones_in_one_command():
    counts = {"web": 2, "admin": 4, "worker": 2}
    tail = ["up", "-d", "--no-deps", "--no-recreate", "--no-build", "--scale", "web=2",
            "--scale", "admin=4", "--scale", "worker=2", "web", "admin", "worker"]
    assert compose.scale_up(V2, counts) == V2_HEAD + tail
    assert compose.scale_up(V1, counts) == V1_HEAD + tail


@pytest.mark.parametrize("counts", [{}, {"web": 2, "worker": 0}])
def test_scale_up_refuses_no_service_or_a_count_below_one(counts):
    with pytest.raises(ValueError, match="each count must be at least 1"):
        compose.scale_up(V2, counts)


def test_scale_up_refuses_a_service_name_compose_would_read_as_an_option():
    with pytest.raises(ConfigError, match="service name '--all': must be non-empty"):
        compose.scale_up(V2, {"--all": 1})


def test_the_tool_s_override_files_follow_the_user_file_before_the_project_name():
    c = Compose(("docker", "compose"), "v2", FILE, "app", env_file="/srv/.env",
                env=("BACKEND_TAG=live",), overrides=("/tmp/o1.yml", "/tmp/o2.yml"))
    assert c.argv("ps") == ["env", "BACKEND_TAG=live", "docker", "compose", "-f", FILE,
                            "-f", "/tmp/o1.yml", "-f", "/tmp/o2.yml", "-p", "app",
                            "--env-file", "/srv/.env", "ps"]


def test_env_file_is_a_global_option_before_the_subcommand_for_both_flavours():
    v1 = Compose(("docker-compose",), "v1", FILE, "app", env_file="/srv/app/.env")
    v2 = Compose(("docker", "compose"), "v2", FILE, "app", env_file="/srv/app/.env")
    assert compose.down(v1) == V1_HEAD + [
        "--env-file", "/srv/app/.env", "down", "--remove-orphans",
    ]  # fmt: skip
    assert compose.down(v2) == V2_HEAD + [
        "--env-file", "/srv/app/.env", "down", "--remove-orphans",
    ]  # fmt: skip


def test_up_never_waits_and_never_builds_unless_asked():
    assert compose.up(V2) == V2_HEAD + ["up", "-d", "--no-build"]
    assert compose.up(V1, build=True) == V1_HEAD + ["up", "-d", "--build"]
    assert compose.up(V2, ["backend"]) == V2_HEAD + ["up", "-d", "--no-build", "backend"]
    assert "--wait" not in compose.up(V2) + compose.up(V1)


def test_down_removes_orphans_and_volumes_only_when_asked():
    assert compose.down(V2) == V2_HEAD + ["down", "--remove-orphans"]
    assert compose.down(V1, volumes=True) == V1_HEAD + ["down", "--remove-orphans", "--volumes"]


def test_exec_disables_the_tty_unless_one_is_wanted():
    assert compose.exec_(V2, "postgres", ["psql", "-U", "app", "-c", "SELECT 1"]) == V2_HEAD + [
        "exec", "-T", "postgres", "psql", "-U", "app", "-c", "SELECT 1",
    ]  # fmt: skip
    assert compose.exec_(V1, "postgres", ["psql"], tty=True) == V1_HEAD + [
        "exec", "postgres", "psql",
    ]  # fmt: skip


def test_docker_info_does_not_go_through_compose():
    assert compose.docker_info() == ["docker", "info", "--format", "{{json .ServerVersion}}"]


def test_shell_metacharacters_in_names_stay_single_argv_items():
    evil = "$(touch pwned); echo 'x' \"y\""
    c = Compose(("docker", "compose"), "v2", "my stack/compose.yml", evil)
    argv = compose.logs(c, [evil])
    assert argv == [
        "docker", "compose", "-f", "my stack/compose.yml", "-p", evil, "logs", "--no-color", evil,
    ]  # fmt: skip


def test_a_service_name_that_looks_like_an_option_is_refused():
    with pytest.raises(ConfigError, match=r"service name '--volumes': must be non-empty"):
        compose.up(V2, ["--volumes"])


def test_compose_cmd_is_split_like_a_shell_would():
    base, flavour = compose.detect_flavour(
        "sudo -n /opt/bin/docker-compose", lambda argv: (0, "docker-compose version 1.29.2, b")
    )
    assert base == ("sudo", "-n", "/opt/bin/docker-compose")
    assert flavour == "v1"


# --- flavour detection -------------------------------------------------------------


class FakeProbe:
    """Answers for known argv; anything else behaves like a missing executable."""

    def __init__(self, answers):
        self.answers = answers
        self.calls = []

    def __call__(self, argv):
        self.calls.append(argv)
        key = tuple(argv)
        if key not in self.answers:
            raise FileNotFoundError(argv[0])
        return self.answers[key]


def test_the_compose_plugin_v2_is_preferred():
    probe = FakeProbe({("docker", "compose", "version"): (0, "Docker Compose version v2.29.1\n")})
    assert compose.detect_flavour(None, probe) == (("docker", "compose"), "v2")


def test_compose_v5_is_the_v2_flavour():
    probe = FakeProbe({("docker", "compose", "version"): (0, "Docker Compose version 5.0.0\n")})
    assert compose.detect_flavour(None, probe) == (("docker", "compose"), "v2")


def test_docker_compose_1_29_is_v1_when_the_plugin_is_missing():
    probe = FakeProbe(
        {
            ("docker", "compose", "version"): (1, ""),  # "docker: unknown command: docker compose"
            ("docker-compose", "version", "--short"): (0, "1.29.2\n"),
        }
    )
    assert compose.detect_flavour(None, probe) == (("docker-compose",), "v1")


def test_a_standalone_docker_compose_2_binary_is_v2():
    probe = FakeProbe({("docker-compose", "version", "--short"): (0, "2.24.6\n")})
    assert compose.detect_flavour(None, probe) == (("docker-compose",), "v2")


def test_compose_cmd_overrides_detection_and_reads_its_flavour():
    probe = FakeProbe({("podman", "compose", "version"): (0, "Docker Compose version v2.20.2\n")})
    assert compose.detect_flavour("podman compose", probe) == (("podman", "compose"), "v2")
    assert probe.calls == [["podman", "compose", "version"]]


def test_a_broken_compose_cmd_is_a_config_error_naming_the_setting():
    with pytest.raises(ConfigError, match=r"^COMPOSE_CMD: 'nope version' failed"):
        compose.detect_flavour("nope", FakeProbe({}))


def test_no_compose_at_all_says_what_to_install():
    with pytest.raises(ConfigError) as err:
        compose.detect_flavour(None, FakeProbe({("docker", "compose", "version"): (1, "")}))
    assert str(err.value) == (
        "Docker Compose not found: install the docker compose plugin (v2) or docker-compose, "
        "or set COMPOSE_CMD"
    )
    assert err.value.exit_code == 2


# --- docker inspect -------------------------------------------------------------------

# Real `docker inspect` (Docker 20.10, docker-compose 1.29.2), trimmed to the keys read:
# a healthy container with a published port, one that exited 3, one restart-looping,
# one unhealthy.
INSPECT_V1 = r"""[
  {
    "Id": "c11003ff2cc95b1d9f633538a42da928d09daaaa7cfbe8eb1ba6126542f7ae42",
    "Created": "2026-11-26T07:50:23.343699028Z",
    "Name": "/h3p_backend_1",
    "RestartCount": 0,
    "State": {
      "Status": "running", "Running": true, "Paused": false, "Restarting": false,
      "OOMKilled": false, "Dead": false, "Pid": 4999, "ExitCode": 0, "Error": "",
      "StartedAt": "2026-11-26T07:50:23.959091168Z",
      "FinishedAt": "0001-01-01T00:00:00Z",
      "Health": {
        "Status": "healthy",
        "FailingStreak": 0,
        "Log": [
          {"Start": "2026-11-26T07:50:33.324521375Z", "End": "2026-11-26T07:50:33.357513727Z",
           "ExitCode": 0, "Output": "ok\n"},
          {"Start": "2026-11-26T07:50:34.360850478Z", "End": "2026-11-26T07:50:34.394382987Z",
           "ExitCode": 0, "Output": "ok\n"}
        ]
      }
    },
    "Config": {
      "Image": "h3probe:local",
      "Labels": {
        "com.docker.compose.container-number": "1",
        "com.docker.compose.oneoff": "False",
        "com.docker.compose.project": "h3p",
        "com.docker.compose.service": "backend",
        "com.docker.compose.version": "1.29.2"
      }
    },
    "NetworkSettings": {"Ports": {"5432/tcp": [{"HostIp": "127.0.0.1", "HostPort": "15432"}]}}
  },
  {
    "Id": "1bfe374d7107b451e690167750902492a21e6afb815e213d1a507d2a6eec3f4a",
    "Created": "2026-11-26T07:50:23.344910816Z",
    "Name": "/h3p_crash_1",
    "RestartCount": 0,
    "State": {
      "Status": "exited", "Running": false, "Paused": false, "Restarting": false,
      "OOMKilled": false, "Dead": false, "Pid": 0, "ExitCode": 3, "Error": "",
      "StartedAt": "2026-11-26T07:50:24.125833732Z",
      "FinishedAt": "2026-11-26T07:50:24.129207987Z"
    },
    "Config": {
      "Image": "h3probe:local",
      "Labels": {
        "com.docker.compose.container-number": "1",
        "com.docker.compose.oneoff": "False",
        "com.docker.compose.project": "h3p",
        "com.docker.compose.service": "crash",
        "com.docker.compose.version": "1.29.2"
      }
    },
    "NetworkSettings": {"Ports": {}}
  },
  {
    "Id": "cc671cdbecffce6742091a30cae39f384492cdcf0b80a15d83ace7b8ccd17eb3",
    "Created": "2026-11-26T07:50:23.339562946Z",
    "Name": "/h3p_looper_1",
    "RestartCount": 7,
    "State": {
      "Status": "restarting", "Running": true, "Paused": false, "Restarting": true,
      "OOMKilled": false, "Dead": false, "Pid": 0, "ExitCode": 1, "Error": "",
      "StartedAt": "2026-11-26T07:50:32.00601607Z",
      "FinishedAt": "2026-11-26T07:50:32.02577765Z"
    },
    "Config": {
      "Image": "h3probe:local",
      "Labels": {
        "com.docker.compose.container-number": "1",
        "com.docker.compose.oneoff": "False",
        "com.docker.compose.project": "h3p",
        "com.docker.compose.service": "looper",
        "com.docker.compose.version": "1.29.2"
      }
    },
    "NetworkSettings": {"Ports": {}}
  },
  {
    "Id": "2051fd222c677068d4e6578be8502b70df686bd24e50af709548bfae6f151f67",
    "Created": "2026-11-26T07:50:23.336774194Z",
    "Name": "/h3p_sick_1",
    "RestartCount": 0,
    "State": {
      "Status": "running", "Running": true, "Paused": false, "Restarting": false,
      "OOMKilled": false, "Dead": false, "Pid": 4898, "ExitCode": 0, "Error": "",
      "StartedAt": "2026-11-26T07:50:23.824845759Z",
      "FinishedAt": "0001-01-01T00:00:00Z",
      "Health": {
        "Status": "unhealthy",
        "FailingStreak": 10,
        "Log": [
          {"Start": "2026-11-26T07:50:33.164781371Z", "End": "2026-11-26T07:50:33.209791913Z",
           "ExitCode": 1, "Output": "relation \"ai_cost_thresholds\" does not exist\n"},
          {"Start": "2026-11-26T07:50:34.211518245Z", "End": "2026-11-26T07:50:34.246541123Z",
           "ExitCode": 1, "Output": "relation \"ai_cost_thresholds\" does not exist\n"}
        ]
      }
    },
    "Config": {
      "Image": "h3probe:local",
      "Labels": {
        "com.docker.compose.container-number": "1",
        "com.docker.compose.oneoff": "False",
        "com.docker.compose.project": "h3p",
        "com.docker.compose.service": "sick",
        "com.docker.compose.version": "1.29.2"
      }
    },
    "NetworkSettings": {"Ports": {}}
  }
]"""

# A v2-named container (also real shapes): health still starting, a port exposed but not
# published (null), one published on IPv4 and IPv6; plus a one-off `compose run` container.
INSPECT_V2 = r"""[
  {
    "Id": "5e0f7c1d2a9b",
    "Name": "/app-backend-1",
    "RestartCount": 0,
    "State": {
      "Status": "running", "Running": true, "ExitCode": 0, "Error": "",
      "StartedAt": "2026-11-26T07:50:59.776122681Z", "FinishedAt": "0001-01-01T00:00:00Z",
      "Health": {"Status": "starting", "FailingStreak": 0, "Log": []}
    },
    "Config": {"Labels": {"com.docker.compose.service": "backend",
                          "com.docker.compose.oneoff": "False",
                          "com.docker.compose.version": "2.29.1"}},
    "NetworkSettings": {"Ports": {
      "5432/tcp": null,
      "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "18080"}, {"HostIp": "::", "HostPort": "18080"}]
    }}
  },
  {
    "Id": "77aa1c0ffee0",
    "Name": "/app-backend-run-2f4c1a9e0b7d",
    "RestartCount": 0,
    "State": {"Status": "exited", "Running": false, "ExitCode": 0, "Error": "",
              "StartedAt": "2026-11-26T07:40:00Z", "FinishedAt": "2026-11-26T07:40:02Z"},
    "Config": {"Labels": {"com.docker.compose.service": "backend",
                          "com.docker.compose.oneoff": "True"}},
    "NetworkSettings": {"Ports": {}}
  }
]"""


def test_inspect_of_a_healthy_v1_container_reads_service_health_and_ports():
    backend = compose.parse_inspect(INSPECT_V1)[0]
    assert backend == ContainerState(
        id="c11003ff2cc95b1d9f633538a42da928d09daaaa7cfbe8eb1ba6126542f7ae42",
        name="h3p_backend_1",
        service="backend",
        status="running",
        health="healthy",
        exit_code=0,
        restart_count=0,
        health_log=("ok", "ok"),
        ports=("127.0.0.1:15432->5432/tcp",),
        started_at="2026-11-26T07:50:23.959091168Z",
        finished_at=None,
        one_off=False,
    )


def test_inspect_without_a_healthcheck_has_no_health():
    crash = compose.parse_inspect(INSPECT_V1)[1]
    assert (crash.service, crash.status, crash.health, crash.exit_code) == (
        "crash", "exited", None, 3,
    )  # fmt: skip
    assert crash.health_log == ()
    assert crash.finished_at == "2026-11-26T07:50:24.129207987Z"


def test_inspect_reads_restart_counts_and_unhealthy_probe_output():
    _, _, looper, sick = compose.parse_inspect(INSPECT_V1)
    assert (looper.status, looper.restart_count, looper.exit_code) == ("restarting", 7, 1)
    assert sick.health == "unhealthy"
    assert sick.health_log[-1] == 'relation "ai_cost_thresholds" does not exist'


def test_inspect_of_v2_names_uses_the_service_label_and_marks_one_off_containers():
    backend, run = compose.parse_inspect(INSPECT_V2)
    assert (backend.name, backend.service, backend.health) == (
        "app-backend-1",
        "backend",
        "starting",
    )
    assert backend.ports == ("5432/tcp", "0.0.0.0:18080->80/tcp", "[::]:18080->80/tcp")
    assert not backend.one_off
    assert (run.service, run.one_off) == ("backend", True)


def test_inspect_of_nothing_is_no_containers():
    assert compose.parse_inspect("") == []
    assert compose.parse_inspect("[]") == []


def test_project_states_is_one_command_with_the_filters_as_arguments():
    argv = compose.project_states("shop; rm -rf /")
    assert argv[:2] == ["sh", "-c"]
    assert argv[3:] == ["sh", "label=com.docker.compose.project=shop; rm -rf /",
                        "label=com.docker.compose.oneoff=False"]
    assert "shop" not in argv[2]  # the script is a constant


def test_a_container_healthcheck_is_run_as_docker_runs_it():
    from deploy.commands import docker

    assert docker.healthcheck("abc", ("CMD", "bash", "/app/check.sh")) == [
        "docker", "exec", "abc", "bash", "/app/check.sh"]
    assert docker.healthcheck("abc", ("CMD-SHELL", "pg_isready -q -U \"$U\"")) == [
        "docker", "exec", "abc", "/bin/sh", "-c", "pg_isready -q -U \"$U\""]
    assert docker.healthcheck("abc", ("NONE",)) is None
    assert docker.healthcheck("abc", ()) is None
    with pytest.raises(ValueError, match="container or image ids expected"):
        docker.healthcheck("-x", ("CMD", "true"))


def test_the_exit_codes_of_a_restarted_container_come_from_its_die_events():
    from deploy.commands import docker

    # Until the container's latest start, to the nanosecond: `--until 0s` is cut to whole
    # seconds by the docker CLI, and missed a die event of the same second.
    started = "2026-11-29T03:50:16.808939494Z"
    assert docker.exit_codes("abc", started) == [
        "docker", "events", "--since", "1h", "--until", started, "--filter", "container=abc",
        "--filter", "event=die", "--format", "{{.Actor.Attributes.exitCode}}"]
