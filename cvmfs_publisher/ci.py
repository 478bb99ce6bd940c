"""Git refs to repository paths: what a CI job (or a git hook) publishes, and where.

A tag matching the release pattern (``x.y.z``) publishes ``/sw/<project>/<tag>`` once,
tagged ``<project>-<tag>``; the default branch publishes the nightly path, replaced
each time (optionally dated, older dated nightlies pruned in the same revision);
anything else publishes nothing and says why. The decision reads only GitLab's
predefined variables, so a ``post-receive`` hook can make the same one from a ref update.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .cvmfs.names import display, normalize_path
from .entries import Entry
from .errors import SignatureError, UsageError
from .publisher import CommitResult, Progress, Publisher
from .releases.artifacts import refuse_existing, without_devices
from .releases.provenance import Provenance
from .releases.signatures import verify_tag
from .releases.trust import TrustStore
from .sources import open_source

RELEASE_PATTERN = r"\d+\.\d+\.\d+"
PATH_TEMPLATE = "/sw/{project}/{version}"
RELEASE, NIGHTLY = "release", "nightly"


@dataclass(frozen=True)
class CiEnvironment:
    """GitLab's predefined variables that decide a publish."""

    tag: str = ""
    branch: str = ""
    default_branch: str = ""
    sha: str = ""
    project_path: str = ""
    ref_protected: bool = False
    pipeline_url: str = ""

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> CiEnvironment:
        return cls(environ.get("CI_COMMIT_TAG", ""), environ.get("CI_COMMIT_BRANCH", ""),
                   environ.get("CI_DEFAULT_BRANCH", ""), environ.get("CI_COMMIT_SHA", ""),
                   environ.get("CI_PROJECT_PATH", ""),
                   environ.get("CI_COMMIT_REF_PROTECTED", "") == "true",
                   environ.get("CI_PIPELINE_URL", ""))


@dataclass(frozen=True)
class CiRules:
    project: str
    release_pattern: str = RELEASE_PATTERN
    path_template: str = PATH_TEMPLATE
    nightly: bool = True
    nightly_name: str = "nightly"
    dated: bool = False
    keep_nightlies: int | None = None
    allow_unprotected: bool = False


@dataclass(frozen=True)
class CiPlan:
    kind: str | None  # RELEASE, NIGHTLY, or None: nothing to publish
    reason: str
    path: str = ""
    tag: str | None = None
    prune: list[str] = field(default_factory=list)


def plan(env: CiEnvironment, rules: CiRules, today: dt.date | None = None) -> CiPlan:
    if env.tag:
        return _release_plan(env, rules)
    if not env.branch:
        return CiPlan(None, "neither CI_COMMIT_TAG nor CI_COMMIT_BRANCH is set: not a CI job?")
    if env.branch != env.default_branch:
        return CiPlan(None, f"branch {env.branch} is not the default branch "
                            f"({env.default_branch or 'unknown'}): nothing to publish")
    if not rules.nightly:
        return CiPlan(None, f"nightlies of {env.branch} are switched off")
    stamp = (today or dt.datetime.now(dt.UTC).date()).isoformat()
    version = f"{rules.nightly_name}-{stamp}" if rules.dated else rules.nightly_name
    return CiPlan(NIGHTLY, f"default branch {env.branch}: nightly",
                  _path(rules, version))


def _release_plan(env: CiEnvironment, rules: CiRules) -> CiPlan:
    if not re.fullmatch(rules.release_pattern, env.tag):
        return CiPlan(None, f"tag {env.tag} does not match the release pattern "
                            f"{rules.release_pattern}: nothing to publish")
    if not env.ref_protected and not rules.allow_unprotected:
        raise UsageError(f"tag {env.tag} is not protected (CI_COMMIT_REF_PROTECTED is not "
                         "'true'): releases come from protected tags only")
    return CiPlan(RELEASE, f"release tag {env.tag}", _path(rules, env.tag),
                  f"{rules.project}-{env.tag}")


def _path(rules: CiRules, version: str) -> str:
    try:
        path = rules.path_template.format(project=rules.project, version=version)
    except (KeyError, IndexError, ValueError) as exc:
        raise UsageError(f"path template {rules.path_template!r}: {exc}") from None
    normalized = normalize_path(path)
    if not normalized:
        raise UsageError(f"path template {rules.path_template!r} names the root")
    return normalized


def dated_nightlies_to_prune(publisher: Publisher, path: str, rules: CiRules) -> list[str]:
    """Sibling ``<nightly_name>-<date>`` directories beyond the newest ``keep_nightlies``."""
    if not rules.dated or rules.keep_nightlies is None:
        return []
    parent, _, name = path.rpartition("/")
    pattern = re.compile(re.escape(rules.nightly_name) + r"-\d{4}-\d{2}-\d{2}")
    with publisher.view() as view:
        found = view.lookup(parent) if parent else None
        siblings = [c.name for c in view.listdir(parent)] if found and found.is_directory \
            else []
    dated = sorted({n for n in siblings if pattern.fullmatch(n)} | {name}, reverse=True)
    return [f"{parent}/{n}" for n in dated[rules.keep_nightlies:] if n != name]


@dataclass
class CiPublish:
    """Everything a CI publish needs besides the plan."""

    publisher: Publisher
    trust: TrustStore
    env: CiEnvironment
    rules: CiRules
    checkout: Path = Path(".")
    require_signed_tag: bool = False
    force: bool = False
    message: str = ""

    def run(self, artifact: Path, chosen: CiPlan, progress: Progress | None = None
            ) -> CommitResult:
        assert chosen.kind is not None
        signer = self._checked(chosen)
        entries, _ = open_source(artifact)
        if chosen.kind == RELEASE:
            entries = without_devices(entries, str(artifact))
        record = Provenance(signer=signer, git=self.env.sha or None,
                            ref=self.env.tag or self.env.branch or None,
                            pipeline=self.env.pipeline_url or None)
        prune = dated_nightlies_to_prune(self.publisher, chosen.path, self.rules) \
            if chosen.kind == NIGHTLY else []
        return self._publish(chosen, entries, prune, record, progress)

    def _checked(self, chosen: CiPlan) -> str | None:
        if chosen.kind != RELEASE:
            return None
        if not self.force:
            refuse_existing(self.publisher, chosen.path)
        if not self.require_signed_tag:
            return None
        with self.trust.keyring() as gpg:
            signer = verify_tag(gpg, self.checkout, self.env.tag, self.env.sha or None)
        if self.trust.granted(signer, chosen.path) is None:
            raise SignatureError(f"tag {self.env.tag} is signed by {signer}, which is not "
                                 f"trusted to publish under {display(chosen.path)}")
        return signer

    def _publish(self, chosen: CiPlan, entries: Iterable[Entry], prune: list[str],
                 record: Provenance, progress: Progress | None) -> CommitResult:
        text = self.message or f"{chosen.kind} of {self.rules.project}"
        with self.publisher.session(wait=True, progress=progress) as session:
            session.replace(chosen.path, entries)
            for old in prune:
                session.remove(old)
            return session.commit(chosen.tag, record.describe(text))


def ref_updates(lines: Iterable[str]) -> Iterator[tuple[str, str, str]]:
    """``post-receive`` input: (old, new, ref) per line."""
    for line in lines:
        parts = line.split()
        if len(parts) == 3:
            yield parts[0], parts[1], parts[2]
