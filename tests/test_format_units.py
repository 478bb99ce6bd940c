"""The format layer against the spec's vectors and the bytes upstream ``cvmfs_server`` wrote.

Vectors come from ``shared/cvmfs-format.md`` (which cites upstream's unit tests); the
manifest, whitelist and their signatures come from the reference repository. PKCS#1 v1.5
signatures are deterministic, so re-signing the fixture's letters with the fixture's keys
must reproduce the fixture's signature bytes exactly.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import random
import zlib
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.serialization import Encoding
from tamper import FQRN, damaged_key_pem

from cvmfs_publisher.cvmfs.catalog import decode_xattrs, encode_xattrs
from cvmfs_publisher.cvmfs.compression import Compression, check_and_decode, decode, encode
from cvmfs_publisher.cvmfs.hashes import (
    ROOT_PATH_MD5,
    Algorithm,
    ContentHash,
    Suffix,
    parent_path,
    parse_object_key,
    path_key,
)
from cvmfs_publisher.cvmfs.key_material import (
    certificate_fingerprint,
    generate_private_key,
    load_certificate,
    load_private_key,
    load_public_key,
)
from cvmfs_publisher.cvmfs.manifest import Manifest, parse_manifest, verify_manifest_signature
from cvmfs_publisher.cvmfs.signatures import SignedDocument, sign_raw, sign_sha1, verify_raw
from cvmfs_publisher.cvmfs.whitelist import (
    Whitelist,
    parse_whitelist,
    verify_whitelist_signature,
)
from cvmfs_publisher.engine.chunking import ChunkPolicy, split
from cvmfs_publisher.engine.trust import check_whitelist
from cvmfs_publisher.errors import FormatError, KeyMaterialError, SignatureError
from cvmfs_publisher.storage.local import LocalStorage

EMPTY_ZLIB = bytes.fromhex("789c030000000001")
UTC = dt.UTC


@pytest.fixture(scope="module")
def storage(fixture_dir: Path) -> Path:
    return fixture_dir / "storage"


@pytest.fixture(scope="module")
def keys(fixture_dir: Path) -> Path:
    return fixture_dir / "keys"


def key(keys: Path, kind: str):  # type: ignore[no-untyped-def]
    return load_private_key((keys / f"{FQRN}.{kind}").read_bytes(), kind)


def public(keys: Path):  # type: ignore[no-untyped-def]
    return load_public_key((keys / f"{FQRN}.pub").read_bytes(), "pub")


def cert_key(keys: Path):  # type: ignore[no-untyped-def]
    return load_certificate((keys / f"{FQRN}.crt").read_bytes()).public_key()


# -- hashes, object names, path keys (spec 1.2, 2.1, 2.3, 3.3) --------------------------------


def test_empty_file_object_is_the_wellknown_zlib_stream() -> None:
    content_hash, stored = encode(b"")
    assert stored == EMPTY_ZLIB
    assert str(content_hash) == "e8ec3d88b62ebf526e4e5a4ff6162a3aa48a6b78"
    assert decode(stored) == b""


@pytest.mark.parametrize(("algorithm", "expected"), [
    (Algorithm.SHA1, "e8ec3d88b62ebf526e4e5a4ff6162a3aa48a6b78"),
    (Algorithm.RMD160, "fcdb20b894f31f1306d56294c049ca7293dde0fc-rmd160"),
    (Algorithm.SHAKE128, "28d94b83b7229b331fc601362b8e272e02665122-shake128"),
])
def test_empty_object_names_per_algorithm(algorithm: Algorithm, expected: str) -> None:
    content_hash, stored = encode(b"", algorithm)
    assert str(content_hash) == expected
    assert ContentHash.parse(expected) == content_hash
    assert ContentHash.of(stored, algorithm) == content_hash


@pytest.mark.parametrize(("data", "expected"), [
    (b"", "7f9c2ba4e88f827d616045507605853ed73b8093-shake128"),
    (b"abc", "5881092dd818bf5cf8a3ddb793fbcba74097d5c5-shake128"),
])
def test_shake128_vectors(data: bytes, expected: str) -> None:
    assert str(ContentHash.of(data, Algorithm.SHAKE128)) == expected


def test_empty_file_object_in_the_fixture(storage: Path) -> None:
    """Upstream stores the empty file as a real object with exactly these bytes."""
    stored = (storage / "data/e8/ec3d88b62ebf526e4e5a4ff6162a3aa48a6b78").read_bytes()
    assert stored == EMPTY_ZLIB


def test_object_name_hashes_the_stored_bytes(storage: Path) -> None:
    """/a/hello.txt: the name is the hash of the zlib stream, not of the content."""
    stored = (storage / "data/57/98f7f4ca7585d850eea64610a1f73d8f8de7a3").read_bytes()
    expected = ContentHash.parse("5798f7f4ca7585d850eea64610a1f73d8f8de7a3")
    content = check_and_decode(stored, expected)
    assert len(content) == 6
    assert ContentHash.of(content) != expected
    assert encode(content) == (expected, stored)  # same zlib, same level: same bytes
    with pytest.raises(FormatError, match="content hash"):
        check_and_decode(stored[:-1] + bytes([stored[-1] ^ 1]), expected)


@pytest.mark.parametrize(("hex_digest", "algorithm", "suffix", "key"), [
    ("cf3e56cf3da37ad17cf1f2c2ff5d86497fc29068", Algorithm.SHA1, Suffix.NONE,
     "data/cf/3e56cf3da37ad17cf1f2c2ff5d86497fc29068"),
    ("aa1deda59d5329553580d78fcd0b393157a5d28e", Algorithm.RMD160, Suffix.CATALOG,
     "data/aa/1deda59d5329553580d78fcd0b393157a5d28e-rmd160C"),
    ("0152bb0000000000000000000000000000009201", Algorithm.SHAKE128, Suffix.MICRO_CATALOG,
     "data/01/52bb0000000000000000000000000000009201-shake128L"),
    ("28d94b83b7229b331fc601362b8e272e02665122", Algorithm.SHAKE128, Suffix.PARTIAL,
     "data/28/d94b83b7229b331fc601362b8e272e02665122-shake128P"),
    ("e8ec3d88b62ebf526e4e5a4ff6162a3aa48a6b78", Algorithm.SHA1, Suffix.HISTORY,
     "data/e8/ec3d88b62ebf526e4e5a4ff6162a3aa48a6b78H"),
])
def test_object_keys(hex_digest: str, algorithm: Algorithm, suffix: Suffix, key: str) -> None:
    """Algorithm id first, then the suffix letter (``-shake128L``, never ``L-shake128``)."""
    content_hash = ContentHash(bytes.fromhex(hex_digest), algorithm)
    assert content_hash.object_key(suffix) == key
    assert parse_object_key(key) == (content_hash, suffix)


@pytest.mark.parametrize("bad", [
    "data/aa/1deda59d5329553580d78fcd0b393157a5d28eC-rmd160",  # suffix before algorithm
    "data/cf/3E56CF3DA37AD17CF1F2C2FF5D86497FC29068",  # upper case
    "data/cf3e/56cf3da37ad17cf1f2c2ff5d86497fc29068",
    "objects/cf/3e56cf3da37ad17cf1f2c2ff5d86497fc29068",
])
def test_malformed_object_keys(bad: str) -> None:
    with pytest.raises(FormatError):
        parse_object_key(bad)


def test_hash_strings_infer_the_algorithm_from_their_length() -> None:
    assert ContentHash.parse("e8ec3d88b62ebf526e4e5a4ff6162a3aa48a6b78").algorithm is (
        Algorithm.SHA1)
    for bad in ("e8ec3d88b62ebf526e4e5a4ff6162a3aa48a6b7", "e8ec3d88b62ebf526e4e5a4ff6162a3a"
                "a48a6b78-sha256", "e8ec3d88b62ebf526e4e5a4ff6162a3aa48a6b78-shake12"):
        with pytest.raises(FormatError):
            ContentHash.parse(bad)


@pytest.mark.parametrize(("path", "md5", "key"), [
    ("", ROOT_PATH_MD5, (338333539836370388, 9098107892288553193)),
    ("/dir", None, (1392360099283757235, 8765805945996284043)),
    ("/dir/sub", None, (7311629182115142611, -4920302689828038214)),
])
def test_path_keys(path: str, md5: str | None, key: tuple[int, int]) -> None:
    assert path_key(path) == key
    if md5 is not None:
        assert hashlib.md5(path.encode()).hexdigest() == md5
    # little-endian signed int64 halves of the MD5 digest
    digest = hashlib.md5(path.encode()).digest()
    assert key == (int.from_bytes(digest[:8], "little", signed=True),
                   int.from_bytes(digest[8:], "little", signed=True))


def test_parent_paths() -> None:
    assert parent_path("/dir") == ""
    assert parent_path("/dir/sub") == "/dir"
    assert path_key(parent_path("/dir/sub")) == (1392360099283757235, 8765805945996284043)


def test_utf8_path_key_hashes_raw_bytes() -> None:
    path = "/dir with space/Grüße ü.txt"
    digest = hashlib.md5(path.encode("utf-8")).digest()
    assert path_key(path) == (int.from_bytes(digest[:8], "little", signed=True),
                              int.from_bytes(digest[8:], "little", signed=True))


def test_fingerprint_form(keys: Path) -> None:
    fingerprint = certificate_fingerprint((keys / f"{FQRN}.crt").read_bytes())
    text = "CB:83:19:03:42:5D:21:2C:A0:20:A3:7E:49:03:9B:F5:69:3B:3A:92"
    assert fingerprint.fingerprint() == text
    assert ContentHash.from_fingerprint(text) == fingerprint
    assert ContentHash.from_fingerprint(text + " # the repository key") == fingerprint
    assert ContentHash.from_fingerprint(text + "\tcomment") == fingerprint
    assert ContentHash.from_fingerprint("not a fingerprint") is None
    # The fingerprint is over the DER certificate, not over the PEM text (spec 5.2).
    der = load_certificate((keys / f"{FQRN}.crt").read_bytes()).public_bytes(Encoding.DER)
    assert hashlib.sha1(der).hexdigest() == fingerprint.hex
    shake = ContentHash(bytes(range(20)), Algorithm.SHAKE128)
    assert shake.fingerprint() == (
        "00:01:02:03:04:05:06:07:08:09:0A:0B:0C:0D:0E:0F:10:11:12:13-SHAKE128")
    assert ContentHash.from_fingerprint(shake.fingerprint()) == shake


def test_compression_none_stores_verbatim() -> None:
    content_hash, stored = encode(b"payload", compression=Compression.NONE)
    assert stored == b"payload"
    assert content_hash == ContentHash.of(b"payload")
    assert decode(stored, Compression.NONE) == b"payload"


def test_zlib_stream_is_level_6_rfc1950() -> None:
    data = bytes(range(256)) * 64
    _, stored = encode(data)
    assert stored[:2] == b"\x78\x9c"
    assert stored == zlib.compress(data, 6)


# -- manifest (spec 4) --------------------------------------------------------------------------


def test_manifest_parse_every_field(storage: Path) -> None:
    raw = (storage / ".cvmfspublished").read_bytes()
    manifest, doc = parse_manifest(raw)
    assert manifest == Manifest(
        root_catalog=ContentHash.parse("96ac540074f81c0dfa4e89ccddaded6d766ebcaa"),
        catalog_size=57344,
        revision=5,
        fqrn=FQRN,
        ttl=240,
        timestamp=1795541813,
        certificate=ContentHash.parse("b58f8791baf90a61a65ff80bcff411d1eae45c64"),
        history=ContentHash.parse("28d713bd364c9379d8803ab2af748ec49d798e66"),
        metainfo=ContentHash.parse("85e4f386da0d5d77c7f66cf2f58e10951f24b653"),
        reflog=ContentHash.parse("edcf980e3ad58d30dea8b3b739cadd03d78d53a7"),
        garbage_collectable=False,
        alt_catalog_path=False,
        root_path_hash="d41d8cd98f00b204e9800998ecf8427e",
        extra=(),
    )
    assert doc is not None
    assert doc.hash_line == b"8d845c018b44e74fe0afaf7874e1a9b5c3f40ddf"
    assert len(doc.signature) == 256
    # Our letter is byte-identical to upstream's ExportString (same key order).
    assert manifest.letter() == doc.letter
    assert doc.serialize() == raw
    assert hashlib.sha1(doc.letter).hexdigest().encode() == doc.hash_line


def test_manifest_parser_rules() -> None:
    letter = (b"Cd4fd341d6fff2efdf876ccd5fa843087973d63ec\nB1\n\nRd41d8cd98f00b204e9800998ecf"
              b"8427e\nD240\nS1\nS2\nQunknown\nNtest.example.org\n")
    manifest, doc = parse_manifest(letter + b"--\nabc\n")
    assert manifest.revision == 2  # later duplicates win, empty lines are ignored
    assert manifest.extra == (("Q", "unknown"),)  # kept, so a re-sign covers it
    assert doc is not None and doc.hash_line == b"abc"
    for required in (b"C", b"R", b"D", b"S"):
        stripped = b"\n".join(line for line in letter.split(b"\n")
                              if not line.startswith(required))
        with pytest.raises(FormatError, match=f"field {required.decode()}"):
            parse_manifest(stripped)
    with pytest.raises(FormatError):
        parse_manifest(letter + b"X" * 4096)


def test_manifest_signature_reproduced_exactly(storage: Path, keys: Path) -> None:
    raw = (storage / ".cvmfspublished").read_bytes()
    manifest, doc = parse_manifest(raw)
    assert doc is not None
    assert sign_sha1(key(keys, "key"), doc.hash_line) == doc.signature
    assert manifest.sign(key(keys, "key")) == raw


def test_manifest_signature_is_rsa_sha1_over_the_hash_line(storage: Path, keys: Path) -> None:
    """Independent of our code: PKCS#1 v1.5 with a SHA-1 DigestInfo of the ASCII line."""
    _, doc = parse_manifest((storage / ".cvmfspublished").read_bytes())
    assert doc is not None
    cert_key(keys).verify(doc.signature, doc.hash_line, padding.PKCS1v15(), hashes.SHA1())
    with pytest.raises(InvalidSignature):
        cert_key(keys).verify(doc.signature, doc.letter, padding.PKCS1v15(), hashes.SHA1())


