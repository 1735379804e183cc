"""Test set-up: JAX's persistent compilation cache, shared across test runs."""

import os
import pathlib

import pytest

from mtrlrec import config

config.enable_compilation_cache(
    os.environ.get("MTRLREC_TEST_JAX_CACHE", pathlib.Path.home() / ".cache" / "mtrlrec" / "jax-tests")
)

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _clear_gin():
    import gin

    yield
    gin.clear_config()
