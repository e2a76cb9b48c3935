"""deploy/commands/haproxy.py: runtime-API commands, parsers of real HAProxy 2.6 output, the switch
plan and the drain policy as data.

The captures of tests/support/haproxy.py (HAProxy 2.6.12, one backend named `app` with the
eight slots the rendered config gives each app service, plus a non-slot server): fresh;
slot1 just prepared (no check yet); slot1 serving with slot2 prepared and checked; after the
flip (slot2 ready, slot1 drain); `show stat` after the flip; the answers to a prepare, a
flip and a command naming a server that does not exist.
"""

from __future__ import annotations

import socket
import subprocess
import threading
from contextlib import contextmanager

import pytest

from deploy.commands import haproxy as proxy
from deploy.errors import DeployError
from tests.support.haproxy import captured


def by_name(servers):
    return {s.name: s for s in servers}


# --- commands -------------------------------------------------------------------------


def test_every_api_command_is_a_docker_exec_of_one_constant_script():
    argv = proxy.api("abc123", "show servers state app")

    assert argv == ["docker", "exec", "abc123", "bash", "-c", proxy.API_SCRIPT, "bash",
                    "show servers state app"]
    assert "/dev/tcp/127.0.0.1/9999" in proxy.API_SCRIPT


@contextmanager
def stats_socket(*answers: bytes):
    """A TCP server standing in for HAProxy's stats socket: one connection per answer, in
    turn; yields (its port, what each connection received)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(len(answers))
        got: list[bytes] = []

        def serve():
            for answer in answers:
                conn, _ = server.accept()
                with conn:
                    got.append(conn.recv(1000))
                    conn.sendall(answer)

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            yield server.getsockname()[1], got
        finally:
            thread.join(timeout=10)


def test_the_api_script_sends_its_argument_as_data_and_prints_the_answer(tmp_path):
    # The script itself, against a one-shot TCP server standing in for the stats socket.
    with stats_socket(b"answer\n") as (port, got):
        script = proxy.API_SCRIPT.replace(str(proxy.API_PORT), str(port))
        hostile = "show info; $(touch x) `touch y`"
        out = subprocess.run(["bash", "-c", script, "bash", hostile], capture_output=True,
                             text=True, cwd=tmp_path, timeout=10)
    assert out.stdout == "answer\n"
    assert got == [hostile.encode() + b"\n"]
    assert list(tmp_path.iterdir()) == []


def test_a_change_and_its_save_run_in_one_exec_the_answer_printed_the_state_written(
        tmp_path):
    # Against a TCP server standing in for the stats socket: the command on the first
    # connection (its answer printed), `show servers state` on the second (saved).
    argv = proxy.api("abc123", "set server app/slot2 state ready", save=True)
    assert argv == ["docker", "exec", "abc123", "bash", "-c", proxy.API_SCRIPT, "bash",
                    "set server app/slot2 state ready", proxy.STATE_FILE]
    with stats_socket(b"\n", b"1\n# be_id be_name\n3 app\n") as (port, got):
        script = argv[5].replace(str(proxy.API_PORT), str(port))
        state = tmp_path / "server-state"
        out = subprocess.run(["bash", "-c", script, "bash", argv[7], str(state)],
                             capture_output=True, text=True, timeout=10)
    assert (out.returncode, out.stdout, out.stderr) == (0, "\n", "")
    assert got == [b"set server app/slot2 state ready\n", b"show servers state\n"]
    assert state.read_text() == "1\n# be_id be_name\n3 app\n"
    assert [p.name for p in tmp_path.iterdir()] == ["server-state"]  # no .tmp left


def test_saving_the_state_writes_it_to_the_file_haproxy_loads():
    argv = proxy.api("abc123", "show servers state", save=True)

    assert argv[-2:] == ["show servers state", proxy.STATE_FILE]
    assert proxy.STATE_FILE == "/var/lib/haproxy/server-state"


def test_prepare_points_a_slot_of_the_service_backend_at_a_container_with_no_traffic_yet():
    assert proxy.prepare("web", "slot3", "172.22.0.5", 8000) == (
        "set server web/slot3 addr 172.22.0.5 port 8000; set server web/slot3 state drain; "
        "set server web/slot3 health down")


def test_a_switch_is_prepared_in_one_api_call_stale_slots_cleared_first():
    web = proxy.SwitchPlan("web", 8000, new={"slot3": "172.22.0.5", "slot4": "172.22.0.6"},
                           stale=["slot1"])
    admin = proxy.SwitchPlan("admin", 9000, new={"slot1": "172.22.0.7"}, stale=["slot2"])
    assert proxy.assign([web, admin]) == (
        "set server web/slot1 state maint; set server admin/slot2 state maint; "
        "set server web/slot3 addr 172.22.0.5 port 8000; set server web/slot3 state drain; "
        "set server web/slot3 health down; "
        "set server web/slot4 addr 172.22.0.6 port 8000; set server web/slot4 state drain; "
        "set server web/slot4 health down; "
        "set server admin/slot1 addr 172.22.0.7 port 9000; set server admin/slot1 state drain; "
        "set server admin/slot1 health down")
    assert proxy.assign([proxy.SwitchPlan("app", 8080, new={"slot2": "10.0.0.9"})]) == (
        proxy.prepare("app", "slot2", "10.0.0.9", 8080))


def test_the_flip_is_one_api_call_for_every_service_new_slots_ready_then_old_ones_drain():
    web = proxy.SwitchPlan("web", 8000, new={"slot2": "10.0.0.2"}, old=["slot1"])
    admin = proxy.SwitchPlan("admin", 9000, new={"slot4": "10.0.0.4"}, old=["slot3"])
    assert proxy.flip([web, admin]) == (
        "set server web/slot2 state ready; set server admin/slot4 state ready; "
        "set server web/slot1 state drain; set server admin/slot3 state drain")
    first = proxy.SwitchPlan("web", 8000, new={"slot2": "10.0.0.2", "slot3": "10.0.0.3"})
    assert proxy.flip([first]) == (
        "set server web/slot2 state ready; set server web/slot3 state ready")


def test_the_host_state_is_one_server_in_maintenance_while_the_host_drains():
    assert proxy.host_state(False) == "set server deploy_state/serving state maint"
    assert proxy.host_state(True) == "set server deploy_state/serving state ready"


@pytest.mark.parametrize("bad", ["slot0", "backend", "slot1; shutdown sessions", "slot", ""])
def test_commands_refuse_anything_but_a_slot_name(bad):
    with pytest.raises(ValueError, match="not a slot name"):
        proxy.set_state("web", [bad], "maint")


@pytest.mark.parametrize("bad", ["web/x", "web; shutdown sessions", "", "-web", "we b"])
def test_commands_refuse_anything_but_a_service_name_as_backend(bad):
    with pytest.raises(ValueError, match="not a backend name"):
        proxy.set_state(bad, ["slot1"], "maint")


@pytest.mark.parametrize("bad", ["172.22.0.5; set server", "backend", "", "300.1.1.1"])
def test_prepare_refuses_anything_but_an_ip_address(bad):
    with pytest.raises(ValueError):
        proxy.prepare("web", "slot1", bad, 8000)


def test_an_unknown_server_state_is_refused():
    with pytest.raises(ValueError, match="not a server state: 'up'"):
        proxy.set_state("web", ["slot1"], "up")


# --- parsers of real output -------------------------------------------------------------


def test_a_fresh_proxy_has_eight_empty_slots_in_maintenance_and_other_servers_are_no_slots():
    servers = proxy.parse_servers_state(captured("state-fresh.txt"))

    slots = [s for s in servers if s.is_slot]
    assert [s.name for s in slots] == proxy.slot_names()
    assert all(s.backend == "app" for s in servers)
    assert all(s.maint and not s.assigned and not s.routed for s in slots)
    other = by_name(servers)["backend"]  # up, with an address: still not a slot
    assert (other.is_slot, other.up, other.addr) == (False, True, "172.22.0.2")
    assert proxy.routed(servers, "app") == {}


def _two_backends(text: str) -> str:
    """A capture's rows, then the same rows again as the backend `admin` (be_id 4)."""
    rows = [line for line in text.splitlines() if line[:1].isdigit() and " " in line]
    admin = [" ".join(["4", "admin", *line.split(" ")[2:]]) for line in rows]
    return text + "\n".join(admin) + "\n"


