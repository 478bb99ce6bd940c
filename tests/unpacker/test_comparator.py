"""The flat tree of every test image equals what ``umoci unpack`` makes of it."""

from __future__ import annotations

import pytest
from treecompare import differences, flat_of, oracle_view, published_view, root_differences

from unpacker.runs import run_unpack


@pytest.fixture(scope="module")
def oracle(images):
    return oracle_view(images.oracle)


@pytest.mark.parametrize("kind", ["oci", "docker", "zstd", "multi", "multi-docker"])
def test_flat_tree_equals_umoci_unpack(kind, images, oracle, make_repo):
    repo = make_repo()
    report = run_unpack(repo, None, [images.refs[kind]])
    assert report.ok, [o.detail for o in report.failed]
    assert [o.status for o in report.outcomes] == ["unpacked"]
    reader = repo.repository.reader()
    name = images.refs[kind]
    top = flat_of(reader, name)
    assert top.startswith("/.flat/")
    ours = published_view(reader, top)
    problems = differences(ours, oracle) + root_differences(reader, top, images.oracle)
    assert not problems, "\n".join(problems)
    assert len(ours) == len(oracle) >= 38