def test_manifest_signature_with_wrong_key_fails(storage: Path, keys: Path) -> None:
    _, doc = parse_manifest((storage / ".cvmfspublished").read_bytes())
    assert doc is not None
    assert verify_manifest_signature(doc, cert_key(keys))
    assert not verify_manifest_signature(doc, public(keys))  # master key is not the signer
    assert not verify_manifest_signature(doc, generate_private_key().public_key())
    assert sign_sha1(key(keys, "masterkey"), doc.hash_line) != doc.signature
    altered = SignedDocument(doc.letter.replace(b"S5\n", b"S6\n"), doc.hash_line,
                             doc.signature)
    assert not verify_manifest_signature(altered, cert_key(keys))


# -- whitelist (spec 5.3) -----------------------------------------------------------------------


def test_whitelist_parse(storage: Path) -> None:
    raw = (storage / ".cvmfswhitelist").read_bytes()
    whitelist, doc = parse_whitelist(raw)
    assert whitelist == Whitelist(
        created=dt.datetime(2026, 11, 24, 17, 15, 53, tzinfo=UTC),
        expires=dt.datetime(2026, 12, 24, 17, 15, 53, tzinfo=UTC),
        fqrn=FQRN,
        fingerprints=(ContentHash.from_fingerprint(
            "CB:83:19:03:42:5D:21:2C:A0:20:A3:7E:49:03:9B:F5:69:3B:3A:92"),),
        pkcs7=False,
        ca_chain=False,
    )
    assert doc.letter == (b"20261124171553\nE20261224171553\nNref.local.repo\n"
                          b"CB:83:19:03:42:5D:21:2C:A0:20:A3:7E:49:03:9B:F5:69:3B:3A:92\n")
    assert whitelist.letter() == doc.letter
    assert doc.hash_line == b"4619e9b402d43a7b21545751d2d8b5e06a30fa74"
    assert len(doc.signature) == 256


