"""Cross-check the CRD extracts in this folder against the upstream CRDs, field by field.

The upstream CRDs are not fetched from GitHub (not reachable here); they come from the npm
packages of kubernetes-models-ts, which are generated from the operators' released CRD files
and embed one compiled (ajv) validator per CRD version (`_schemas/*.js`), not the schema text:

- @kubernetes-models/strimzi-kafka-operator 1.0.1: strimzi-crds-0.49.0.yaml and 1.0.0.yaml
- @kubernetes-models/cloudnative-pg 1.0.0: cnpg-1.29.0.yaml
- @kubernetes-models/keda 0.4.2: keda-2.10.1.yaml

For every field an extract lists, the script builds variants of leadflow's rendered custom
resources with that field removed or set to a value of each JSON type (an object, a string
matching no pattern or enum, a huge and a negative number, a boolean, a fraction, a list) and
asks both validators. Where they disagree (a type, enum, pattern, bound or required list that
differs from upstream), it prints the field and exits 1. The validators also run on the
rendered manifests as they are (upstream must accept them).

What it cannot see: upstream's compiled validators allow unknown fields everywhere, so whether
an object is closed or `x-kubernetes-preserve-unknown-fields` is not checked here, and an
optional field upstream has but the extract leaves out is not reported (the deploy tests reject
it as unknown until it is copied in, see README.md); a field upstream requires in an object the
extract lists is reported.

Run by hand when an extract or an operator version changes (needs node, npm and the registry;
`make test` does not run it, the tests read the committed files):

    .venv/bin/python deploy/crds/check_against_upstream.py
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped,unused-ignore]
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.deploy.manifests import DEPLOY, OVERLAYS, is_builtin, load_crds, render  # noqa: E402

PACKAGES = {
    "@kubernetes-models/strimzi-kafka-operator": "1.0.1",
    "@kubernetes-models/cloudnative-pg": "1.0.0",
    "@kubernetes-models/keda": "0.4.2",
}
VALIDATORS = {
    "kafka.strimzi.io/v1 Kafka": "strimzi-kafka-operator/_schemas/KafkaStrimziIoV1Kafka.js",
    "kafka.strimzi.io/v1 KafkaNodePool": (
        "strimzi-kafka-operator/_schemas/KafkaStrimziIoV1KafkaNodePool.js"
    ),
    "kafka.strimzi.io/v1 KafkaTopic": "strimzi-kafka-operator/_schemas/KafkaStrimziIoV1KafkaTopic.js",
    "kafka.strimzi.io/v1 KafkaUser": "strimzi-kafka-operator/_schemas/KafkaStrimziIoV1KafkaUser.js",
    "postgresql.cnpg.io/v1 Cluster": "cloudnative-pg/_schemas/PostgresqlCnpgIoV1Cluster.js",
    "postgresql.cnpg.io/v1 ScheduledBackup": (
        "cloudnative-pg/_schemas/PostgresqlCnpgIoV1ScheduledBackup.js"
    ),
    "keda.sh/v1alpha1 ScaledObject": "keda/_schemas/KedaShV1alpha1ScaledObject.js",
    "keda.sh/v1alpha1 TriggerAuthentication": (
        "keda/_schemas/KedaShV1alpha1TriggerAuthentication.js"
    ),
}
# Reads a JSON list of resources on stdin, prints a JSON list: per resource, the upstream
# validator's errors ([] when valid).
ORACLE_JS = """
import fs from "node:fs";
const validators = %s;
const out = [];
for (const doc of JSON.parse(fs.readFileSync(0, "utf8"))) {
  const module = await import(validators[`${doc.apiVersion} ${doc.kind}`]);
  const validate = module.validate ?? module.default.validate;
  out.push(validate(doc) ? [] : validate.errors.map(
    (e) => ({path: e.instancePath, keyword: e.keyword, params: e.params})));
}
console.log(JSON.stringify(out));
"""
PROBES: list[Any] = [{"probe": 1}, "zz-probe-ZZ!", -999999, 99999999999, True, 1.5, ["x"]]
# ajv's name for the bound in an error -> JSON Schema keyword whose value it is.
PARAM = {
    "enum": "allowedValues",
    "pattern": "pattern",
    "minimum": "limit",
    "maximum": "limit",
    "minItems": "limit",
    "maxItems": "limit",
    "minLength": "limit",
    "maxLength": "limit",
    "type": "type",
}

# Unknown fields: upstream's validators never report them (see above). `format` on an integer
# (int32, int64): ajv checks the range, the Kubernetes API server does not.
IGNORED = {"additionalProperties", "format"}

Resource = dict[str, Any]


def install_upstream(directory: Path) -> Path:
    """npm-install the pinned packages into `directory`; the oracle script's path."""
    subprocess.run(
        ["npm", "install", "--prefix", str(directory), "--no-audit", "--no-fund", "--silent"]
        + [f"{name}@{version}" for name, version in PACKAGES.items()],
        check=True,
    )
    modules = directory / "node_modules" / "@kubernetes-models"
    paths = {key: (modules / path).as_uri() for key, path in VALIDATORS.items()}
    oracle = directory / "oracle.mjs"
    oracle.write_text(ORACLE_JS % json.dumps(paths))
    return oracle


def upstream_errors(oracle: Path, resources: list[Resource]) -> list[list[dict[str, Any]]]:
    result = subprocess.run(
        ["node", str(oracle)],
        input=json.dumps(resources),
        capture_output=True,
        text=True,
        check=True,
    )
    errors: list[list[dict[str, Any]]] = json.loads(result.stdout)
    return errors


