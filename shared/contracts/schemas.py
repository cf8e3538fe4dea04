"""Publish the JSON Schema of every topic's value, generated from the pydantic models, for
integrators who do not use Python (a CRM connector validating `routing.sdr`, say).

    python -m shared.contracts.schemas          write shared/contracts/schemas/<topic>.schema.json
    python -m shared.contracts.schemas --check  exit 1 if a published file is stale

The files are committed (integrators read them from the repository); a unit test fails when a
model changed and the files were not regenerated. Schemas describe what leadflow produces
(`mode="serialization"`): every field present, timestamps as ISO-8601 strings.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from shared.topics import ALL_TOPICS, Topic

SCHEMAS_DIR = Path(__file__).parent / "schemas"


def schema_of(topic: Topic) -> dict[str, Any]:
    schema = topic.model.model_json_schema(mode="serialization")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://leadflow.dev/schemas/{topic.name}.schema.json",
        "title": f"{topic.name} value",
        **{k: v for k, v in schema.items() if k != "title"},
        "x-leadflow-topic": {"name": topic.name, "key": topic.key, "producer": topic.producer},
    }


def schema_file(topic: Topic) -> Path:
    return SCHEMAS_DIR / f"{topic.name}.schema.json"


def render(topic: Topic) -> str:
    return json.dumps(schema_of(topic), indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def main(argv: list[str]) -> int:
    stale = [
        t
        for t in ALL_TOPICS
        if not schema_file(t).exists() or schema_file(t).read_text() != render(t)
    ]
    if "--check" in argv:
        for topic in stale:
            print(f"stale: {schema_file(topic)} (run python -m shared.contracts.schemas)")
        return 1 if stale else 0
    SCHEMAS_DIR.mkdir(exist_ok=True)
    for topic in ALL_TOPICS:
        schema_file(topic).write_text(render(topic))
    print(f"wrote {len(ALL_TOPICS)} schemas to {SCHEMAS_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