def test_whitelist_signature_reproduced_exactly(storage: Path, keys: Path) -> None:
    raw = (storage / ".cvmfswhitelist").read_bytes()
    whitelist, doc = parse_whitelist(raw)
    assert sign_raw(key(keys, "masterkey"), doc.hash_line) == doc.signature
    assert whitelist.sign(key(keys, "masterkey")) == raw


def test_whitelist_signature_is_raw_pkcs1_type1(storage: Path, keys: Path) -> None:
    """Independent of our code: sig^e mod n = 00 01 FF..FF 00 || hash line, no DigestInfo."""
    _, doc = parse_whitelist((storage / ".cvmfswhitelist").read_bytes())
    numbers = public(keys).public_numbers()
    em = pow(int.from_bytes(doc.signature, "big"), numbers.e, numbers.n).to_bytes(256, "big")
    padding_len = 256 - 3 - len(doc.hash_line)
    assert em == b"\x00\x01" + b"\xff" * padding_len + b"\x00" + doc.hash_line


def test_whitelist_signature_with_wrong_key_fails(storage: Path, keys: Path) -> None:
    _, doc = parse_whitelist((storage / ".cvmfswhitelist").read_bytes())
    assert verify_whitelist_signature(doc, [public(keys)])
    assert not verify_whitelist_signature(doc, [cert_key(keys)])
    assert not verify_whitelist_signature(doc, [generate_private_key().public_key()])
    assert verify_whitelist_signature(doc, [cert_key(keys), public(keys)])  # any key may match
    assert not verify_raw(public(keys), doc.hash_line, doc.signature + b"\n")
    altered = SignedDocument(doc.letter.replace(b"E20261224", b"E20271224"), doc.hash_line,
                             doc.signature)
    assert not verify_whitelist_signature(altered, [public(keys)])


