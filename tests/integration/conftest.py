"""Fixtures for the integration suite: a real vLLM (CPU build) on 127.0.0.1.

The first run builds the cached vLLM venv (several minutes, about 3.5 GB under
``${LLM_SERVING_CACHE:-~/.cache/llm-serving}``); later runs reuse it.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tools.localvllm import ensure_vllm_venv, write_tiny_llama

_HERE = Path(__file__).resolve().parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "integration: starts a real vLLM server (CPU build) on 127.0.0.1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Everything under this directory is an integration test, marked or not.
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def vllm_python() -> Path:
    started = time.monotonic()
    python = ensure_vllm_venv()
    print(f"\n[integration] vLLM venv ready in {time.monotonic() - started:.1f} s: {python}")
    return python


@pytest.fixture(scope="session")
def tiny_model(vllm_python: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    started = time.monotonic()
    model = write_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama", python=vllm_python)
    print(f"[integration] tiny model written in {time.monotonic() - started:.1f} s: {model}")
    return model
