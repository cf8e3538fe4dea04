"""The environment variable names leadflow's services read, derived from their settings classes.

pydantic-settings reads `env_prefix + field name` (case-insensitive) for each field; a field
whose type is itself a settings class (`kafka: KafkaSettings`, built by a default factory) is
read by that class with its own prefix. Derived at test time, so a setting added to a service
is known here at once.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass

from pydantic_settings import BaseSettings

from shared.settings import ServiceSettings

SERVICES = ("ingest", "enrich", "score", "router", "console", "sync")


@dataclass(frozen=True)
class EnvNames:
    known: frozenset[str]
    required: frozenset[str]


def settings_class(service: str) -> type[ServiceSettings]:
    """The settings class that `services/<service>/config.py` defines."""
    module = importlib.import_module(f"services.{service}.config")
    found = [
        value
        for value in vars(module).values()
        if inspect.isclass(value)
        and issubclass(value, ServiceSettings)
        and value.__module__ == module.__name__
    ]
    if len(found) != 1:
        raise LookupError(f"services/{service}/config.py defines {len(found)} settings classes")
    return found[0]


def env_names(settings: type[BaseSettings]) -> EnvNames:
    prefix = str(settings.model_config.get("env_prefix", ""))
    known: set[str] = set()
    required: set[str] = set()
    for name, field in settings.model_fields.items():
        annotation = field.annotation
        if inspect.isclass(annotation) and issubclass(annotation, BaseSettings):
            nested = env_names(annotation)
            known |= nested.known
            # A default factory that builds a class with required fields needs them set.
            required |= nested.required
            continue
        env = field.validation_alias if isinstance(field.validation_alias, str) else name
        known.add(f"{prefix}{env}".upper())
        if field.is_required():
            required.add(f"{prefix}{env}".upper())
    return EnvNames(known=frozenset(known), required=frozenset(required))


def service_env_names(service: str) -> EnvNames:
    return env_names(settings_class(service))


def all_env_names() -> frozenset[str]:
    names: set[str] = set()
    for service in SERVICES:
        names |= service_env_names(service).known
    return frozenset(names)