@pytest.mark.parametrize("scheme", [sign_sha1, sign_raw])
def test_a_damaged_private_key_signs_nothing(keys: Path, scheme) -> None:
    pem = (keys / f"{FQRN}.masterkey").read_bytes()
    scheme(load_private_key(pem, "key"), b"hash line")  # the intact key signs
    with pytest.raises(KeyMaterialError, match="damaged"):
        scheme(load_private_key(damaged_key_pem(pem), "key"), b"hash line")


def test_whitelist_malformed_times() -> None:
    for letter in (b"2026112417155\nE20261224171553\nNa.b\n",  # 13 digits
                   b"20261124171553\nE2026122417155\nNa.b\n",
                   b"20261124171553\nE20261324171553\nNa.b\n",  # month 13
                   b"20261124171553\n20261224171553\nNa.b\n"):  # no E
        with pytest.raises(FormatError):
            parse_whitelist(letter + b"--\nabc\n")


# -- whitelist expiry at hour granularity (spec 5.3, whitelist.cc IsBefore) ----------------------

FIXTURE_EXPIRY = dt.datetime(2026, 12, 24, 17, 15, 53, tzinfo=UTC)


@pytest.mark.parametrize(("moment", "valid"), [
    (dt.datetime(2026, 11, 24, 17, 15, 53, tzinfo=UTC), True),
    (dt.datetime(2026, 12, 24, 16, 0, 0, tzinfo=UTC), True),
    (dt.datetime(2026, 12, 24, 16, 59, 59, 999999, tzinfo=UTC), True),
    # Same hour as the expiry: already expired, even 15 minutes before the exact second.
    (dt.datetime(2026, 12, 24, 17, 0, 0, tzinfo=UTC), False),
    (dt.datetime(2026, 12, 24, 17, 15, 52, tzinfo=UTC), False),
    (dt.datetime(2026, 12, 24, 17, 59, 59, tzinfo=UTC), False),
    (dt.datetime(2026, 12, 25, 0, 0, tzinfo=UTC), False),
    (dt.datetime(2027, 1, 1, tzinfo=UTC), False),
    # Other time zones are converted to UTC first.
    (dt.datetime(2026, 12, 24, 17, 30, tzinfo=dt.timezone(dt.timedelta(hours=1))), True),
    (dt.datetime(2026, 12, 24, 16, 30, tzinfo=dt.timezone(dt.timedelta(hours=-1))), False),
    # A half-hour zone: the hour is taken after converting (22:45+05:30 is 17:15 UTC).
    (dt.datetime(2026, 12, 24, 22, 29, tzinfo=dt.timezone(dt.timedelta(hours=5.5))), True),
    (dt.datetime(2026, 12, 24, 22, 45, tzinfo=dt.timezone(dt.timedelta(hours=5.5))), False),
])
def test_fixture_whitelist_expiry(storage: Path, moment: dt.datetime, valid: bool) -> None:
    whitelist, _ = parse_whitelist((storage / ".cvmfswhitelist").read_bytes())
    assert whitelist.expires == FIXTURE_EXPIRY
    assert whitelist.valid_at(moment) is valid


