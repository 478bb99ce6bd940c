"""Signed releases: a trust policy of GPG keys per repository path, verified artifacts.

``trust`` (the policy and its keyring), ``globs`` (its path patterns), ``signatures``
(detached signatures and signed git tags), ``provenance`` (what a release tag records),
``artifacts`` (verify, then publish through a Publisher).
"""
