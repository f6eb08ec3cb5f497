"""The admin PKI: file modes, certificates per the contract, bundles, revocation."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key, pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from console_proxy import pki
from console_proxy.pkifiles import PkiError
from mepl.cli.main import main
from tests.console_proxy.pkihelp import PASS

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CA_PASS = b"CA-passphrase-77"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "pki"
    pki.init_ca(directory, deployment="acme", passphrase=CA_PASS, now=NOW)
    return directory


def test_init_ca_writes_private_files_0600_in_a_0700_directory(ca_dir: Path) -> None:
    assert mode(ca_dir) == 0o700
    assert mode(ca_dir / "ca.key") == 0o600
    assert mode(ca_dir / "assertion.key") == 0o600
    assert (ca_dir / "assertion.pub").read_bytes().startswith(b"-----BEGIN PUBLIC KEY")
    assert (ca_dir / "crl.pem").exists()


def test_the_ca_key_is_encrypted_and_opens_only_with_its_passphrase(ca_dir: Path) -> None:
    assert pki.ca_key_encrypted(ca_dir)
    with pytest.raises(PkiError, match="wrong passphrase"):
        pki.load_ca(ca_dir, b"Not-the-pass-1")
    assert pki.load_ca(ca_dir, CA_PASS).deployment == "acme"


def test_init_ca_refuses_to_overwrite_an_existing_ca(ca_dir: Path) -> None:
    with pytest.raises(PkiError, match="already holds a CA"):
        pki.init_ca(ca_dir, deployment="other", passphrase=None, now=NOW)


def test_the_assertion_key_is_ed25519_matching_its_public_key(ca_dir: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    key = load_pem_private_key((ca_dir / "assertion.key").read_bytes(), None)
    pub = load_pem_public_key((ca_dir / "assertion.pub").read_bytes())
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    assert isinstance(pub, ed25519.Ed25519PublicKey)
    pub.verify(key.sign(b"x"), b"x")


def test_admin_certificate_carries_name_role_deployment_and_client_auth(ca_dir: Path) -> None:
    issued = pki.issue_admin(ca_dir, "alice", "operator", ca_passphrase=CA_PASS,
                             bundle_passphrase=PASS, now=NOW, days=10)
    cert = x509.load_pem_x509_certificate(issued.files[1].read_bytes())
    subject = cert.subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alice"
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "operator"
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "acme"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert (cert.not_valid_after_utc - NOW).days == 10
    assert issued.entry.fingerprint == pki.fingerprint(cert)
    ca = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    cert.verify_directly_issued_by(ca)


def test_pkcs12_bundle_opens_with_the_passphrase_only(ca_dir: Path) -> None:
    issued = pki.issue_admin(ca_dir, "bob", "viewer", ca_passphrase=CA_PASS,
                             bundle_passphrase=PASS, now=NOW)
    bundle = issued.files[0]
    assert mode(bundle) == 0o600 and mode(issued.files[2]) == 0o600
    with pytest.raises(ValueError):
        pkcs12.load_key_and_certificates(bundle.read_bytes(), b"Wrong-pass-123")
    with pytest.raises(ValueError):
        pkcs12.load_key_and_certificates(bundle.read_bytes(), None)
    key, cert, extra = pkcs12.load_key_and_certificates(bundle.read_bytes(), PASS)
    assert key is not None and cert is not None
    assert cert.subject.rfc4514_string() == "CN=bob,OU=viewer,O=acme"
    assert [c.subject for c in extra] == [pki.load_ca(ca_dir, CA_PASS).cert.subject]
    with pytest.raises(TypeError):
        load_pem_private_key(issued.files[2].read_bytes(), None)  # the PEM key is encrypted


def test_issue_admin_refuses_a_weak_passphrase_and_an_unknown_role(ca_dir: Path) -> None:
    with pytest.raises(PkiError, match="too weak"):
        pki.issue_admin(ca_dir, "carol", "admin", ca_passphrase=CA_PASS,
                        bundle_passphrase=b"short", now=NOW)
    with pytest.raises(PkiError, match="invalid role"):
        pki.issue_admin(ca_dir, "carol", "root", ca_passphrase=CA_PASS,
                        bundle_passphrase=PASS, now=NOW)
    assert pki.list_certs(ca_dir) == []


def test_server_certificate_has_the_hosts_as_subject_alt_names(ca_dir: Path) -> None:
    issued = pki.issue_server(ca_dir, ["proxy.example", "127.0.0.1"], ca_passphrase=CA_PASS,
                              now=NOW)
    cert = x509.load_pem_x509_certificate(issued.files[1].read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["proxy.example"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert mode(issued.files[0]) == 0o600


def test_revoke_by_name_lists_the_serial_in_a_regenerated_crl(ca_dir: Path) -> None:
    issued = pki.issue_admin(ca_dir, "dave", "admin", ca_passphrase=CA_PASS,
                             bundle_passphrase=PASS, now=NOW)
    before = x509.load_pem_x509_crl((ca_dir / "crl.pem").read_bytes())
    revoked = pki.revoke(ca_dir, passphrase=CA_PASS, now=NOW, name="dave")
    assert [r.serial for r in revoked] == [issued.entry.serial]
    crl = x509.load_pem_x509_crl((ca_dir / "crl.pem").read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(int(issued.entry.serial, 16))
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert number > before.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert crl.is_signature_valid(pki.load_ca(ca_dir, CA_PASS).key.public_key())
    assert pki.list_certs(ca_dir)[0].revoked_at == NOW.isoformat()


def test_crl_keeps_revoked_serials_and_moves_next_update(ca_dir: Path) -> None:
    issued = pki.issue_admin(ca_dir, "erin", "viewer", ca_passphrase=CA_PASS,
                             bundle_passphrase=PASS, now=NOW)
    pki.revoke(ca_dir, passphrase=CA_PASS, now=NOW, cert_file=issued.files[1])
    later = datetime(2026, 3, 5, tzinfo=UTC)
    pki.make_crl(ca_dir, passphrase=CA_PASS, now=later, days=3)
    crl = x509.load_pem_x509_crl((ca_dir / "crl.pem").read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(int(issued.entry.serial, 16))
    assert crl.next_update_utc == datetime(2026, 3, 8, tzinfo=UTC)


def test_revoke_with_the_wrong_ca_passphrase_changes_nothing(ca_dir: Path) -> None:
    pki.issue_admin(ca_dir, "frank", "viewer", ca_passphrase=CA_PASS, bundle_passphrase=PASS,
                    now=NOW)
    with pytest.raises(PkiError, match="wrong passphrase"):
        pki.revoke(ca_dir, passphrase=b"Wrong-pass-123", now=NOW, name="frank")
    assert pki.list_certs(ca_dir)[0].revoked_at is None


def test_mepl_pki_commands_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                      ) -> None:
    directory = tmp_path / "pki"
    ca_pass = tmp_path / "ca.pass"
    ca_pass.write_text("CA-passphrase-77\n")
    bundle_pass = tmp_path / "bundle.pass"
    bundle_pass.write_text(PASS.decode() + "\n")
    common = ["--dir", str(directory), "--ca-passphrase-file", str(ca_pass)]
    assert main(["pki", "init-ca", *common, "--name", "acme"]) == 0
    assert main(["pki", "issue-server", *common, "--host", "127.0.0.1"]) == 0
    assert main(["pki", "issue-admin", *common, "--name", "gina", "--role", "admin",
                 "--passphrase-file", str(bundle_pass)]) == 0
    assert main(["pki", "revoke", *common, "--name", "gina"]) == 0
    assert main(["pki", "crl", *common]) == 0
    capsys.readouterr()
    assert main(["pki", "list", "--dir", str(directory), "--json"]) == 0
    out = capsys.readouterr().out
    assert '"name": "gina"' in out and '"role": "admin"' in out
    assert PASS.decode() not in out
    assert main(["pki", "revoke", *common, "--name", "nobody"]) == 2
    assert "no certificate issued to 'nobody'" in capsys.readouterr().err
