"""Every kept fuzz input, and every harness seed, replayed through its harness's checks.

The corpus under ``tests/fuzz/corpus/<target>/`` is what the atheris runs kept
(minimised: inputs that add coverage), plus ``regression-*`` inputs, the
crashes found, kept after their fix.  Replaying needs no atheris.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from types import ModuleType

import pytest

from fuzz import TARGETS
from fuzz._common import CORPUS_ROOT

SECONDS_PER_INPUT = 5.0  # the harness' hang limit is 10 s; a kept input takes milliseconds


def _harness(target: str) -> ModuleType:
    return importlib.import_module(f"fuzz.{target}")


def _replay(module: ModuleType, name: str, data: bytes) -> None:
    started = time.perf_counter()
    try:
        module.one_input(data)
    except Exception as exc:
        raise AssertionError(f"{module.TARGET} input {name} broke the contract: "
                             f"{type(exc).__name__}: {exc}") from exc
    elapsed = time.perf_counter() - started
    assert elapsed < SECONDS_PER_INPUT, f"{module.TARGET} input {name} took {elapsed:.1f}s"


def test_every_target_has_a_harness_and_a_kept_corpus() -> None:
    for target in TARGETS:
        assert target == _harness(target).TARGET
        files = list((CORPUS_ROOT / target).glob("*"))
        assert files, f"no kept corpus for {target}"
    assert sorted(p.name for p in CORPUS_ROOT.iterdir() if p.is_dir()) == sorted(TARGETS)


@pytest.mark.parametrize("target", TARGETS)
def test_every_kept_input_of_the_target_keeps_its_contract(target: str) -> None:
    module = _harness(target)
    paths: list[Path] = sorted(p for p in (CORPUS_ROOT / target).iterdir() if p.is_file())
    for path in paths:
        _replay(module, path.name, path.read_bytes())


@pytest.mark.parametrize("target", TARGETS)
def test_every_seed_of_the_target_keeps_its_contract(target: str) -> None:
    module = _harness(target)
    for index, seed in enumerate(module.seeds()):
        _replay(module, f"seed {index}", seed)


def test_a_contract_break_is_reported_with_the_input_name() -> None:
    class Broken(ModuleType):
        TARGET = "broken"

        @staticmethod
        def one_input(data: bytes) -> None:
            raise IndexError(data)

    with pytest.raises(AssertionError, match="broken input x broke the contract: IndexError"):
        _replay(Broken("broken"), "x", b"\0")