def test_expiry_across_a_year_boundary() -> None:
    whitelist = Whitelist(dt.datetime(2026, 12, 2, tzinfo=UTC),
                          dt.datetime(2027, 1, 1, 0, 30, tzinfo=UTC), "a.b", ())
    assert whitelist.valid_at(dt.datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC))
    assert not whitelist.valid_at(dt.datetime(2027, 1, 1, 0, 0, tzinfo=UTC))


def test_expiry_enforced_by_the_trust_chain(storage: Path, keys: Path) -> None:
    store = LocalStorage(storage, read_only=True)
    ok = check_whitelist(store, [public(keys)], FQRN,
                         dt.datetime(2026, 12, 24, 16, 59, 59, tzinfo=UTC))
    assert ok.expires == FIXTURE_EXPIRY
    with pytest.raises(SignatureError, match="whitelist expired on 2026-12-24 17:15:53"):
        check_whitelist(store, [public(keys)], FQRN, dt.datetime(2026, 12, 24, 17, tzinfo=UTC))
    with pytest.raises(SignatureError, match="repository name mismatch"):
        check_whitelist(store, [public(keys)], "other.local.repo",
                        dt.datetime(2026, 12, 1, tzinfo=UTC))


def test_new_whitelist_round_trip(keys: Path) -> None:
    fingerprint = certificate_fingerprint((keys / f"{FQRN}.crt").read_bytes())
    now = dt.datetime(2030, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    signed = Whitelist.new(FQRN, (fingerprint,), now, 30).sign(key(keys, "masterkey"))
    parsed, doc = parse_whitelist(signed)
    assert doc.letter.startswith(b"20300506070809\nE20300605070809\nNref.local.repo\nCB:83:")
    assert verify_whitelist_signature(doc, [public(keys)])
    assert parsed.valid_at(dt.datetime(2030, 6, 5, 6, 59, tzinfo=UTC))
    assert not parsed.valid_at(dt.datetime(2030, 6, 5, 7, 0, tzinfo=UTC))


# -- extended attributes blob (spec 3.8) ---------------------------------------------------------


def test_xattr_blob_layout_and_round_trip() -> None:
    attrs = {"user.b": b"2", "user.a": b"xyz", "security.selinux": b""}
    blob = encode_xattrs(attrs)
    # version 1, count 3, then (len key, len value, key, value) with keys in byte order
    assert blob == (b"\x01\x03"
                    b"\x10\x00security.selinux"
                    b"\x06\x03user.axyz"
                    b"\x06\x01user.b2")
    assert decode_xattrs(blob) == attrs
    assert encode_xattrs({}) is None
    assert decode_xattrs(None) == {}


def test_xattr_limits() -> None:
    longest = {"k" * 255: b"v" * 255}
    assert decode_xattrs(encode_xattrs(longest)) == longest
    for bad in ({"k" * 256: b""}, {"k": b"v" * 256}, {"": b"v"}, {"a\0b": b"v"}):
        with pytest.raises(FormatError):
            encode_xattrs(bad)
    blob = encode_xattrs({"user.a": b"1"})
    assert blob is not None
    with pytest.raises(FormatError):
        decode_xattrs(blob[:-1])
    with pytest.raises(FormatError):
        decode_xattrs(b"\x02" + blob[1:])


# -- chunk cut points (spec 2.5, upstream's Xor32Detector) --------------------------------------


def reference_cut_points(data: bytes, min_size: int, avg_size: int, max_size: int) -> list[int]:
    """The spec's pseudocode, byte by byte: chunk ends (exclusive) for the whole file."""
    magic, threshold = 0x7FFFFFFF, 0xFFFFFFFF // avg_size
    cuts, start = [], 0
    while len(data) - start > min_size:
        x = 0
        for byte in data[start + min_size - 32:start + min_size]:
            x = ((x << 1) ^ byte) & 0xFFFFFFFF
        cut, p = None, start + min_size
        while p < start + max_size and p < len(data):
            x = ((x << 1) ^ data[p]) & 0xFFFFFFFF
            d = (x - magic) & 0xFFFFFFFF
            d = d - (1 << 32) if d >= 1 << 31 else d  # signed32, wrapping
            if (abs(d) if d != -(1 << 31) else d) < threshold:  # abs32(INT32_MIN) < 0
                cut = p
                break
            p += 1
        if cut is None:
            cut = start + max_size if p == start + max_size else len(data)
        cuts.append(cut)
        start = cut
    if start < len(data) or not cuts:
        cuts.append(len(data))
    return cuts


@pytest.mark.parametrize("kind", ["random", "zeros", "text", "ones", "int32-min"])
def test_chunk_cut_points_follow_upstream(kind: str) -> None:
    rng = random.Random(7)
    size = 300_000
    data = {
        "random": bytes(rng.getrandbits(8) for _ in range(size)),
        "zeros": bytes(size),
        "text": b"".join(b"line %d of some text\n" % i for i in range(size // 20))[:size],
        "ones": b"\xff" * size,
        # A window of 32 bytes 0x01 gives x == 0xFFFFFFFF: d == INT32_MIN, whose abs32()
        # stays negative, so upstream cuts right at the minimum size every time.
        "int32-min": b"\x01" * size,
    }[kind]
    policy = ChunkPolicy(min_size=1024, avg_size=4096, max_size=16384)
    pieces = list(split(io.BytesIO(data).read, policy))
    assert b"".join(pieces) == data
    ends, offset = [], 0
    for piece in pieces:
        offset += len(piece)
        ends.append(offset)
    expected = reference_cut_points(data, 1024, 4096, 16384)
    assert ends == expected
    if kind == "random":
        assert len(expected) > 20  # many content-defined cuts, not just max-size ones
    if kind == "int32-min":
        assert expected[:3] == [1024, 2048, 3072]


def window_for(x: int) -> bytes:
    """32 bytes of 0/1 after which the rolling state is exactly ``x`` (bit k = byte p-k)."""
    return bytes((x >> k) & 1 for k in range(31, -1, -1))


@pytest.mark.parametrize(("x", "cut"), [
    (0x7FFFFFFF + 510, True),  # abs32(x - MAGIC) = 510 < 511
    (0x7FFFFFFF - 510, True),
    (0x7FFFFFFF + 511, False),
    (0x7FFFFFFF - 511, False),
])
def test_chunk_cut_threshold_edges(x: int, cut: bool) -> None:
    """The cut test at its exact edges, with the 8 MiB average's threshold (511).

    Zeros keep the state far from MAGIC; a crafted window brings it to ``x`` at byte 2031;
    ten more zeros only shift it (no later position comes near MAGIC either).
    """
    policy = ChunkPolicy(min_size=1024, avg_size=8 << 20, max_size=16 << 20)
    assert policy.threshold == 511
    data = bytes(2000) + window_for(x) + bytes(10)
    expected = [2031, len(data)] if cut else [len(data)]
    assert reference_cut_points(data, 1024, 8 << 20, 16 << 20) == expected
    ends, offset = [], 0
    for piece in split(io.BytesIO(data).read, policy):
        offset += len(piece)
        ends.append(offset)
    assert ends == expected
