"""Every signature in the vectors checked with the OpenSSL command line.

    openssl pkeyutl -verify -pubin -inkey key.pem -rawin -in signed.bin -sigfile sig.bin

(OpenSSL 3.0 or later; Ed25519 needs ``-rawin``.)  The verdict must equal the
vector's ``signature_valid``: true for every honest frame, false for forgeries.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.signing import vectors


def _signatures() -> list[tuple[str, str, str, str, bool]]:
    out = []
    for section, key_field in (("commands", "verify_key"), ("replies", "device_key"),
                               ("alerts", "device_key")):
        for case in vectors.cases(section):
            key_name = case.get(key_field)
            if key_name is None or case["signed_bytes"] is None:
                continue
            out.append((case["name"], key_name, case["signed_bytes"], case["signature"],
                        case["signature_valid"]))
    return out


SIGNATURES = _signatures()


def test_openssl_is_available_with_ed25519_rawin() -> None:
    assert shutil.which("openssl"), "the openssl command line is required for this test"
    version = subprocess.run(["openssl", "version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("OpenSSL 3")


@pytest.mark.parametrize("entry", SIGNATURES, ids=[e[0] for e in SIGNATURES])
def test_openssl_verifies_vector_signature(entry: tuple[str, str, str, str, bool],
                                           tmp_path: Path) -> None:
    _, key_name, signed, signature, valid = entry
    pem = tmp_path / "key.pem"
    pem.write_bytes(vectors.key(key_name).public.to_pem())
    (tmp_path / "signed.bin").write_bytes(bytes.fromhex(signed))
    (tmp_path / "sig.bin").write_bytes(bytes.fromhex(signature))
    result = subprocess.run(
        ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(pem), "-rawin",
         "-in", str(tmp_path / "signed.bin"), "-sigfile", str(tmp_path / "sig.bin")],
        capture_output=True, text=True, check=False)
    assert (result.returncode == 0) == valid, result.stdout + result.stderr
    assert ("Signature Verified Successfully" in result.stdout) == valid


def test_some_vectors_are_expected_to_fail_openssl() -> None:
    verdicts: list[Any] = [e[4] for e in SIGNATURES]
    assert True in verdicts and False in verdicts