def test_every_backend_is_read_and_one_can_be_picked_by_name():
    text = _two_backends(captured("state-flipped.txt"))

    servers = proxy.parse_servers_state(text)
    assert [s.backend for s in servers] == ["app"] * 9 + ["admin"] * 9
    assert [s.name for s in proxy.parse_servers_state(text, "admin")] == [
        *proxy.slot_names(), "backend"]
    assert proxy.parse_servers_state(text, "web") == []
    assert list(proxy.routed(servers, "admin")) == ["172.22.0.3"]
    assert proxy.routed(servers, "web") == {}


def test_a_slot_with_any_real_port_is_assigned_and_the_placeholder_is_not():
    def slot(addr, port):
        return proxy.Server("slot1", addr, port, proxy.OP_RUNNING, 0, proxy.CHECK_PASSED,
                            backend="web")

    assert slot("172.22.0.5", 8000).assigned and slot("172.22.0.5", 8000).routed
    assert slot("172.22.0.5", 8080).assigned
    assert not slot("172.22.0.5", 1).assigned  # the config's placeholder port
    assert not slot(proxy.PLACEHOLDER_ADDR, 8000).assigned


def test_a_prepared_slot_is_up_draining_but_not_yet_checked_at_its_new_address():
    slot1 = by_name(proxy.parse_servers_state(captured("state-prepared-unchecked.txt")))["slot1"]

    assert (slot1.addr, slot1.port, slot1.state) == ("172.22.0.2", 8080, "drain UP")
    assert slot1.check_result != proxy.CHECK_PASSED
    assert not slot1.routed


