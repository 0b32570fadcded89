"""Test set-up: a private BentoML home and Prometheus multiprocess dir, set before bentoml is imported."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_ROOT = Path(tempfile.mkdtemp(prefix="clf-tests-"))
os.environ["BENTOML_HOME"] = str(_ROOT / "bentoml")
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_ROOT / "prometheus")
os.environ["BENTOML_DO_NOT_TRACK"] = "True"
os.environ["CLF_DATA_DIR"] = str(_ROOT / "data")  # the in-process service's SQLite prediction log
os.environ["CLF_LOG_FLUSH_SECONDS"] = "0.1"  # feedback right after a prediction waits for this flush
(_ROOT / "prometheus").mkdir(parents=True)

from collections.abc import Callable, Iterator  # noqa: E402
from typing import TYPE_CHECKING, Any  # noqa: E402

import pytest  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

if TYPE_CHECKING:
    import sqlalchemy as sa

    from service.feedback.stores import LogStores


@pytest.fixture(scope="session")
def catalog() -> dict[str, str]:
    """The default catalog, trained and registered into the test store by its own recipes: name -> tag."""
    from models.catalog import CATALOG

    return {name: recipe() for name, recipe in CATALOG.items()}


@pytest.fixture(scope="session")
def api(catalog: dict[str, str]) -> Iterator[TestClient]:
    """The service in-process, serving the catalog, called from this machine (a loopback address, as the admin routes
    without keys require). One per session: BentoML registers its metrics once."""
    from service.app import ClassifierService

    with TestClient(ClassifierService.to_asgi(), client=("127.0.0.1", 50000)) as client:
        yield client


@pytest.fixture
def reconfigure(api: TestClient) -> Iterator[Callable[..., None]]:
    """Swap the running service's settings (and the models they load); restored after the test."""
    import bentoml

    from service.auth.guard import Guard
    from service.serving import ModelRegistry
    from service.settings import Settings

    service = bentoml.get_current_service()
    saved = service.settings, service.registry, service.guard

    def apply(**overrides: Any) -> None:
        service.settings = Settings(**overrides)
        service.registry = ModelRegistry.load(service.settings, service.metrics, service.log)
        service.guard = Guard.configured(service.settings)

    yield apply
    service.settings, service.registry, service.guard = saved


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL cluster for the session (bench/postgres.py); yields its SQLAlchemy URL."""
    from bench.postgres import throwaway_cluster

    with throwaway_cluster(fsync=False) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each kind the prediction log runs on: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'predictions.db'}"
        return
    from bench.postgres import fresh_database

    with fresh_database(request.getfixturevalue("postgres_server")) as url:
        yield url


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    """An engine of each database `database_url` gives, its schema not migrated yet."""
    from service.database.engine import create_database_engine

    engine = create_database_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def stores(engine: sa.Engine) -> LogStores:
    """The log's stores over a migrated database of each kind: the store tests run on SQLite and on PostgreSQL."""
    from service.database.engine import migrate
    from service.feedback.stores import LogStores

    migrate(engine)
    return LogStores.over(engine)
