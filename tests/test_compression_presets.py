"""Compression presets: whatever deflates, every object is a zlib stream stock zlib inflates,
named by the hash of its stored bytes, and the repository verifies."""

from __future__ import annotations

import os
import random
import zlib
from pathlib import Path

import pytest

from cvmfs_publisher.cvmfs.compression import (
    PRESETS,
    FormatError,
    deflater,
    encode,
    inflate,
    stored_bound,
)
from cvmfs_publisher.cvmfs.hashes import ContentHash, parse_object_key
from cvmfs_publisher.engine.chunking import ChunkPolicy
from cvmfs_publisher.engine.options import EngineOptions
from cvmfs_publisher.engine.repository import NativeRepository
from cvmfs_publisher.sources import open_source
from cvmfs_publisher.storage.local import LocalStorage

NAME = "presets.example.org"


def contents() -> dict[str, bytes]:
    rng = random.Random(13)
    words = [bytes(rng.choices(range(97, 123), k=rng.randint(2, 9))) for _ in range(300)]
    text = b" ".join(rng.choice(words) for _ in range(200_000))
    return {"empty": b"", "one": b"x", "text": text[:300_000], "random": rng.randbytes(70_000),
            "zeros": bytes(1 << 20), "big/chunked.bin": text + rng.randbytes(1 << 20)}


@pytest.mark.parametrize("preset", PRESETS)
def test_every_object_inflates_with_stock_zlib_and_verifies(tmp_path: Path, preset: str) -> None:
    src = tmp_path / "src"
    for rel, data in contents().items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    options = EngineOptions(cache_dir=tmp_path / "cache", compression=preset,
                            chunking=ChunkPolicy(256 << 10, 512 << 10, 1 << 20))
    repo = NativeRepository(LocalStorage(tmp_path / "repo"), NAME, keys_dir=tmp_path / "keys",
                            options=options)
    repo.create()
    with repo.transaction() as txn:
        txn.replace("/data", open_source(src)[0])
        txn.commit()
    assert repo.verify().problems == []
    reader = repo.reader()
    for rel, data in contents().items():
        assert b"".join(reader.read(f"/data/{rel}")) == data
    assert any(key.endswith("P") for key in repo.storage.list("data/"))  # chunks were made
    objects = [key for key in repo.storage.list("data/")]
    assert len(objects) > 10
    for key in objects:
        stored = repo.storage.get(key)
        content_hash, _suffix = parse_object_key(key)
        assert ContentHash.of(stored, content_hash.algorithm) == content_hash, key
        zlib.decompress(stored)  # stock zlib takes every object, catalogs included


@pytest.mark.parametrize("preset", PRESETS)
def test_streams_are_zlib_and_stay_within_the_bound(preset: str) -> None:
    deflate = deflater(preset)
    rng = random.Random(5)
    for data in (b"", b"a", rng.randbytes(100_000), bytes(300_000), os.urandom(1 << 20)):
        stored = deflate(data)
        assert zlib.decompress(stored) == data
        assert len(stored) <= stored_bound(len(data))
        assert b"".join(inflate([stored], len(data))) == data
    # the empty object is upstream's, whatever the preset
    assert deflate(b"") == zlib.compress(b"", 6)


def test_zlib_preset_is_stock_zlib_at_the_level() -> None:
    data = b"".join(b"line %d\n" % i for i in range(50_000))
    for level in (1, 6, 9):
        assert deflater("zlib", level)(data) == zlib.compress(data, level)
    _hash, stored = encode(data, deflate=deflater("zlib"))
    assert stored == zlib.compress(data, 6)


def test_each_preset_is_its_own_compressor() -> None:
    """Sizes and speeds are bench/publish.py's business; here: three different encoders,
    each of which really compresses."""
    data = b"".join(b"%d: some repetitive text of a config file\n" % (i * 7919 % 1000)
                    for i in range(40_000))
    stored = {preset: deflater(preset)(data) for preset in PRESETS}
    assert len(set(stored.values())) == len(PRESETS)
    assert all(len(s) < len(data) // 4 for s in stored.values())


def test_inflating_stays_bounded_with_the_fast_inflater() -> None:
    bomb = zlib.compress(bytes(64 << 20), 9)
    pieces = 0
    with pytest.raises(FormatError, match="more than"):
        for piece in inflate([bomb], 3 << 20):
            assert len(piece) <= 1 << 20
            pieces += 1
    assert pieces <= 3
    with pytest.raises(FormatError, match="truncated"):
        list(inflate([bomb[:-10]], 1 << 30))


def test_unknown_preset_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="compression must be one of"):
        EngineOptions(cache_dir=tmp_path, compression="lz4")


def test_preset_from_config_and_command_line(cli, tmp_path: Path) -> None:
    """``init --compression`` is recorded in the config; ``publish --compression`` wins
    for one run: the zlib preset's objects are stock zlib at level 6, the others' are not."""
    data = b"".join(b"%d: text that deflaters encode differently\n" % (i * 31 % 977)
                    for i in range(20_000))
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "file.txt").write_bytes(data)
    assert cli("init", NAME, "--storage", tmp_path / "s0", "--compression", "fast").code == 0
    assert "compression: fast" in (tmp_path / "home" / "config" / "cvmfs-publisher" /
                                   "config.yaml").read_text()


    def zlib_object(content: bytes) -> Path:
        return tmp_path / "s0" / NAME / ContentHash.of(zlib.compress(content, 6)).object_key()

    assert cli("publish", tmp_path / "src", "--path", "/fast", "--repo", NAME).code == 0
    assert not zlib_object(data).exists()  # the config's preset: not zlib's bytes
    assert cli("cat", "/fast/file.txt", "--repo", NAME).out.encode() == data
    (tmp_path / "src" / "file.txt").write_bytes(data + b"more")  # new content: new object
    result = cli("publish", tmp_path / "src", "--path", "/zlib", "--repo", NAME,
                 "--compression", "zlib")
    assert result.code == 0, result.err
    assert zlib_object(data + b"more").exists()  # this run's preset: upstream's object
    refused = cli("publish", tmp_path / "src", "--path", "/x", "--repo", NAME,
                  "--compression", "lz4")
    assert refused.code != 0 and "lz4" in refused.err
