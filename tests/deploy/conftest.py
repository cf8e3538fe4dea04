"""Each overlay is rendered once per session; every deploy test reads the same output."""

from __future__ import annotations

import pytest

from tests.deploy.manifests import DEPLOY, OVERLAYS, CrdVersion, Resource, load_crds, render


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[Resource]]:
    return {overlay: render(DEPLOY / "overlays" / overlay) for overlay in OVERLAYS}


@pytest.fixture(scope="session")
def crds() -> dict[tuple[str, str], CrdVersion]:
    return load_crds()