def test_after_the_flip_the_new_slot_is_routed_and_the_old_one_drains():
    servers = by_name(proxy.parse_servers_state(captured("state-flipped.txt")))

    assert servers["slot2"].state == "ready UP" and servers["slot2"].routed
    assert servers["slot1"].state == "drain UP" and not servers["slot1"].routed
    assert list(proxy.routed(servers.values(), "app")) == ["172.22.0.3"]


def test_show_stat_gives_the_current_sessions_of_each_server_by_backend():
    sessions = proxy.parse_stat(captured("stat-flipped.txt"))

    assert sessions == {**{("app", s): 0 for s in proxy.slot_names()}, ("app", "backend"): 0}
    busy = captured("stat-flipped.txt").replace("app,slot1,0,0,0,0,", "app,slot1,0,0,3,5,")
    assert proxy.parse_stat(busy)[("app", "slot1")] == 3
    lines = captured("stat-flipped.txt").splitlines()
    both = "\n".join([*lines, *(line.replace("app,", "admin,", 1) for line in lines[1:])])
    both = both.replace("admin,slot2,0,0,0,0,", "admin,slot2,0,0,7,7,")
    assert proxy.parse_stat(both)[("admin", "slot2")] == 7
    assert proxy.parse_stat(both)[("app", "slot2")] == 0
    assert len(proxy.parse_stat(both)) == 18


def test_the_state_and_stat_commands_ask_for_every_backend():
    assert proxy.show_servers_state() == "show servers state"
    assert proxy.show_stat() == "show stat -1 4 -1"


def test_answers_to_prepare_and_flip_are_success_and_an_unknown_server_is_an_error():
    proxy.check_answer(captured("answer-prepare.txt"), "prepare slot1")
    proxy.check_answer(captured("answer-flip.txt"), "switch")
    with pytest.raises(DeployError,
                       match=r"^proxy: switch: HAProxy answered: No such server\.$"):
        proxy.check_answer(captured("answer-no-such-server.txt"), "switch")


def test_an_answer_that_is_not_a_state_table_is_an_error_quoting_it():
    with pytest.raises(DeployError,
                       match="unexpected answer to show servers state: \"Unknown command"):
        proxy.parse_servers_state("Unknown command: 'show servers stat'\n")


# --- the switch plan --------------------------------------------------------------------


def test_the_first_switch_takes_a_free_slot_and_drains_nothing():
    plan = proxy.plan_switch(proxy.parse_servers_state(captured("state-fresh.txt")),
                             ["172.22.0.3"], "app", 8000)

    assert plan == proxy.SwitchPlan("app", 8000, new={"slot1": "172.22.0.3"}, old=[],
                                    stale=[])


