"""Sync runs against a real registry into a real native repository: layout, re-runs, moves."""

from __future__ import annotations

import datetime as dt
import json
import posixpath

import imagekit as kit
import requests
from treecompare import flat_of

from unpacker.runs import run_gc, run_unpack


def _wishlist(tmp_path, inputs: list[str], extra: str = "", repo: str = "unpacked.example.org"):
    path = tmp_path / "wishlist.yaml"
    lines = ["version: 1", f"cvmfs_repo: {repo}", "input:"]
    lines += [f"  - '{i}'" for i in inputs]
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def _revision(repo) -> int:
    return repo.repository.head().manifest.revision


def _read(reader, path: str) -> bytes:
    return b"".join(reader.read(path))


def _statuses(report) -> dict[str, str]:
    return {o.image: o.status for o in report.outcomes}


def test_wishlist_layout_rerun_and_verify(images, make_repo, tmp_path):
    host = images.plain
    wishlist = _wishlist(tmp_path, [images.refs["oci"], images.refs["docker"],
                                    f"http://{host}/test/small:v*"])
    repo = make_repo()
    report = run_unpack(repo, wishlist, [])
    assert report.ok, [o.detail for o in report.failed]
    statuses = _statuses(report)
    assert statuses[images.refs["oci"]] == "unpacked"
    # The schema2 push has the same config digest: linked to the same flat, not unpacked.
    assert statuses[images.refs["docker"]] == "relinked"
    assert {n for n in statuses if "/test/small:" in n} == {
        f"{host}/test/small:v0", f"{host}/test/small:v1", f"{host}/test/small:v2"}
    reader = repo.repository.reader()
    name = images.refs["oci"]
    link = reader.require(f"/{name}").entry
    assert link.is_symlink and link.symlink.startswith("../../.flat/")
    flat = flat_of(reader, name)
    assert flat == flat_of(reader, images.refs["docker"])
    config_hex = flat.rsplit("/", 1)[1]
    assert flat == f"/.flat/{config_hex[:2]}/{config_hex}"
    # One nested catalog for .flat, one per image.
    mountpoints = {ref.path for ref in reader.catalog_for("/.flat").nested()}
    assert flat in mountpoints
    assert "/.flat" in {ref.path for ref in reader.root_catalog().nested()}
    served = requests.get(f"http://{host}/v2/test/img/manifests/1.0", timeout=10, headers={
        "Accept": "application/vnd.oci.image.manifest.v1+json"}).content
    assert _read(reader, f"/.metadata/{name}/manifest.json") == served
    state = json.loads(_read(reader, f"/.metadata/{name}/unpack.json"))
    assert state["flats"] == {"": f"sha256:{config_hex}"} and state["unwished_since"] is None
    assert repo.repository.verify().ok, repo.repository.verify().problems
    revision = _revision(repo)
    again = run_unpack(repo, wishlist, [])
    assert again.ok and not again.revisions
    assert set(_statuses(again).values()) == {"unchanged"}
    assert _revision(repo) == revision


def _push_moving(host: str, content: bytes, tag: str = "latest") -> None:
    tar = kit.tar_bytes([kit.member("content.txt", data=content)])
    kit.Pusher(f"http://{host}").image("test/moving", tag, [(kit.gz(tar), kit.LAYER_GZIP, tar)],
                                      config_extra={"author": content.decode()})


