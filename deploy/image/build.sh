#!/usr/bin/env bash
# Build the leadflow image with podman (`make image`).
#
# No registry serves base images on these machines, so unless BASE_IMAGE is given this builds
# a local Debian bookworm base (whose python3 is 3.11) with debootstrap and imports it into
# podman. Installs podman and debootstrap from Debian when missing (needs root).
#
# BASE_IMAGE names an image by exact tag and digest (name:tag@sha256:...); where a registry is
# reachable, use the Dockerfile's pinned default:
#
#   BASE_IMAGE="$(sed -n 's/^ARG BASE_IMAGE=//p' Dockerfile)" deploy/image/build.sh
#
# The local base takes bookworm's packages as the mirror has them on the day it is built (then
# it is kept and reused). For a base rebuilt later with the same packages, point DEBIAN_MIRROR
# at a dated snapshot, e.g. http://snapshot.debian.org/archive/debian/20260817T000000Z (not
# reachable from these machines, so not the default).
set -euo pipefail
cd "$(dirname "$0")/../.."

IMAGE="${IMAGE:-localhost/leadflow:$(git rev-parse --short HEAD 2>/dev/null || echo dev)}"
LOCAL_BASE="localhost/leadflow-base:bookworm-py311"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

need() {
    if ! command -v "$1" >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2"
    fi
}
need podman podman

if [[ -z "${BASE_IMAGE:-}" ]]; then
    BASE_IMAGE="$LOCAL_BASE"
    if ! podman image exists "$LOCAL_BASE"; then
        need debootstrap debootstrap
        rootfs="$(mktemp -d)"
        trap 'rm -rf "$rootfs"' EXIT
        echo "building $LOCAL_BASE with debootstrap from $MIRROR"
        debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
            bookworm "$rootfs" "$MIRROR"
        # What python:3.11-slim also leaves out: package lists and caches.
        rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/usr/share/doc/*
        tar -C "$rootfs" -c . | podman import --change 'CMD ["python3"]' - "$LOCAL_BASE"
    fi
fi

echo "building $IMAGE on $BASE_IMAGE"
# Host network: pip in the build stage reaches PyPI the way this machine does.
# chroot isolation: RUN steps need no cgroup from the OCI runtime (crun refuses the hybrid
# cgroup v1 layout of sandboxed machines); ISOLATION=oci on an ordinary host.
# The machine's CA bundle as a build secret: pip in the build stage trusts what this machine
# trusts (a proxy's CA included), and nothing of it stays in the image.
CA_BUNDLE="${CA_BUNDLE:-${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}}"
podman build --network=host --isolation="${ISOLATION:-chroot}" \
    --secret "id=ca-bundle,src=$CA_BUNDLE" \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$IMAGE" -f Dockerfile .
podman image ls "$IMAGE"
