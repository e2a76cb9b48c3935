"""pg_dump / pg_restore as argv: no password on any command line, the restore in one
transaction, and their errors read into one line."""

from __future__ import annotations

from deploy.commands import pgdump
from deploy.commands.compose import Compose

V2 = Compose(("docker", "compose"), "v2", "/srv/app/docker-compose.yml", "app")
PREFIX = ["docker", "compose", "-f", "/srv/app/docker-compose.yml", "-p", "app"]


def test_the_url_loses_its_password_which_comes_back_decoded():
    assert pgdump.split_password("postgresql://app:p%40ss%3Aw@db:5433/shop?sslmode=require") \
        == ("postgresql://app@db:5433/shop?sslmode=require", "p@ss:w")
    assert pgdump.split_password("postgresql://app@db/shop") == ("postgresql://app@db/shop", "")


def test_the_database_is_the_urls_path_else_its_dbname_else_its_user():
    assert pgdump.database_of("postgresql://app:pw@db/shop%20one") == "shop one"
    assert pgdump.database_of("postgresql://app@/?host=/run/pg&dbname=x") == "x"
    assert pgdump.database_of("postgresql://app@db") == "app"


def test_a_backup_is_named_by_project_database_and_time_with_safe_characters():
    assert pgdump.file_name("shop", "app", "20261207T015500Z") == \
        "shop-app-20261207T015500Z.dump"
    assert pgdump.file_name("shop", "a/b c", "T") == "shop-a_b_c-T.dump"


def test_in_a_service_the_script_is_constant_and_the_values_are_its_parameters():
    argv = pgdump.dump_in_service(V2, "db", "sh op", "/tmp/x.dump")
    assert argv[:len(PREFIX)] == PREFIX
    assert argv[len(PREFIX):] == [
        "exec", "-T", "db", "sh", "-c",
        'umask 077 && exec pg_dump --format=custom -U "${POSTGRES_USER:-postgres}" -d "$1" '
        '-f "$0"', "/tmp/x.dump", "sh op"]
    restore = pgdump.restore_in_service(V2, "db", "app", "/tmp/x.dump", "deploy-restore-T")
    assert restore[len(PREFIX):] == [
        "exec", "-T", "db", "sh", "-c",
        'pg_restore -l "$0" || exit; export PGAPPNAME="$2"; exec pg_restore --clean '
        '--if-exists --single-transaction --no-owner -U "${POSTGRES_USER:-postgres}" -d "$1" '
        '"$0"', "/tmp/x.dump", "app",
        "deploy-restore-T"]


def test_an_unfinished_restore_is_ended_by_its_session_name_quoted_by_psql():
    sql = ("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE "
           "application_name = :'app' AND pid <> pg_backend_pid();")
    assert pgdump.terminate_in_service(V2, "db", "app", "deploy-restore-T")[len(PREFIX):] == [
        "exec", "-T", "db", "sh", "-c",
        f'printf "%s\\n" "{sql}" | psql -X -At -U "${{POSTGRES_USER:-postgres}}" -d "$0" '
        '-v app="$1"', "app", "deploy-restore-T"]
    external = pgdump.terminate_external("postgres:16", "postgresql://app@db/shop", "n")
    assert external[:9] == ["docker", "run", "--rm", "-i", "--network", "host", "postgres:16",
                            "sh", "-c"]
    assert external[9].startswith('IFS= read -r p; [ -z "$p" ] || export PGPASSWORD="$p"; ')
    assert external[10:] == ["postgresql://app@db/shop", "n"]


def test_an_external_database_is_reached_from_a_throwaway_container_password_on_stdin():
    dump = pgdump.dump_external("postgres:16", "postgresql://app@db/shop", "/srv/b",
                                "shop-shop-T.dump", "1000:1000")
    assert dump == [
        "docker", "run", "--rm", "-i", "--network", "host", "--user", "1000:1000",
        "-v", "/srv/b:/backup", "postgres:16", "sh", "-c",
        'IFS= read -r p; [ -z "$p" ] || export PGPASSWORD="$p"; unset p; '
        'umask 077 && exec pg_dump --format=custom -d "$0" -f "$1"',
        "postgresql://app@db/shop", "/backup/shop-shop-T.dump"]
    restore = pgdump.restore_external("postgres:16", "postgresql://app@db/shop",
                                      "/srv/b/x.dump", "0:0", "deploy-restore-T")
    assert restore[8:11] == ["-v", "/srv/b:/backup:ro", "postgres:16"]
    assert restore[-4:] == [
        'IFS= read -r p; [ -z "$p" ] || export PGPASSWORD="$p"; unset p; pg_restore -l "$1" '
        '|| exit; export PGAPPNAME="$2"; exec pg_restore --clean --if-exists '
        '--single-transaction --no-owner -d "$0" "$1"', "postgresql://app@db/shop",
        "/backup/x.dump", "deploy-restore-T"]


def test_the_file_check_reads_only_the_magic_bytes():
    assert pgdump.head("/srv/b/-x.dump") == ["head", "-c", "5", "--", "/srv/b/-x.dump"]


def test_a_tool_error_is_the_servers_own_words_and_privileges_are_a_setup_problem():
    restore = ("pg_restore: error: could not execute query: ERROR:  must be owner of table "
               "users\nCommand was: DROP TABLE IF EXISTS public.users;\n")
    assert pgdump.tool_error(restore) == ("must be owner of table users", True)
    dump = "pg_dump: error: query failed: ERROR:  permission denied for table users\n"
    assert pgdump.tool_error(dump) == ("permission denied for table users", True)
    login = ('pg_dump: error: connection to server at "db" (10.0.0.2), port 5432 failed: '
             'FATAL:  password authentication failed for user "app"')
    assert pgdump.tool_error(login) == ('password authentication failed for user "app"', True)
    broken = "pg_restore: error: could not read input file: end of file\n"
    assert pgdump.tool_error(broken) == ("could not read input file: end of file", False)
    assert pgdump.tool_error("") == ("no output", False)


def test_the_archives_tables_come_from_its_table_of_contents():
    toc = (";\n; Archive created at 2026-12-07 01:55:00 UTC\n;     dbname: app\n"
           "215; 1259 16390 TABLE public users app\n"
           "216; 1259 16391 TABLE public my table app\n"
           "3340; 0 16390 TABLE DATA public users app\n"
           "217; 1259 16400 SEQUENCE public users_id_seq app\n"
           "218; 1259 16401 TABLE audit log app\n")
    assert pgdump.archive_tables(toc) == {("public", "users"), ("public", "my table"),
                                          ("audit", "log")}
