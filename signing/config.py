"""The ``[signing]`` configuration section (built with ``mepl.config.build``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SigningConfig:
    """Where the server keys live and how long commands stay valid.

    ``keys_dir`` defaults to ``<state_dir>/keys``; the key passphrase comes
    from ``passphrase_file`` or ``$MEPL_KEY_PASSPHRASE`` (never from the TOML
    file itself).  ``command_validity_minutes`` is the default not-after
    distance.  (The server's per-device alert counter window is the 64
    counters below the high-water mark, kept in the database.)
    """

    keys_dir: Path | None = None
    passphrase_file: Path | None = None
    command_validity_minutes: int = 1440

    def __post_init__(self) -> None:
        if not 1 <= self.command_validity_minutes <= 60 * 24 * 30:
            raise ValueError("command_validity_minutes must be in 1..43200 (30 days)")

    def keys_path(self, state_dir: Path) -> Path:
        """The key directory: ``keys_dir`` or ``<state_dir>/keys``."""
        return self.keys_dir if self.keys_dir is not None else state_dir / "keys"
