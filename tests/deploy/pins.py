"""What keeps a build's inputs fixed: hashed dependency locks and images pinned by digest.

- `parse_lock(text)`: a requirements lock as `make lock` writes it (uv pip compile, with
  `--generate-hashes` and its `# via` annotations), one `LockEntry` per distribution.
- `lock_violations(lock, requirements=...)`: a lock that does not say what pyproject.toml says:
  a pin missing or at another version, an entry without a hash, an entry nothing needs any more.
- `unhashed_installs(text)`: `pip install` commands of a Makefile or Dockerfile that would take
  a file pip checked against no hash.
- `image_violations(reference)`: an image reference that may change under the same name.

Each check returns its violations, one readable line each; an empty list means it holds. The
tests run them on the repository's files and on broken examples (to prove each can fail).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

# How an entry's `# via` annotation names the project itself rather than another distribution.
PROJECT_ROOT = "leadflow (pyproject.toml)"
# Images this repository builds: named by an explicit tag, their digest known only once pushed.
OWN_IMAGES = ("ghcr.io/leadflow/",)
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class LockEntry:
    name: str  # canonical (PEP 503)
    version: str
    hashes: tuple[str, ...]
    via: tuple[str, ...]  # what needs it: distributions of the lock, the project, an input file


def parse_lock(text: str) -> dict[str, LockEntry]:
    """Canonical name -> entry, for every `name==version` line of the lock."""
    entries: dict[str, LockEntry] = {}
    logical = re.sub(r"\\\n", " ", text).splitlines()
    current: dict[str, Any] | None = None
    for line in [*logical, ""]:
        stripped = line.strip()
        if current is not None and stripped.startswith("#"):
            comment = stripped.lstrip("#").strip()
            if comment.startswith("via"):
                comment = comment.removeprefix("via").strip()
            if comment:
                current["via"].append(comment)
            continue
        if current is not None:
            entry = LockEntry(
                name=current["name"],
                version=current["version"],
                hashes=tuple(current["hashes"]),
                via=tuple(current["via"]),
            )
            entries[entry.name] = entry
            current = None
        if not stripped or stripped.startswith(("#", "-")):
            continue
        requirement, *options = stripped.split()
        name, _, version = requirement.partition("==")
        current = {
            "name": canonicalize_name(name),
            "version": version.split(";")[0].strip(),
            "hashes": [o.removeprefix("--hash=") for o in options if o.startswith("--hash=")],
            "via": [],
        }
    return entries


def lock_violations(
    lock: dict[str, LockEntry], *, requirements: Iterable[str], project: str = "leadflow"
) -> list[str]:
    """What regenerating the lock from these pyproject.toml requirements would change.

    Every requirement is an exact pin found at the same version; every entry has a hash; the
    entries the lock says the project asks for are exactly the requirements; every other entry
    is needed by an entry that is needed in turn (no stale branch left behind).
    """
    found: list[str] = []
    asked: set[str] = set()
    for text in requirements:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        if name == canonicalize_name(project):
            continue  # leadflow[devstack]: its own extras, listed beside this one
        asked.add(name)
        pins = [spec.version for spec in requirement.specifier if spec.operator == "=="]
        if len(pins) != 1:
            found.append(f"{text}: not an exact pin (==)")
        elif name not in lock:
            found.append(f"{text}: not in the lock")
        elif lock[name].version != pins[0]:
            found.append(f"{text}: the lock has {name}=={lock[name].version}")
    for entry in lock.values():
        if not entry.hashes:
            found.append(f"{entry.name}=={entry.version}: no --hash")
        if PROJECT_ROOT in entry.via and entry.name not in asked:
            found.append(f"{entry.name}=={entry.version}: pyproject.toml no longer asks for it")
    needed = {name for name, entry in lock.items() if any(map(is_input, entry.via))}
    while True:
        more = {name for name, entry in lock.items() if needed & needers(entry)} - needed
        if not more:
            break
        needed |= more
    for stale in sorted(set(lock) - needed):
        found.append(f"{stale}=={lock[stale].version}: neither the project nor the lock needs it")
    return found


def is_input(via: str) -> bool:
    """The project or a requirements file (`-r`) asks for the entry; a constraints file (`-c`)
    only bounds versions, it asks for nothing."""
    return via == PROJECT_ROOT or via.startswith("-r ")


def needers(entry: LockEntry) -> set[str]:
    return {canonicalize_name(via) for via in entry.via if not via.startswith(("-", PROJECT_ROOT))}


def shell_commands(text: str) -> Iterator[str]:
    """Each command of a Makefile's or Dockerfile's shell lines, continuations joined."""
    for line in re.sub(r"\\\n", " ", text).splitlines():
        if line.lstrip().startswith("#"):
            continue
        yield from (part.strip() for part in re.split(r"&&|\|\||;", line) if part.strip())


def unhashed_installs(text: str) -> list[str]:
    """`pip install` commands that could take a file no hash vouches for.

    Allowed: `--require-hashes -r LOCK`, and the project itself with `--no-deps
    --no-build-isolation` (no dependency and no build environment fetched).
    """
    found: list[str] = []
    for command in shell_commands(text):
        if not re.search(r"\bpip install\b", command):
            continue
        words = command.split()
        hashed = "--require-hashes" in words and "-r" in words
        project_only = {"--no-deps", "--no-build-isolation"} <= set(words) and (
            "." in words or "-e" in words
        )
        if not (hashed or project_only):
            found.append(f"unhashed: {command}")
    return found


def image_violations(reference: str) -> list[str]:
    """A reference that names no fixed image: no tag, `latest`, or (unless this repository
    builds it) no digest."""
    name, _, digest = reference.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = last.partition(":")[2]
    found: list[str] = []
    if not tag:
        found.append(f"{reference}: no tag (`latest` implied)")
    elif tag == "latest":
        found.append(f"{reference}: tag `latest`")
    if digest and not DIGEST.match(digest):
        found.append(f"{reference}: malformed digest")
    if not digest and not reference.startswith(OWN_IMAGES):
        found.append(f"{reference}: no digest")
    return found


def image_references(value: Any) -> Iterator[str]:
    """Every `image` and `imageName` string anywhere in a resource (containers, init
    containers, CloudNativePG's Cluster, Strimzi's Kafka...)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("image", "imageName") and isinstance(item, str):
                yield item
            else:
                yield from image_references(item)
    elif isinstance(value, list):
        for item in value:
            yield from image_references(item)


