"""Which Compose services a host runs: its own roles, plus every service the shared
settings give no role; a role its overlay took away is not started there."""

from __future__ import annotations

from dataclasses import dataclass

from deploy.services import host_services

SAMPLE = ("postgres", "backend", "proxy")
PROJECT = ("db", "cache", "web", "admin", "worker", "mailer", "proxy")


@dataclass(frozen=True)
class Roles:
    app_services: tuple[str, ...] = ("backend",)
    worker_services: tuple[str, ...] = ()
    db_service: str = "postgres"


SHARED = Roles(("web", "admin"), ("worker",), "db")


def test_here_shared_is_own_so_every_service_runs():
    assert host_services(SAMPLE, Roles(), Roles(), "proxy") == SAMPLE
    assert host_services(PROJECT, SHARED, SHARED, "proxy") == PROJECT


def test_a_web_host_runs_no_database_service_when_its_overlay_empties_db_service():
    web = Roles(("web", "admin"), ("worker",), "")
    assert host_services(PROJECT, SHARED, web, "proxy") == (
        "cache", "web", "admin", "worker", "mailer", "proxy")
    assert host_services(SAMPLE, Roles(), Roles(db_service=""), "proxy") == ("backend", "proxy")


def test_a_database_host_runs_its_database_and_the_unroled_services_but_no_app_or_proxy():
    db = Roles((), (), "db")
    assert host_services(PROJECT, SHARED, db, "proxy") == ("db", "cache", "mailer")
    assert host_services(SAMPLE, Roles(), Roles((), (), "postgres"), "proxy") == ("postgres",)


def test_a_host_may_keep_part_of_the_shared_roles():
    workers_only = Roles((), ("worker",), "")
    assert host_services(PROJECT, SHARED, workers_only, "proxy") == ("cache", "worker", "mailer")
    admin_host = Roles(("admin",), (), "")
    assert host_services(PROJECT, SHARED, admin_host, "proxy") == (
        "cache", "admin", "mailer", "proxy")


def test_a_role_the_overlay_adds_is_started_and_the_compose_order_is_kept():
    # The overlay names a service the shared settings left without a role: it runs there
    # (as it would anyway), in the compose file's order.
    own = Roles(("web", "admin"), ("worker", "mailer"), "")
    assert host_services(PROJECT, SHARED, own, "proxy") == (
        "cache", "web", "admin", "worker", "mailer", "proxy")


def test_without_a_proxy_name_every_unroled_service_counts_alike():
    assert host_services(SAMPLE, Roles(), Roles((), (), "postgres")) == ("postgres", "proxy")
    assert host_services((), SHARED, SHARED, "proxy") == ()