def test_tag_move_unwish_and_gc(images, make_repo, tmp_path):
    host = images.plain
    ref = f"{host}/test/moving:latest"
    _push_moving(host, b"first")
    wishlist = _wishlist(tmp_path, [ref, f"{host}/test/small:v0"])
    repo = make_repo()
    assert run_unpack(repo, wishlist, []).ok
    reader = repo.repository.reader()
    old_flat = flat_of(reader, ref)
    _push_moving(host, b"second")
    report = run_unpack(repo, wishlist, [])
    assert _statuses(report)[ref] == "unpacked"
    reader = repo.repository.reader()
    new_flat = flat_of(reader, ref)
    assert new_flat != old_flat
    assert _read(reader, f"{new_flat}/content.txt") == b"second"
    assert reader.lookup(old_flat) is not None  # kept for running containers
    released = json.loads(_read(reader, "/.metadata/.gc/released.json"))
    assert f"sha256:{old_flat.rsplit('/', 1)[1]}" in released

    week = dt.timedelta(days=7)
    kept = run_gc(repo, week, dry_run=False)
    assert not kept.removed_flats and kept.kept_flats
    later = dt.datetime.now().timestamp() + 8 * 86400
    revision = _revision(repo)
    dry = run_gc(repo, week, dry_run=True, now=later)
    assert dry.removed_flats and _revision(repo) == revision
    assert repo.repository.reader().lookup(old_flat) is not None
    gone = run_gc(repo, week, dry_run=False, now=later)
    assert gone.removed_flats == [f"sha256:{old_flat.rsplit('/', 1)[1]}"]
    reader = repo.repository.reader()
    assert reader.lookup(old_flat) is None and reader.lookup(new_flat) is not None

    # Drop the moving image from the wishlist: marked once, collected after the grace.
    wishlist = _wishlist(tmp_path, [f"{host}/test/small:v0"])
    report = run_unpack(repo, wishlist, [])
    assert _statuses(report)[ref] == "unwished"
    revision = _revision(repo)
    assert not run_unpack(repo, wishlist, []).revisions and _revision(repo) == revision
    assert not run_gc(repo, week, dry_run=False).removed_images
    result = run_gc(repo, week, dry_run=False, now=later)
    assert result.removed_images == [ref]
    assert f"sha256:{new_flat.rsplit('/', 1)[1]}" in result.removed_flats
    reader = repo.repository.reader()
    for path in (f"/{ref}", f"/.metadata/{ref}", new_flat):
        assert reader.lookup(path) is None, path
    assert reader.lookup(f"/{host}/test/small:v0") is not None
    assert repo.repository.verify().ok


def test_rewished_image_is_kept(images, make_repo, tmp_path):
    host = images.plain
    small = [f"{host}/test/small:v0", f"{host}/test/small:v1"]
    repo = make_repo()
    assert run_unpack(repo, _wishlist(tmp_path, small), []).ok
    report = run_unpack(repo, _wishlist(tmp_path, small[:1]), [])
    assert _statuses(report)[small[1]] == "unwished"
    report = run_unpack(repo, _wishlist(tmp_path, small), [])
    assert _statuses(report)[small[1]] == "rewished"
    later = dt.datetime.now().timestamp() + 30 * 86400
    assert not run_gc(repo, dt.timedelta(days=7), dry_run=False, now=later).removed_images


def test_multiarch_layout(images, make_repo):
    repo = make_repo()
    name = images.refs["multi"]
    report = run_unpack(repo, None, [name], platforms=["all"])
    assert report.ok, [o.detail for o in report.failed]
    reader = repo.repository.reader()
    assert reader.require(f"/{name}").entry.symlink == \
        f"../../.multiarch/$(CVMFS_ARCH:-amd64)/{name}"
    flats = {}
    for key in ("amd64", "arm64:v8", "arm:v7"):
        link = f"/.multiarch/{key}/{name}"
        target = reader.require(link).entry.symlink
        flats[key] = posixpath.normpath(posixpath.join(posixpath.dirname(link), target))
        assert flats[key].startswith("/.flat/")
        assert reader.lookup(f"/.metadata/.multiarch/{key}/{name}/manifest.json")
    assert len(set(flats.values())) == 3  # three configs (architectures differ)
    assert reader.lookup("/.multiarch/unknown") is None  # the attestation entry is skipped
    for alias, canonical in (("x86_64", "amd64"), ("aarch64", "arm64:v8"),
                             ("arm64", "arm64:v8"), ("armhf", "arm:v7")):
        assert reader.require(f"/.multiarch/{alias}").entry.symlink == canonical
    index = json.loads(_read(reader, f"/.metadata/{name}/manifest.json"))
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert repo.repository.verify().ok

    # One platform of the list: a plain link to that platform's flat.
    other = make_repo()
    report = run_unpack(other, None, [images.refs["multi-docker"]], platforms=["aarch64"])
    assert report.ok, [o.detail for o in report.failed]
    arm = flat_of(other.repository.reader(), images.refs["multi-docker"])
    assert arm.rsplit("/", 1)[1] == flats["arm64:v8"].rsplit("/", 1)[1]
    default = make_repo()
    assert run_unpack(default, None, [images.refs["multi"]]).ok
    assert flat_of(default.repository.reader(), images.refs["multi"]) == flats["amd64"]


