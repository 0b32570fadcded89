"""Settings as the server shows them: the arbiter logs the prediction log's URL without importing SQLAlchemy."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from service.settings import Settings


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://clf:s3cr%40t@db.example:5432/log",
        "postgresql+psycopg://clf@db.example/log",
        "postgresql://:only-a-password@db/log?sslmode=require",
        "postgresql://clf:pa:ss@db/log",
        "sqlite:////var/lib/clf/predictions.db",
    ],
)
def test_the_shown_url_hides_the_password_as_sqlalchemy_does(url: str) -> None:
    shown = Settings(database_url=url).shown_log_database_url
    assert shown == sa.make_url(url).render_as_string(hide_password=True)
    password = sa.make_url(url).password
    assert password is None or str(password) not in shown
