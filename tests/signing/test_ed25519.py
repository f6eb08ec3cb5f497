"""The Ed25519 primitive: libsodium signs and verifies, OpenSSL is the reference.

Signatures must be the very octets OpenSSL makes (Ed25519 is deterministic),
every honest signature must verify under both, and where the two differ
libsodium must be the stricter: it refuses what an honest signer never makes.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given
from hypothesis import strategies as st

from signing.keys import SigningKey, VerifyKey

# The order of the Ed25519 base point (RFC 8032, section 5.1: L).
GROUP_ORDER = 2**252 + 27742317777372353535851937790883648493
IDENTITY = b"\x01" + bytes(31)  # the neutral point's encoding: y = 1, x = 0

# RFC 8032, section 7.1, TEST 2: secret key, public key, message, signature.
RFC_SECRET = bytes.fromhex("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb")
RFC_PUBLIC = bytes.fromhex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c")
RFC_MESSAGE = bytes.fromhex("72")
RFC_SIGNATURE = bytes.fromhex(
    "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
    "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00")


def _openssl_accepts(raw_public: bytes, signature: bytes, data: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(raw_public).verify(signature, data)
    except InvalidSignature:
        return False
    return True


def test_signing_and_verifying_match_the_rfc_8032_vector() -> None:
    key = SigningKey.from_seed(1, RFC_SECRET)
    assert key.public.raw == RFC_PUBLIC
    assert key.sign(RFC_MESSAGE) == RFC_SIGNATURE
    assert VerifyKey.from_raw(1, RFC_PUBLIC).verify(RFC_SIGNATURE, RFC_MESSAGE)
    assert not VerifyKey.from_raw(1, RFC_PUBLIC).verify(RFC_SIGNATURE, b"\x73")


@given(seed=st.binary(min_size=32, max_size=32), data=st.binary(max_size=300))
def test_signatures_are_the_octets_openssl_makes_and_verify_under_both(
        seed: bytes, data: bytes) -> None:
    key = SigningKey.from_seed(7, seed)
    signature = key.sign(data)
    assert signature == key.private_key.sign(data)
    assert key.public.verify(signature, data)
    assert _openssl_accepts(key.public.raw, signature, data)


@given(seed=st.binary(min_size=32, max_size=32), data=st.binary(max_size=200),
       position=st.integers(min_value=0, max_value=63), flip=st.integers(1, 255))
def test_a_changed_signature_is_refused_as_openssl_refuses_it(
        seed: bytes, data: bytes, position: int, flip: int) -> None:
    key = SigningKey.from_seed(7, seed)
    signature = bytearray(key.sign(data))
    signature[position] ^= flip
    assert not key.public.verify(bytes(signature), data)
    assert not _openssl_accepts(key.public.raw, bytes(signature), data)


def test_a_signature_of_the_wrong_length_is_refused_without_raising() -> None:
    key = SigningKey.from_seed(1, RFC_SECRET)
    good = key.sign(b"x")
    for bad in (b"", good[:63], good + b"\x00"):
        assert not key.public.verify(bad, b"x")


def test_a_non_canonical_s_is_refused() -> None:
    key = SigningKey.from_seed(1, RFC_SECRET)
    signature = key.sign(b"abc")
    s = int.from_bytes(signature[32:], "little")
    stretched = signature[:32] + (s + GROUP_ORDER).to_bytes(32, "little")
    assert not key.public.verify(stretched, b"abc")
    assert not _openssl_accepts(key.public.raw, stretched, b"abc")


def test_a_small_order_key_verifies_nothing_where_openssl_accepts_a_forgery() -> None:
    # With A and R the neutral point and S = 0, [S]B = R + [k]A holds for any
    # message: a lax verifier accepts this "signature" of everything.
    forgery = IDENTITY + bytes(32)
    key = VerifyKey.from_raw(9, IDENTITY)
    for data in (b"lock", b"wipe", b""):
        assert _openssl_accepts(IDENTITY, forgery, data)
        assert not key.verify(forgery, data)
