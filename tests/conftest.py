"""Fixtures shared by every test folder."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ETH_UCY = REPO.parent / "shared" / "data" / "eth_ucy"


@pytest.fixture(scope="session")
def eth_ucy_dir() -> Path:
    """The ETH/UCY benchmark copy beside the repo (../shared/data/eth_ucy)."""
    if not (ETH_UCY / "README.md").is_file():
        pytest.skip(f"ETH/UCY benchmark copy not found at {ETH_UCY}")
    return ETH_UCY
