"""What every harness shares: a byte reader, the contract check, the atheris runner.

A harness module ``fuzz/<target>.py`` defines ``one_input(data: bytes)``: it
feeds ``data`` to the code that receives untrusted bytes and raises (an
AssertionError, or the unexpected exception itself) when the code breaks its
contract.  The same function serves atheris (``python fuzz/<target>.py``)
and the corpus replay in the normal test suite (``tests/fuzz``), which does
not need atheris: nothing here imports it until a harness runs as a program.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parent.parent
CORPUS_ROOT = ROOT / "tests" / "fuzz" / "corpus"
OUR_PACKAGES = ["sms_gateway", "signing", "mepl", "blobstore"]

T = TypeVar("T")


class Reader:
    """Deterministic structured reads from fuzz bytes; past the end everything reads as 0.

    A plain-Python stand-in for atheris' FuzzedDataProvider, so that the corpus
    replays without atheris and an input means the same thing in both.
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    @property
    def left(self) -> int:
        """Bytes not read yet."""
        return max(0, len(self.data) - self.pos)

    def take(self, n: int) -> bytes:
        """Up to ``n`` bytes (fewer at the end)."""
        out = self.data[self.pos : self.pos + max(0, n)]
        self.pos += len(out)
        return out

    def u8(self) -> int:
        """One octet (0 past the end)."""
        return self.take(1)[0] if self.left else 0

    def u16(self) -> int:
        """Two octets big-endian."""
        return int.from_bytes(self.take(2).ljust(2, b"\0"), "big")

    def u32(self) -> int:
        """Four octets big-endian."""
        return int.from_bytes(self.take(4).ljust(4, b"\0"), "big")

    def flag(self) -> bool:
        """One bit's worth (a whole octet, low bit)."""
        return bool(self.u8() & 1)

    def pick(self, items: Sequence[T]) -> T:
        """One of ``items``."""
        return items[self.u8() % len(items)]

    def chunk(self, limit: int = 255) -> bytes:
        """A length-prefixed slice: one length octet (mod ``limit + 1``), then the bytes."""
        return self.take(self.u8() % (limit + 1))

    def text(self, limit: int = 255) -> str:
        """A length-prefixed slice read as latin-1 (every octet a character)."""
        return self.chunk(limit).decode("latin-1")

    def utf8(self, limit: int = 255) -> str:
        """A length-prefixed slice read as UTF-8, bad sequences replaced."""
        return self.chunk(limit).decode("utf-8", "replace")

    def rest(self) -> bytes:
        """Everything left."""
        return self.take(self.left)


def expect(call: Callable[[], T], *allowed: type[BaseException]) -> T | None:
    """``call()``; None when it raised one of the documented ``allowed`` errors.

    Anything else propagates: that is the finding.
    """
    try:
        return call()
    except allowed:
        return None


@contextlib.contextmanager
def instrumented(active: bool) -> Iterator[None]:
    """Instrument our packages for coverage while they are imported (only when fuzzing)."""
    if not active:
        yield
        return
    import atheris

    with atheris.instrument_imports(include=OUR_PACKAGES):
        yield


def work_dir(target: str) -> Path:
    """A scratch corpus for ``target`` (outside the tree), seeded from the kept corpus."""
    base = Path(os.environ.get("MEPL_FUZZ_WORK", Path(tempfile.gettempdir()) / "mepl-fuzz"))
    path = base / target
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_seeds(directory: Path, seeds: Iterable[bytes]) -> int:
    """Write ``seeds`` into ``directory`` (named by content); returns how many were new."""
    import hashlib

    new = 0
    for seed in seeds:
        path = directory / f"seed-{hashlib.sha1(seed).hexdigest()[:16]}"
        if not path.exists():
            path.write_bytes(seed)
            new += 1
    return new


def run(target: str, one_input: Callable[[bytes], None], seeds: Callable[[], Iterable[bytes]],
        argv: list[str] | None = None) -> None:
    """Fuzz ``one_input`` with atheris; libFuzzer flags pass through (``-max_total_time=60``).

    Without a corpus directory on the command line, a scratch corpus under
    ``$MEPL_FUZZ_WORK`` (default ``/tmp/mepl-fuzz``) is used, seeded with the
    kept corpus (``tests/fuzz/corpus/<target>``) and the harness' own seeds;
    crash files are written there too.
    """
    import atheris

    args = list(sys.argv if argv is None else argv)
    # libFuzzer re-runs argv[0] through the shell for -merge and -fork: make it a command.
    args[0] = f"{sys.executable} {Path(args[0]).resolve()}"
    if not any(not a.startswith("-") for a in args[1:]):
        work = work_dir(target)
        kept = CORPUS_ROOT / target
        if kept.is_dir():
            for path in kept.iterdir():
                if path.is_file() and not (work / path.name).exists():
                    shutil.copyfile(path, work / path.name)
        write_seeds(work, seeds())
        args.append(str(work))
        if not any(a.startswith("-artifact_prefix=") for a in args):
            args.append(f"-artifact_prefix={work}/")
    atheris.Setup(args, one_input)
    atheris.Fuzz()