def test_a_switch_drains_the_serving_slot_and_uses_another_one():
    servers = proxy.parse_servers_state(captured("state-flipped.txt"))

    plan = proxy.plan_switch(servers, ["172.22.0.9"], "app", 8080)

    assert plan.old == ["slot2"]  # serving now
    assert plan.stale == ["slot1"]  # still draining from the last switch: cleared first
    assert plan.new == {"slot3": "172.22.0.9"}


def test_a_plan_looks_at_its_own_backend_only():
    servers = proxy.parse_servers_state(_two_backends(captured("state-flipped.txt")))
    fresh = proxy.parse_servers_state(captured("state-fresh.txt"))

    admin = proxy.plan_switch(servers, ["172.22.0.9"], "admin", 9000)
    assert (admin.backend, admin.port, admin.old, admin.stale, admin.new) == (
        "admin", 9000, ["slot2"], ["slot1"], {"slot3": "172.22.0.9"})
    # A backend with no rows has no slots: nothing is free.
    with pytest.raises(DeployError, match=r"^proxy: web: 1 new container\(s\) need free "
                                          r"slots, but only 0 of 0 are free \(old: \)$"):
        proxy.plan_switch(fresh, ["172.22.0.9"], "web", 8000)


def test_a_prepared_slot_is_checked_only_once_it_passed_a_check_at_its_new_address():
    plan = proxy.SwitchPlan("app", 8080, new={"slot1": "172.22.0.2"})
    unchecked = proxy.parse_servers_state(captured("state-prepared-unchecked.txt"))
    checked = proxy.parse_servers_state(captured("state-old-ready-new-prepared.txt"))

    ok, missing = proxy.new_slots_up(unchecked, plan)
    assert not ok and missing == ["app/slot1 (172.22.0.2): drain UP, check result 0"]
    assert proxy.new_slots_up(checked, proxy.SwitchPlan(
        "app", 8080, new={"slot2": "172.22.0.3"})) == (True, [])
    # The right slot at the wrong address is not up for this plan.
    assert not proxy.new_slots_up(checked, proxy.SwitchPlan(
        "app", 8080, new={"slot2": "172.22.0.4"}))[0]
    # Nor is the same slot of another backend.
    assert proxy.new_slots_up(checked, proxy.SwitchPlan(
        "web", 8080, new={"slot2": "172.22.0.3"})) == (
        False, ["web/slot2 (172.22.0.3): not found"])


def test_more_new_containers_than_free_slots_is_an_error_naming_the_old_ones():
    servers = [proxy.Server(f"slot{i}", f"10.0.0.{i}", 8000, proxy.OP_RUNNING, 4, 3,
                            backend="web") for i in range(1, 8)]
    servers.append(proxy.Server("slot8", "127.0.0.1", 1, 0, 5, 0, backend="web"))

    with pytest.raises(DeployError, match=r"^proxy: web: 2 new container\(s\) need free "
                                          r"slots, but only 1 of 8 are free \(old: slot1, slot2"):
        proxy.plan_switch(servers, ["10.0.1.1", "10.0.1.2"], "web", 8000)


# --- the drain policy, as data ------------------------------------------------------------


def test_the_drain_policy_defaults_and_budget():
    policy = proxy.DrainPolicy()

    assert policy.drain_timeout == 30.0  # DRAIN_TIMEOUT's default
    assert policy.stop_seconds == 35  # docker stop -t covers the backend's own drain
    assert policy.longest_wait == 35
    assert policy.total_budget == 15 + 30 + 35
    assert policy.poll <= 0.1  # a drained slot is noticed within 0.1 s


def test_the_stop_timeout_follows_drain_timeout_rounded_up():
    assert proxy.DrainPolicy(drain_timeout=2.5).stop_seconds == 8
    assert proxy.DrainPolicy(drain_timeout=120).total_budget == 15 + 120 + 125


# --- the rendered config's answers: two app services and the host's state ----------------
# two-*.txt (tests/support/capture_haproxy.py): web on 8000 and admin on 9000; the stub
# apps answer on 8000 only, so the admin slots fail their check as a container that does
# not listen on APP_PORT does.


