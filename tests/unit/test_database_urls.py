"""Database URLs: passwords are masked wherever a URL is shown, and the migration command
takes its URL from the environment when none is given."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from celery_workflows.errors import StoreUnavailableError
from celery_workflows.store.sql import SqlRunStore, current
from celery_workflows.store.sql._db import masked_url
from celery_workflows.store.sql.migrate import DATABASE_URL_ENV, main

HEAD = "cw0004"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+psycopg://cw:s3cret@db/runs", "postgresql+psycopg://cw:***@db/runs"),
        (
            "postgresql+psycopg://cw@db/runs?password=s3cret&sslmode=require",
            "postgresql+psycopg://cw@db/runs?password=***&sslmode=require",
        ),
        (
            "postgresql://db/runs?sslpassword=s3cret&PASSWORD=s3cret",
            "postgresql://db/runs?PASSWORD=***&sslpassword=***",
        ),
        ("not a url ?password=s3cret&x=1", "not a url ?password=***&x=1"),
        ("mysql://cw:s3cret@db/runs", "mysql://cw:***@db/runs"),
    ],
)
def test_masked_url_hides_passwords_in_the_user_part_and_the_query(url: str, shown: str) -> None:
    assert masked_url(url) == shown
    assert "s3cret" not in masked_url(url)


def test_masked_url_of_a_parsed_url_hides_a_password_in_the_query() -> None:
    url = make_url("postgresql+psycopg://cw@db/runs?password=s3cret")
    assert masked_url(url) == "postgresql+psycopg://cw@db/runs?password=***"


async def test_the_store_masks_a_password_given_as_a_query_parameter() -> None:
    store = SqlRunStore("postgresql+psycopg://cw@127.0.0.1:1/runs?password=s3cret")
    try:
        assert "s3cret" not in store.url
        with pytest.raises(StoreUnavailableError) as raised:
            await store.get_run("run-1")
        assert "password=***" in str(raised.value) and "s3cret" not in str(raised.value)
    finally:
        await store.close()


def test_the_migration_command_masks_a_password_given_as_a_query_parameter(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["upgrade", "postgresql+psycopg://cw@127.0.0.1:1/runs?password=s3cret"]) == 1
    err = capsys.readouterr().err
    assert "password=***" in err and "s3cret" not in err


def test_the_migration_command_reads_the_url_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    monkeypatch.setenv(DATABASE_URL_ENV, url)
    assert DATABASE_URL_ENV == "CELERY_WORKFLOWS_DATABASE_URL"
    assert main(["upgrade", "cw0001"]) == 0
    assert current(url) == "cw0001"
    assert main(["upgrade"]) == 0
    assert main(["current"]) == 0
    assert capsys.readouterr().out.strip() == HEAD
    assert main(["downgrade", "base"]) == 0
    assert current(url) is None


def test_the_migration_command_without_a_url_says_where_to_give_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    assert main(["upgrade"]) == 2
    err = capsys.readouterr().err
    assert DATABASE_URL_ENV in err and "upgrade" in err
