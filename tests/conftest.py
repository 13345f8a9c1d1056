"""Shared helpers for the pytest suite."""
import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / 'shared'


def console_script(name: str) -> str:
    "Path of an installed console script, next to the running interpreter when possible."
    cand = Path(sys.executable).parent / name
    return str(cand) if cand.exists() else (shutil.which(name) or name)


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f'{SHARED} (the offline data cache) is absent')
    return SHARED


@pytest.fixture(autouse=True)
def _headless_matplotlib(monkeypatch):
    monkeypatch.setenv('MPLBACKEND', 'Agg')
    yield
