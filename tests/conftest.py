"""Makes `tests.helpers` importable (configs name its classes by class_path) however pytest is started, runs torch on
one intra-op thread, and holds the fixture files several test modules read (built once per session, never written
to by the tests)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = str(Path(__file__).resolve().parents[1])
if REPO not in sys.path:
    sys.path.insert(0, REPO)

# The tests' tensors are tiny, so a second intra-op thread only adds synchronisation: on 2 busy cores it made the
# probe head's small backward passes about 30x slower. Set before torch is first imported, so that train.py
# subprocesses and spawned DDP ranks inherit it; an OMP_NUM_THREADS already set is kept.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))  # also when a plugin imported torch before this file


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
