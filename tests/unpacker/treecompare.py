"""Comparing a published flat tree (read back like a client) with ``umoci unpack``'s rootfs.

Compared per path: type, permission bits, uid/gid, mtime (seconds, directories too),
size and sha256 of files, symlink targets, device numbers, ``user.*`` xattrs, and link
counts. CVMFS keeps hard-link groups only within one directory (a catalog row's
``hardlink_group`` is per directory), so a file's expected link count is the number of
names of its inode in the same directory; directories keep ``2 + subdirectories``.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
from collections import Counter
from pathlib import Path

from cvmfs_publisher.cvmfs.catalog import decode_xattrs
from cvmfs_publisher.engine.reader import RepositoryReader
from cvmfs_publisher.engine.views import client_view

IGNORED = {".cvmfscatalog"}
_KINDS = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink",
          stat.S_IFIFO: "fifo", stat.S_IFCHR: "chardev", stat.S_IFBLK: "blockdev"}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _user_xattrs(path: Path) -> dict[str, bytes]:
    names = os.listxattr(path, follow_symlinks=False)
    return {n: os.getxattr(path, n, follow_symlinks=False) for n in names
            if n.startswith("user.")}


def oracle_view(root: Path) -> dict[str, dict]:
    stats: dict[str, os.stat_result] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            full = Path(dirpath) / name
            stats[str(full.relative_to(root))] = full.lstat()
    per_dir = Counter((os.path.dirname(p), s.st_ino) for p, s in stats.items()
                      if stat.S_ISREG(s.st_mode))
    view = {}
    for rel, st in stats.items():
        full = root / rel
        kind = _KINDS[stat.S_IFMT(st.st_mode)]
        item = {"path": rel, "type": kind, "mode": oct(stat.S_IMODE(st.st_mode)),
                "uid": st.st_uid, "gid": st.st_gid, "mtime": int(st.st_mtime),
                "xattrs": _user_xattrs(full)}
        if kind == "file":
            item.update(size=st.st_size, sha256=_sha256(full),
                        nlink=per_dir[(os.path.dirname(rel), st.st_ino)])
        elif kind == "dir":
            item["nlink"] = st.st_nlink
        elif kind == "symlink":
            item["target"] = os.readlink(full)
        elif kind in ("chardev", "blockdev"):
            item.update(major=os.major(st.st_rdev), minor=os.minor(st.st_rdev))
        view[rel] = item
    return view


def published_view(reader: RepositoryReader, top: str) -> dict[str, dict]:
    xattrs = {path[len(top) + 1:]: decode_xattrs(entry.xattr)
              for path, entry in reader.walk(top) if path != top}
    view = {}
    for item in client_view(reader, top):
        if os.path.basename(item["path"]) in IGNORED and "/" not in item["path"]:
            continue
        item["xattrs"] = {k: v for k, v in xattrs[item["path"]].items()
                          if k.startswith("user.")}
        view[item["path"]] = item
    return view


def root_differences(reader: RepositoryReader, top: str, root: Path) -> list[str]:
    entry = reader.require(top).entry
    st = root.lstat()
    problems = []
    for field, ours, theirs in (("mode", stat.S_IMODE(entry.mode), stat.S_IMODE(st.st_mode)),
                                ("uid", entry.uid, st.st_uid), ("gid", entry.gid, st.st_gid),
                                ("mtime", entry.mtime, int(st.st_mtime))):
        if ours != theirs:
            problems.append(f"<root>: {field} {ours!r} != oracle {theirs!r}")
    return problems


def differences(ours: dict[str, dict], theirs: dict[str, dict]) -> list[str]:
    problems = []
    for path in sorted(set(ours) | set(theirs)):
        a, b = ours.get(path), theirs.get(path)
        if a is None:
            problems.append(f"{path}: missing from the published tree")
            continue
        if b is None:
            problems.append(f"{path}: published but not in umoci's rootfs")
            continue
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                problems.append(f"{path}: {key} {a.get(key)!r} != oracle {b.get(key)!r}")
    return problems


def flat_of(reader, name: str, prefix: str = "") -> str:
    link = f"{prefix}/{name}"
    target = reader.require(link).entry.symlink
    return posixpath.normpath(posixpath.join(posixpath.dirname(link), target))