def test_failing_images_do_not_block_others(images, make_repo, tmp_path):
    host = images.plain
    hostile = [f"{host}/test/hostile:{tag}" for tag in kit.hostile_layers()]
    good = f"{host}/test/small:v0"
    repo = make_repo()
    report = run_unpack(repo, None, [*hostile, f"{host}/test/bad:diffid",
                                     f"{host}/test/nosuch:1", good], batch_size=3)
    statuses = _statuses(report)
    assert statuses[good] == "unpacked"
    assert not report.ok
    details = {o.image: o.detail for o in report.failed}
    assert set(details) == {*hostile, f"{host}/test/bad:diffid", f"{host}/test/nosuch:1"}
    assert "'..'" in details[f"{host}/test/hostile:dotdot"]
    assert "absolute" in details[f"{host}/test/hostile:absolute"]
    assert "symlink" in details[f"{host}/test/hostile:symlink-abs"]
    assert "symlink" in details[f"{host}/test/hostile:symlink-rel"]
    assert "does not exist" in details[f"{host}/test/hostile:hardlink-missing"]
    assert "'..'" in details[f"{host}/test/hostile:hardlink-outside"]
    assert "diff_id" in details[f"{host}/test/bad:diffid"] or \
        "config says" in details[f"{host}/test/bad:diffid"]
    for image, detail in details.items():
        if "hostile" in image:
            assert image.rsplit("/", 1)[1].replace("hostile:", "") in detail or \
                "test/hostile" in detail, detail
    reader = repo.repository.reader()
    assert reader.lookup(f"/{good}") is not None
    for image in hostile:
        assert reader.lookup(f"/{image}") is None
        assert reader.lookup(f"/.metadata/{image}") is None
    assert not any(p.startswith("/.flat/") and p.count("/") == 3 and
                   reader.lookup(f"{p}/ok.txt") for p, _ in reader.walk("/.flat"))
    assert repo.repository.verify().ok
    # Declared flaky: the same failures only warn.
    wishlist = _wishlist(tmp_path, [f"{host}/test/hostile:dotdot", good],
                         extra=f"ignoreErrors:\n  - '*://{host}/test/hostile:*'\n")
    assert run_unpack(make_repo(), wishlist, []).ok


def test_prefix_loop_and_repository_check(images, make_repo, tmp_path):
    import pytest

    from cvmfs_publisher.errors import UsageError
    host = images.plain
    repo = make_repo()
    wishlist = _wishlist(tmp_path, [f"{host}/test/small:v1"],
                         repo="unpacked.example.org/images/sub")
    rounds = []
    report = run_unpack(repo, wishlist, [], loop=True, interval=0,
                        should_stop=lambda: len(rounds) >= 2, on_round=rounds.append)
    assert [o.status for o in rounds[0].outcomes] == ["unpacked"]
    assert [o.status for o in report.outcomes] == ["unchanged"] and len(rounds) == 2
    reader = repo.repository.reader()
    name = f"{host}/test/small:v1"
    assert flat_of(reader, name, "/images/sub").startswith("/images/sub/.flat/")
    assert reader.lookup(f"/images/sub/.metadata/{name}/manifest.json") is not None
    assert reader.lookup(f"/{name}") is None
    gc = run_gc(repo, dt.timedelta(0), dry_run=True, prefix="images/sub")
    assert not gc.removed_flats and not gc.removed_images
    with pytest.raises(UsageError, match="cvmfs_repo"):
        run_unpack(repo, _wishlist(tmp_path, [name], repo="other.example.org"), [])


def test_hard_link_to_a_file_whited_out_in_the_same_layer(images, make_repo):
    f, lnk = kit.tarfile.REGTYPE, kit.tarfile.LNKTYPE
    lower = kit.tar_bytes([kit.member("x.txt", f, b"lower x\n"), kit.member("keep.txt", f,
                                                                             b"k\n")])
    upper = kit.tar_bytes([kit.member("y.txt", lnk, linkname="x.txt"),
                           kit.member(".wh.x.txt"), kit.member(".wh.keep.txt")])
    host = images.plain
    kit.Pusher(f"http://{host}").image("test/edge", "link-before-whiteout", [
        (kit.gz(lower), kit.LAYER_GZIP, lower), (kit.gz(upper), kit.LAYER_GZIP, upper)])
    repo = make_repo()
    name = f"{host}/test/edge:link-before-whiteout"
    assert run_unpack(repo, None, [name]).ok
    reader = repo.repository.reader()
    flat = flat_of(reader, name)
    assert _read(reader, f"{flat}/y.txt") == b"lower x\n"
    assert reader.lookup(f"{flat}/x.txt") is None and reader.lookup(f"{flat}/keep.txt") is None


def test_single_manifest_in_multiarch_mode(images, make_repo):
    repo = make_repo()
    name = images.refs["oci"]
    assert run_unpack(repo, None, [name], platforms=["amd64", "arm64"]).ok
    reader = repo.repository.reader()
    assert reader.require(f"/.multiarch/amd64/{name}").entry.is_symlink
    assert reader.require("/.multiarch/x86_64").entry.symlink == "amd64"
    assert "$(CVMFS_ARCH:-amd64)" in reader.require(f"/{name}").entry.symlink
