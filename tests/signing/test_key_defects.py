"""Device keys that can never verify are refused at enrolment (``public_key_defect``)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from nacl import bindings as sodium
from nacl.exceptions import BadSignatureError

from signing.keys import SMALL_ORDER_YS, SigningKey, public_key_defect

P = 2**255 - 19
IDENTITY = (1).to_bytes(32, "little")


def _encodings(y: int) -> list[bytes]:
    return [(y | sign << 255).to_bytes(32, "little") for sign in (0, 1)]


def test_the_small_order_set_is_the_eight_torsion_as_libsodium_computes_it() -> None:
    # Eight points: (0, 1), (0, -1), two with y = 0 and four of order 8 (two y values).
    assert len(SMALL_ORDER_YS) == 5 and {0, 1, P - 1} < SMALL_ORDER_YS
    for y in SMALL_ORDER_YS:
        point = y.to_bytes(32, "little")
        total = point
        for _ in range(7):
            total = sodium.crypto_core_ed25519_add(total, point)
        assert total == IDENTITY  # 8 P is the neutral element
        assert not sodium.crypto_core_ed25519_is_valid_point(point)


def test_small_order_and_non_canonical_keys_are_refused_with_the_reason() -> None:
    for y in SMALL_ORDER_YS:
        for raw in _encodings(y):
            assert public_key_defect(raw) == (
                "a point of small order (no signature can ever verify with it)")
    for y in range(P, 2**255):  # the 19 encodings of y not below p, with either sign
        for raw in _encodings(y):
            assert public_key_defect(raw) == "not a canonical encoding of a point"
    assert public_key_defect(bytes(31)) == "an Ed25519 public key is 32 octets"


def test_libsodium_refuses_every_signature_under_a_refused_key() -> None:
    message = b"lock"
    for y in SMALL_ORDER_YS | {P, P + 1}:
        for raw in _encodings(y):
            assert public_key_defect(raw) is not None
            for signature in (bytes(64), IDENTITY + bytes(32)):  # R = identity, S = 0
                try:
                    sodium.crypto_sign_open(signature + message, raw)
                except BadSignatureError:
                    continue
                raise AssertionError(f"libsodium accepted a signature under {raw.hex()}")


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=32, max_size=32))
def test_keys_of_real_handsets_are_never_refused(seed: bytes) -> None:
    key = SigningKey.from_seed(1, seed)
    assert public_key_defect(key.public.raw) is None
    assert key.public.verify(key.sign(b"status"), b"status")