def kustomize_image_violations(kustomization: dict[str, Any]) -> list[str]:
    """An `images:` entry that leaves the tag to chance: `latest`, or neither tag nor digest."""
    found: list[str] = []
    for image in kustomization.get("images", []):
        if image.get("newTag") == "latest":
            found.append(f"images {image.get('name')}: newTag latest")
        elif "newTag" not in image and "digest" not in image:
            found.append(f"images {image.get('name')}: neither newTag nor digest")
    return found


def dockerfile_images(text: str) -> list[str]:
    """The images a Dockerfile builds on: FROM references and defaults of ARGs they use,
    variables resolved from ARG defaults, stage names left out."""
    defaults: dict[str, str] = {}
    stages: set[str] = set()
    images: list[str] = []
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "ARG" and "=" in words[1]:
            key, _, value = words[1].partition("=")
            defaults[key] = value
        elif len(words) >= 2 and words[0] == "FROM":
            reference = re.sub(
                r"\$\{?(\w+)\}?", lambda match: defaults.get(match[1], match[0]), words[1]
            )
            if reference not in stages:
                images.append(reference)
            if len(words) >= 4 and words[2].upper() == "AS":
                stages.add(words[3])
    return images


REGISTRY_REFERENCE = re.compile(
    r"(?:docker\.io|ghcr\.io|quay\.io|registry\.k8s\.io|gcr\.io)/[\w./-]+(?::[\w.-]+)?(?:@[\w:]+)?"
)


def registry_references(text: str) -> list[str]:
    """Image references written out in a script or its comments (docker.io/..., ghcr.io/...)."""
    return REGISTRY_REFERENCE.findall(text)
