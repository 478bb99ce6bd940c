"""The two signature schemes of CVMFS (spec 4.2, 5.3).

Both sign the ASCII *hash line* of a letter, not the letter itself. The manifest uses RSA
PKCS#1 v1.5 with a SHA-1 DigestInfo; the whitelist uses raw PKCS#1 v1.5 type-1 padding
(``RSA_private_encrypt``), which ``cryptography`` cannot produce, hence the modular
exponentiation below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ..errors import FormatError, KeyMaterialError
from .hashes import Algorithm, ContentHash

SEPARATOR = b"\n--\n"


@dataclass(frozen=True)
class SignedDocument:
    """A letter, the hash line that covers it, and the raw signature bytes after it."""

    letter: bytes
    hash_line: bytes
    signature: bytes

    @classmethod
    def split(cls, data: bytes, what: str) -> SignedDocument:
        """Cut like upstream's ``CutLetter``: the first ``\\n--\\n`` ends the letter."""
        cut = data.find(SEPARATOR)
        if cut < 0:
            raise FormatError(f"{what}: no '--' line separating the signature")
        letter = data[: cut + 1]
        rest = data[cut + len(SEPARATOR) :]
        newline = rest.find(b"\n")
        if newline < 0:
            raise FormatError(f"{what}: no hash line after '--'")
        return cls(letter, rest[:newline], rest[newline + 1 :])

    def letter_hash_matches(self) -> bool:
        """Recompute the letter's hash with the algorithm implied by the hash line."""
        try:
            expected = ContentHash.parse(self.hash_line.decode("ascii"))
        except (UnicodeDecodeError, FormatError):
            return False
        return ContentHash.of(self.letter, expected.algorithm) == expected

    def serialize(self) -> bytes:
        return self.letter + b"--\n" + self.hash_line + b"\n" + self.signature


def hash_line(letter: bytes, algorithm: Algorithm) -> bytes:
    return str(ContentHash.of(letter, algorithm)).encode("ascii")


def sign_sha1(key: rsa.RSAPrivateKey, message: bytes) -> bytes:
    """Manifest scheme: ``EVP_SignInit(EVP_sha1())`` over the hash line."""
    return _checked(key, message, key.sign(message, padding.PKCS1v15(), hashes.SHA1()),
                    verify_sha1)


def verify_sha1(key: rsa.RSAPublicKey, message: bytes, signature: bytes) -> bool:
    try:
        key.verify(signature, message, padding.PKCS1v15(), hashes.SHA1())
    except InvalidSignature:
        return False
    return True


def sign_raw(key: rsa.RSAPrivateKey, message: bytes) -> bytes:
    """Whitelist scheme: ``EM = 00 01 FF..FF 00 || message``, ``sig = EM^d mod n``."""
    numbers = key.private_numbers()
    n = numbers.public_numbers.n
    size = (n.bit_length() + 7) // 8
    pad_len = size - 3 - len(message)
    if pad_len < 8:
        raise FormatError("message too long for raw RSA signature")
    encoded = b"\x00\x01" + b"\xff" * pad_len + b"\x00" + message
    signature = pow(int.from_bytes(encoded, "big"), numbers.d, n).to_bytes(size, "big")
    return _checked(key, message, signature, verify_raw)


def _checked(key: rsa.RSAPrivateKey, message: bytes, signature: bytes,
             verify: Callable[[rsa.RSAPublicKey, bytes, bytes], bool]) -> bytes:
    """Keys are parsed without OpenSSL's arithmetic check (``key_material``): a damaged
    private exponent would sign garbage that every client rejects, so check it here, where
    it costs about a millisecond, before the signature is published."""
    if not verify(key.public_key(), message, signature):
        raise KeyMaterialError("the private key makes signatures its own public key rejects: "
                             "the key file is damaged")
    return signature


def verify_raw(key: rsa.RSAPublicKey, message: bytes, signature: bytes) -> bool:
    if len(signature) != (key.key_size + 7) // 8:
        return False
    try:
        recovered = key.recover_data_from_signature(signature, padding.PKCS1v15(), None)
    except InvalidSignature:
        return False
    return recovered == message
