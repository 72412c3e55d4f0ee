#!/usr/bin/env bash
# Build the morpheus-survey container image from the repository root.
#
#   deploy/container/build.sh                        # docker, tag morpheus-survey:0.1.0-cuda12
#   ENGINE=podman deploy/container/build.sh
#   IMAGE=registry.example.org/me/morpheus-survey:0.1.0-cuda12 deploy/container/build.sh --push
#
# Extra arguments go to `build` (e.g. --build-arg CUDA_IMAGE=... --build-arg CUDA_EXTRA=cu13).
# The Kubernetes manifests refer to the image by the name below; after pushing it to
# your registry, point them at it with
#   (cd deploy/kubernetes && kustomize edit set image morpheus-survey=<registry>/morpheus-survey:0.1.0-cuda12)
# For Apptainer on HPC:  apptainer build morpheus-survey.sif docker-daemon://morpheus-survey:0.1.0-cuda12
set -euo pipefail

IMAGE="${IMAGE:-morpheus-survey:0.1.0-cuda12}"
ENGINE="${ENGINE:-docker}"

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ignore=()
if [[ "$(basename "$ENGINE")" == podman* || "$(basename "$ENGINE")" == buildah* ]]; then
    ignore=(--ignorefile deploy/container/Dockerfile.dockerignore)
fi
exec "$ENGINE" build -f deploy/container/Dockerfile "${ignore[@]}" -t "$IMAGE" "$@" .
