"""Ed25519 key pairs with 16-bit key ids, and their PEM forms (no file I/O here).

Server signing keys get ids assigned in sequence by the key store (1, 2, ...);
a device key's id is the first two octets of SHA-256 of its raw public key
(:func:`device_key_id`), so it needs no coordination.  PEM: private keys as
PKCS#8, encrypted when a passphrase is given (PBES2, PBKDF2-HMAC-SHA256 with
600,000 iterations, AES-256-CBC: :mod:`signing.pkcs8`) after
:func:`check_passphrase`; public keys as SubjectPublicKeyInfo.

Signing and verifying run in libsodium (through PyNaCl), which does both
about twice as fast as OpenSSL's portable Ed25519 on the machines measured
(docs/benchmarks.md).  Signatures are the same octets (Ed25519 is
deterministic).  libsodium's verification is the stricter of the two: the
same cofactorless equation, and it also refuses a non-canonical ``S``, a
small-order ``R`` and a small-order or non-canonical public key, none of
which an honest signer produces (docs/wire-format.md, section 3,
"Verification").
The keys' PEM forms and the PKCS#8 encryption stay in ``cryptography``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from nacl import bindings as sodium
from nacl.exceptions import BadSignatureError

from signing import pkcs8
from signing.errors import EncodingError, KeyFileError

MIN_PASSPHRASE_CHARS = 12
"""The shortest passphrase accepted for encrypting a new key file."""


def check_passphrase(passphrase: bytes) -> None:
    """Refuse a weak passphrase for a new key file (raises :class:`KeyFileError`).

    The rule: at least :data:`MIN_PASSPHRASE_CHARS` characters (of its UTF-8
    text), and characters of at least two of the classes lowercase letters,
    uppercase letters, digits, and everything else (space, punctuation,
    symbols).  ``"correct horse battery"`` passes; ``"correcthorsebattery"``
    and ``"123456789012"`` do not.  The message never contains the passphrase.
    Existing files are still opened with whatever passphrase they have.
    """
    text = passphrase.decode("utf-8", errors="replace")
    classes = {"lower" if ch.islower() else "upper" if ch.isupper() else
               "digit" if ch.isdigit() else "other" for ch in text}
    if len(text) < MIN_PASSPHRASE_CHARS or len(classes) < 2:
        raise KeyFileError(
            f"the key passphrase is too weak: use at least {MIN_PASSPHRASE_CHARS} characters "
            "mixing at least two of lowercase letters, uppercase letters, digits and other "
            "characters (space, punctuation)")


SIGNATURE_OCTETS = 64
"""The length of an Ed25519 signature."""


def _check_key_id(key_id: int) -> None:
    if not 1 <= key_id <= 0xFFFF:
        raise EncodingError("key id must be in 1..65535")


@dataclass(frozen=True)
class VerifyKey:
    """A public key (its 32 raw octets) and its id: what a verifier holds."""

    key_id: int
    raw: bytes

    def __post_init__(self) -> None:
        _check_key_id(self.key_id)
        if len(self.raw) != 32:
            raise EncodingError("an Ed25519 public key is 32 octets")

    @classmethod
    def from_raw(cls, key_id: int, raw: bytes) -> VerifyKey:
        """Build from the 32 raw public key octets (raises :class:`EncodingError`)."""
        return cls(key_id, bytes(raw))

    @property
    def public_key(self) -> Ed25519PublicKey:
        """The key as a ``cryptography`` object (for PEM and X.509; not used to verify)."""
        return Ed25519PublicKey.from_public_bytes(self.raw)

    def verify(self, signature: bytes, data: bytes) -> bool:
        """Whether ``signature`` is this key's Ed25519 signature of ``data``.

        libsodium's rules (``crypto_sign_open``): ``S`` canonical, ``R`` and
        the key neither small-order nor non-canonical, then ``[S]B = R +
        [k]A`` compared as encodings.  Never raises for a bad signature.
        """
        if len(signature) != SIGNATURE_OCTETS:
            return False
        try:
            sodium.crypto_sign_open(signature + data, self.raw)
        except BadSignatureError:
            return False
        return True

    def to_pem(self) -> bytes:
        """SubjectPublicKeyInfo PEM (for ``openssl pkeyutl -verify -pubin``)."""
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


@dataclass(frozen=True)
class SigningKey:
    """A private key and its id.  ``repr`` never shows key material."""

    key_id: int
    private_key: Ed25519PrivateKey = field(repr=False, compare=False)
    _sodium_secret: bytes = field(init=False, repr=False, compare=False, default=b"")

    def __post_init__(self) -> None:
        _check_key_id(self.key_id)
        # libsodium's 64-octet secret key is the seed, then the public key, which
        # the private key object has already derived (no second derivation).
        secret = (self.private_key.private_bytes_raw()
                  + self.private_key.public_key().public_bytes_raw())
        object.__setattr__(self, "_sodium_secret", secret)

    @classmethod
    def generate(cls, key_id: int) -> SigningKey:
        """A fresh random key pair."""
        return cls(key_id, Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, key_id: int, seed: bytes) -> SigningKey:
        """From a 32-octet seed (test vectors only)."""
        return cls(key_id, Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def public(self) -> VerifyKey:
        """The matching :class:`VerifyKey`."""
        return VerifyKey(self.key_id, self._sodium_secret[32:])

    def sign(self, data: bytes) -> bytes:
        """The 64-octet Ed25519 signature of ``data``."""
        return sodium.crypto_sign(data, self._sodium_secret)[:SIGNATURE_OCTETS]

    def to_pem(self, passphrase: bytes | None) -> bytes:
        """PKCS#8 PEM, encrypted when ``passphrase`` is given (a weak one raises
        :class:`KeyFileError`, see :func:`check_passphrase`)."""
        if not passphrase:
            return self.private_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption())
        check_passphrase(passphrase)
        plain = self.private_key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())
        return pkcs8.encrypt(plain, passphrase)


_P = 2**255 - 19
_Y_MASK = (1 << 255) - 1


def _sqrt(value: int) -> int | None:
    """A square root modulo 2^255 - 19 (p = 5 mod 8), or None when there is none."""
    value %= _P
    root = pow(value, (_P + 3) // 8, _P)
    if (root * root - value) % _P:
        root = root * pow(2, (_P - 1) // 4, _P) % _P
    return root if (root * root - value) % _P == 0 else None


def _small_order_ys() -> frozenset[int]:
    """The y coordinates of the eight points of order 1, 2, 4 and 8 of edwards25519.

    Order 1 and 2: (0, 1) and (0, -1); order 4: (±sqrt(-1), 0); order 8: the
    points whose double has y = 0, that is y² = -x² on the curve
    -x² + y² = 1 + d x² y², which gives d x⁴ - 2 x² - 1 = 0.
    """
    d = -121665 * pow(121666, -1, _P) % _P
    ys = {0, 1, _P - 1}
    root = _sqrt(1 + d)
    assert root is not None
    for x2 in ((1 + root) * pow(d, -1, _P), (1 - root) * pow(d, -1, _P)):
        y = _sqrt(-x2)
        if y is not None:
            ys |= {y, _P - y}
    return frozenset(ys)


SMALL_ORDER_YS = _small_order_ys()
"""The y of every small-order point (whatever the sign bit): keys no signature verifies with."""


def public_key_defect(raw: bytes) -> str | None:
    """Why these 32 octets can never be a device's verifying key, or None.

    The checks libsodium's verification makes before it looks at a
    signature, so a key that fails them would make every frame of its
    device fail: a non-canonical encoding (y not below 2^255 - 19) or a
    point of small order (an all-zero buffer is one).  About a microsecond:
    no point arithmetic.  An encoding that is not a point of the curve at
    all is not detected here (that needs a square root); verification
    refuses it too.
    """
    if len(raw) != 32:
        return "an Ed25519 public key is 32 octets"
    y = int.from_bytes(raw, "little") & _Y_MASK
    if y >= _P:
        return "not a canonical encoding of a point"
    if y in SMALL_ORDER_YS:
        return "a point of small order (no signature can ever verify with it)"
    return None


def device_key_id(public_raw: bytes) -> int:
    """The id of a device key: first two octets of SHA-256 of the raw public key (0 -> 1)."""
    return int.from_bytes(hashlib.sha256(public_raw).digest()[:2], "big") or 1


def is_encrypted_pem(data: bytes) -> bool:
    """True for an ``ENCRYPTED PRIVATE KEY`` PEM."""
    return b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in data


def load_private_pem(key_id: int, data: bytes, passphrase: bytes | None) -> SigningKey:
    """Parse a PKCS#8 PEM Ed25519 private key (raises :class:`KeyFileError`)."""
    if is_encrypted_pem(data) and not passphrase:
        raise KeyFileError(
            "the key is encrypted: set MEPL_KEY_PASSPHRASE or give a passphrase file"
        )
    try:
        key = serialization.load_pem_private_key(
            data, password=passphrase if is_encrypted_pem(data) else None
        )
    except (ValueError, TypeError):
        raise KeyFileError("cannot decrypt or parse the private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError("not an Ed25519 private key")
    return SigningKey(key_id, key)


def load_public_pem(key_id: int, data: bytes) -> VerifyKey:
    """Parse a SubjectPublicKeyInfo PEM Ed25519 public key."""
    key = serialization.load_pem_public_key(data)
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError("not an Ed25519 public key")
    return VerifyKey(key_id, key.public_bytes_raw())