def extract_schemas() -> dict[str, dict[str, Any]]:
    """'apiVersion kind' -> the extract's openAPIV3Schema as written (before conversion)."""
    schemas: dict[str, dict[str, Any]] = {}
    for path in sorted(Path(__file__).parent.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                spec = doc["spec"]
                for version in spec["versions"]:
                    key = f"{spec['group']}/{version['name']} {spec['names']['kind']}"
                    schemas[key] = version["schema"]["openAPIV3Schema"]
    return schemas


def fields(schema: dict[str, Any], path: list[str | int]) -> Iterator[list[str | int]]:
    """Every field path an extract lists below `path` (list items as index 0)."""
    for name, sub in schema.get("properties", {}).items():
        if not path and name in ("apiVersion", "kind"):
            continue
        yield [*path, name]
        yield from fields(sub, [*path, name])
    if "items" in schema:
        yield from fields(schema["items"], [*path, 0])


def variant(resource: Resource, path: list[str | int], value: Any, delete: bool) -> Resource:
    """`resource` with the field at `path` set to `value` (or removed), parents created."""
    out = copy.deepcopy(resource)
    node: Any = out
    for depth, part in enumerate(path[:-1]):
        empty: Any = [] if isinstance(path[depth + 1], int) else {}
        if isinstance(part, int):
            while len(node) <= part:
                node.append(copy.copy(empty))
        if not isinstance(node[part] if isinstance(part, int) else node.get(part), type(empty)):
            node[part] = empty
        node = node[part]
    last = path[-1]
    if delete:
        if isinstance(node, dict):
            node.pop(last, None)
    else:
        if isinstance(last, int):
            while len(node) <= last:
                node.append(None)
        node[last] = value
    return out


def our_keyword(error: jsonschema.ValidationError) -> str:
    """The failed keyword; for `required`, with the missing field (one error per field)."""
    if error.validator == "required":
        return f"required {error.message.split(chr(39))[1]}"
    return str(error.validator)


def upstream_keyword(error: dict[str, Any]) -> str:
    if error["keyword"] == "required":
        return f"required {error['params']['missingProperty']}"
    return str(error["keyword"])


def disagreements(
    schema: dict[str, Any], resource: Resource, upstream: list[dict[str, Any]]
) -> list[str]:
    """Where the extract's verdict on `resource` differs from upstream's (unknown fields aside)."""
    ours = {
        ("".join(f"/{part}" for part in error.absolute_path), our_keyword(error)): error
        for error in jsonschema.Draft7Validator(schema).iter_errors(resource)
        if error.validator not in IGNORED
    }
    theirs = {
        (error["path"], upstream_keyword(error)): error
        for error in upstream
        if error["keyword"] not in IGNORED
    }
    found = [
        f"{path or '/'}: only the extract says {keyword}"
        for path, keyword in ours.keys() - theirs.keys()
    ]
    found += [
        f"{path or '/'}: only upstream says {keyword} {json.dumps(theirs[(path, keyword)]['params'])}"
        for path, keyword in theirs.keys() - ours.keys()
    ]
    for key in ours.keys() & theirs.keys():
        param = PARAM.get(key[1])
        if param is not None and theirs[key]["params"].get(param) != ours[key].validator_value:
            found.append(
                f"{key[0]}: {key[1]} is {json.dumps(ours[key].validator_value)} in the extract, "
                f"{json.dumps(theirs[key]['params'].get(param))} upstream"
            )
    return found


def main() -> int:
    crds = load_crds()
    raw = extract_schemas()
    custom = [
        r
        for overlay in OVERLAYS
        for r in render(DEPLOY / "overlays" / overlay)
        if not is_builtin(r)
    ]
    # Kinds no package above covers (the Barman Cloud plugin's ObjectStore) stay a matter of
    # reading their CRD.
    resources = [r for r in custom if f"{r['apiVersion']} {r['kind']}" in VALIDATORS]
    for key in sorted({f"{r['apiVersion']} {r['kind']}" for r in custom} - set(VALIDATORS)):
        print(f"{key}: no upstream validator packaged, not checked")
    cases: list[tuple[str, Resource]] = [
        (f"{r['kind']}/{r['metadata']['name']} as rendered", r) for r in resources
    ]
    examples: dict[str, list[Resource]] = {}
    for r in resources:
        examples.setdefault(f"{r['apiVersion']} {r['kind']}", []).append(r)
    for key, schema in raw.items():
        for resource in examples.get(key, [])[:2]:
            for path in fields(schema, []):
                label = f"{key} {resource['metadata']['name']} {'.'.join(map(str, path))}"
                cases.append((f"{label} removed", variant(resource, path, None, delete=True)))
                cases += [
                    (f"{label} = {v!r}", variant(resource, path, v, delete=False)) for v in PROBES
                ]
    with tempfile.TemporaryDirectory() as tmp:
        oracle = install_upstream(Path(tmp))
        verdicts = upstream_errors(oracle, [resource for _, resource in cases])
    problems: set[str] = set()
    for (label, resource), upstream in zip(cases, verdicts, strict=True):
        schema = crds[(resource["apiVersion"], resource["kind"])].schema
        problems.update(f"{label}: {found}" for found in disagreements(schema, resource, upstream))
    for problem in sorted(problems):
        print(problem)
    print(f"{len(cases)} variants checked, {len(problems)} disagreements with upstream")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
