"""`mepl db shell` on a failover cluster URL: one libpq host list and its port list."""

from __future__ import annotations

from mepl.cli.db import connection_line


def test_a_multi_host_url_gives_libpq_host_and_port_lists() -> None:
    line, password = connection_line(
        "postgresql+psycopg2://mepl:pw@/mepl?host=pg1.internal:5432&host=pg2.internal:5433"
        "&target_session_attrs=read-write")
    assert line == ("host=pg1.internal,pg2.internal port=5432,5433 dbname=mepl user=mepl "
                    "target_session_attrs=read-write")
    assert password == "pw"


def test_hosts_without_ports_keep_the_default_port_for_each() -> None:
    line, _ = connection_line("postgresql+psycopg2://mepl@/mepl?host=a&host=b:6432")
    assert line == "host=a,b port=,6432 dbname=mepl user=mepl"


def test_one_host_with_its_port_in_the_query_and_socket_directories_are_split_right() -> None:
    line, _ = connection_line("postgresql+psycopg2://mepl@/mepl?host=db.internal:6432")
    assert line == "host=db.internal port=6432 dbname=mepl user=mepl"
    line, _ = connection_line("postgresql+psycopg2://postgres@/mepl?host=/var/lib/mepl/pg")
    assert line == "host=/var/lib/mepl/pg dbname=mepl user=postgres"
