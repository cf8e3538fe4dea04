"""The ingest pod's /tmp volume holds what the lead imports may spool: past its sizeLimit the
kubelet evicts the pod, so the settings' cap (default or as the manifest sets it) must fit."""

from __future__ import annotations

import re

import pytest

from services.ingest.config import IngestSettings
from tests.deploy.manifests import OVERLAYS, Resource
from tests.deploy.policies import container_env, containers, pod_spec

SLACK = 128 * 1024**2  # concurrent batches past the quota, Python's own temporary files
_UNITS = {"": 1, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "k": 1000, "M": 1000**2, "G": 1000**3}


def quantity_bytes(value: str) -> int:
    match = re.fullmatch(r"(\d+)([KMG]i?|k)?", value)
    assert match, value
    return int(match.group(1)) * _UNITS[match.group(2) or ""]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_ingest_tmp_volume_holds_the_import_spool_cap(
    rendered: dict[str, list[Resource]], overlay: str
) -> None:
    resources = rendered[overlay]
    (deployment,) = [
        r
        for r in resources
        if r["kind"] == "Deployment" and r["metadata"]["name"] == "leadflow-ingest"
    ]
    spec = pod_spec(deployment)
    assert spec is not None
    (container,) = [c for _, c in containers(deployment)]
    mounted = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in spec["volumes"]}
    size_limit = quantity_bytes(volumes[mounted["/tmp"]]["emptyDir"]["sizeLimit"])

    env = container_env(resources, container)
    given = env.get("LEADFLOW_INGEST_IMPORT_SPOOL_MAX_TOTAL_BYTES")
    default = IngestSettings.model_fields["import_spool_max_total_bytes"].default
    cap = int(given) if given else default
    assert cap + SLACK <= size_limit, (overlay, cap, size_limit)
