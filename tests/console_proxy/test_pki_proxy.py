"""The proxy's client certificate for a remote admin API (``mepl pki issue-proxy``)."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from console_proxy import pki
from console_proxy.pkifiles import PkiError
from mepl.cli.main import main

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_a_proxy_certificate_is_a_client_certificate_with_ou_proxy_and_a_0600_key(
        tmp_path: Path) -> None:
    directory = tmp_path / "pki"
    pki.init_ca(directory, deployment="acme", passphrase=None, now=NOW)
    issued = pki.issue_proxy(directory, "proxy-1", ca_passphrase=None, now=NOW)
    key, pem = issued.files
    assert (key.name, pem.name) == ("proxy-proxy-1.key", "proxy-proxy-1.pem")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert b"ENCRYPTED" not in key.read_bytes()  # the proxy reads it unattended
    cert = x509.load_pem_x509_certificate(pem.read_bytes())
    assert cert.subject.rfc4514_string() == "CN=proxy-1,OU=proxy,O=acme"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.issuer == x509.load_pem_x509_certificate(
        (directory / pki.CA_CERT).read_bytes()).subject
    assert [(c.kind, c.name, c.role) for c in pki.list_certs(directory)] == [
        ("proxy", "proxy-1", "proxy")]
    with pytest.raises(PkiError, match="already exists"):
        pki.issue_proxy(directory, "proxy-1", ca_passphrase=None, now=NOW)
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value \
        == pki.PROXY_ROLE


def test_mepl_pki_issue_proxy_writes_the_files_it_prints(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "pki"
    ca_pass = tmp_path / "ca.pass"
    ca_pass.write_text("CA-passphrase-77\n")
    common = ["--dir", str(directory), "--ca-passphrase-file", str(ca_pass)]
    assert main(["pki", "init-ca", *common, "--name", "acme"]) == 0
    capsys.readouterr()
    assert main(["pki", "issue-proxy", *common, "--name", "proxy-1", "--days", "30"]) == 0
    out = capsys.readouterr().out
    assert "fingerprint" in out
    assert str(directory / "issued" / "proxy-proxy-1.pem") in out
    assert (directory / "issued" / "proxy-proxy-1.key").exists()
    assert main(["pki", "issue-proxy", *common, "--name", "bad name"]) == 2
    assert "invalid name" in capsys.readouterr().err
