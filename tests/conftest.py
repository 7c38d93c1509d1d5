"""Makes `tests.helpers` importable (configs name its classes by class_path) however pytest is started, and holds
the fixture files several test modules read (built once per session, never written to by the tests)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = str(Path(__file__).resolve().parents[1])
if REPO not in sys.path:
    sys.path.insert(0, REPO)


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The WordPiece tokenizer over the task fixtures' texts (`schema_fixtures.build_tokenizer`), as a directory."""
    from tests.schema_fixtures import build_tokenizer

    return build_tokenizer(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="session")
def bible_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture Bible (`bible_fixture.write_bible_db`); readers cache under their own `cache_dir`."""
    from tests.bible_fixture import write_bible_db

    return write_bible_db(tmp_path_factory.mktemp("bible") / "bible.db")


@pytest.fixture(scope="session")
def bible_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture Bible's word-level tokenizer (`bible_fixture.write_tokenizer`), as a directory."""
    from tests.bible_fixture import write_tokenizer

    return write_tokenizer(tmp_path_factory.mktemp("bible_tokenizer"))