def test_a_fresh_rendered_proxy_has_each_service_s_slots_free_and_the_host_serving():
    servers = proxy.parse_servers_state(captured("two-state-fresh.txt"))

    assert [(s.backend, s.name) for s in servers if not s.is_slot] == [
        (proxy.STATE_BACKEND, proxy.STATE_SERVER)]
    for backend in ("web", "admin"):
        slots = proxy.parse_servers_state(captured("two-state-fresh.txt"), backend)
        assert [s.name for s in slots] == proxy.slot_names()
        assert all(s.maint and not s.assigned for s in slots)
    serving = servers[0]
    assert (serving.up, serving.maint, serving.assigned) == (True, False, False)
    plan = proxy.plan_switch(servers, ["172.22.0.2"], "admin", 9000)
    assert plan == proxy.SwitchPlan("admin", 9000, new={"slot1": "172.22.0.2"})


def test_a_second_release_prepared_beside_the_first_in_each_backend():
    servers = proxy.parse_servers_state(captured("two-state-prepared.txt"))
    web = by_name(proxy.parse_servers_state(captured("two-state-prepared.txt"), "web"))

    assert (web["slot1"].state, web["slot1"].port, web["slot1"].routed) == (
        "ready UP", 8000, True)
    assert (web["slot2"].state, web["slot2"].routed) == ("drain UP", False)
    assert proxy.new_slots_up(servers, proxy.SwitchPlan(
        "web", 8000, new={"slot2": "172.22.0.3"})) == (True, [])
    # Nothing listens on admin's port: its slots are down, the check failed (2).
    assert proxy.new_slots_up(servers, proxy.SwitchPlan(
        "admin", 9000, new={"slot2": "172.22.0.3"})) == (
        False, ["admin/slot2 (172.22.0.3): drain DOWN, check result 2"])
    assert proxy.routed(servers, "web") == {"172.22.0.2": web["slot1"]}
    assert proxy.routed(servers, "admin") == {}
    plan = proxy.plan_switch(servers, ["172.22.0.4"], "web", 8000)
    assert (plan.old, plan.stale, plan.new) == (["slot1"], ["slot2"], {"slot3": "172.22.0.4"})


def test_after_the_flip_while_the_host_drains_the_state_server_is_in_maintenance():
    servers = proxy.parse_servers_state(captured("two-state-flipped-draining.txt"))

    serving = next(s for s in servers if s.backend == proxy.STATE_BACKEND)
    assert serving.name == proxy.STATE_SERVER and serving.maint and not serving.up
    assert list(proxy.routed(servers, "web")) == ["172.22.0.3"]
    web = by_name(s for s in servers if s.backend == "web")
    assert web["slot1"].state == "drain UP"


def test_the_sessions_of_every_backend_and_the_state_server():
    sessions = proxy.parse_stat(captured("two-stat-flipped.txt"))

    assert set(sessions) == {(proxy.STATE_BACKEND, proxy.STATE_SERVER),
                             *((b, s) for b in ("web", "admin") for s in proxy.slot_names())}
    assert set(sessions.values()) == {0}


def test_answers_of_the_rendered_proxy_and_a_backend_it_does_not_have():
    proxy.check_answer(captured("two-answer-prepare.txt"), "prepare")
    proxy.check_answer(captured("two-answer-flip.txt"), "switch")
    proxy.check_answer(captured("two-answer-draining.txt"), "host draining")
    with pytest.raises(DeployError,
                       match=r"^proxy: switch: HAProxy answered: No such backend\.$"):
        proxy.check_answer(captured("two-answer-no-such-backend.txt"), "switch")


def test_a_last_look_before_the_switch_accepts_a_check_running_but_not_a_failed_one():
    plan = proxy.SwitchPlan("web", 8000, new={"slot2": "172.22.0.9"})

    def server(result: int) -> proxy.Server:
        return proxy.Server("slot2", "172.22.0.9", 8000, proxy.OP_RUNNING, proxy.ADMF_FDRAIN,
                            result, backend="web")

    running = [server(0)]  # CHK_RES_UNKNOWN: a check is running right now
    assert proxy.new_slots_up(running, plan)[0] is False  # the first wait needs a pass
    assert proxy.new_slots_up(running, plan, passed=False) == (True, [])
    failed = [server(proxy.CHECK_FAILED)]
    assert proxy.new_slots_up(failed, plan, passed=False) == (
        False, ["web/slot2 (172.22.0.9): drain UP, check result 2"])
    assert proxy.new_slots_up([], plan, passed=False) == (
        False, ["web/slot2 (172.22.0.9): not found"])
