"""The ``unpack`` and ``unpack-gc`` commands end to end: wishlist in, verified repository out."""

from __future__ import annotations

import json

from cvmfs_publisher.cli import main


def run(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_unpack_wishlist_then_rerun_then_gc(images, tmp_path, capsys) -> None:
    code, _, err = run(capsys, "init", "unpacked.example.org", "--storage", tmp_path / "s0")
    assert code == 0, err
    wishlist = tmp_path / "wishlist.yaml"
    wishlist.write_text(f"version: 1\ncvmfs_repo: unpacked.example.org\ninput:\n"
                        f"  - '{images.refs['oci']}'\n")
    code, out, err = run(capsys, "unpack", wishlist, "--repo", "unpacked.example.org",
                         "--compression-level", "1")
    assert code == 0, err
    assert "unpacked" in out and "1 converted" in out
    code, out, _ = run(capsys, "unpack", wishlist, "--repo", "unpacked.example.org", "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] and report["revisions"] == []  # nothing to publish
    assert run(capsys, "verify", "--repo", "unpacked.example.org")[0] == 0
    listing = json.loads(run(capsys, "ls", "/", "--repo", "unpacked.example.org", "--json")[1])
    assert ".flat" in {item["path"] for item in listing}
    wishlist.write_text("version: 1\ncvmfs_repo: unpacked.example.org\ninput: []\n")
    assert run(capsys, "unpack", wishlist, "--repo", "unpacked.example.org")[0] == 0
    code, out, _ = run(capsys, "unpack-gc", "--repo", "unpacked.example.org", "--grace", "0s")
    assert code == 0 and "removed 1 images" in out
    assert run(capsys, "verify", "--repo", "unpacked.example.org")[0] == 0


def test_bad_wishlist_names_the_line(tmp_path, capsys) -> None:
    assert run(capsys, "init", "unpacked.example.org", "--storage", tmp_path / "s0")[0] == 0
    wishlist = tmp_path / "wishlist.yaml"
    wishlist.write_text("version: 1\ncvmfs_repo: unpacked.example.org\ninput:\n  - 42\n")
    code, _, err = run(capsys, "unpack", wishlist, "--repo", "unpacked.example.org")
    assert code != 0 and "wishlist.yaml:4" in err and len(err.strip().splitlines()) == 1
