"""Shared fixtures. Tests run offline; the engine tests use the real Fashion-MNIST from
Debian's dataset-fashion-mnist (installed by the bootstrap), on small subsets."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_CACHE = Path.home() / ".cache/kdrepro/fashion_mnist"


@pytest.fixture(autouse=True)
def in_repo(monkeypatch):
    """kdrepro reads config/ and workflow/schemas/ relative to the working directory."""
    monkeypatch.chdir(REPO)


def fashion_mnist_available() -> bool:
    return FASHION_MNIST.is_dir() or FASHION_CACHE.is_dir()


needs_fashion_mnist = pytest.mark.skipif(
    not fashion_mnist_available(), reason="Fashion-MNIST not on disk (run `make setup`, which installs it)"
)
