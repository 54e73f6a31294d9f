#!/usr/bin/env bash
# A Python 3.11 base image made from Debian bookworm's packages, for machines that reach
# Debian's mirror but no container registry. The Dockerfile's default base stays the
# official python:3.11-slim-bookworm; `make image` passes this one as PYTHON_IMAGE.
#   deploy/image/local-base.sh [image name]     (needs root, debootstrap, podman or docker)
set -euo pipefail
IMAGE=${1:-localhost/tollgate-python:3.11-bookworm}
if [ -z "${ENGINE:-}" ]; then
  if docker info >/dev/null 2>&1; then ENGINE=docker; else ENGINE=podman; fi
fi
MIRROR=${DEBIAN_MIRROR:-$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || echo http://deb.debian.org/debian)}
ROOTFS=$(mktemp -d)
trap 'rm -rf "$ROOTFS"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$ROOTFS" "$MIRROR" >/dev/null
# The machine's CA bundle: downloads inside a build go through the same TLS as the host's.
cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
tar -C "$ROOTFS" -c . | "$ENGINE" import \
  --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' - "$IMAGE" >/dev/null
echo "$IMAGE"
