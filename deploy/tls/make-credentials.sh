#!/usr/bin/env bash
# TLS credentials for a Dask cluster that runs morpheus-survey, for the clusters you
# start yourself (`dask scheduler` / `dask worker` on HPC nodes, the Kubernetes
# manifests of deploy/kubernetes): a new self-signed certificate and its key, and a
# Dask configuration file that names them. Every member of the cluster (scheduler,
# workers, the driver's client) presents this certificate and trusts nothing else, so
# a process without the key can neither join the cluster nor run code on it.
#
#   deploy/tls/make-credentials.sh DIR [PATH]
#
# writes, readable by you alone:
#   DIR/tls.crt        the certificate (also the certificate authority to trust)
#   DIR/tls.key        its private key: keep it secret
#   DIR/dask-tls.yaml  Dask configuration naming both as PATH/tls.crt and PATH/tls.key
#                      (PATH defaults to DIR; give the folder where the files will be
#                      seen, e.g. /etc/dask-tls inside Kubernetes pods): pass it to the
#                      driver as --scheduler-security DIR/dask-tls.yaml
#
# DAYS (default 365) sets how long the certificate is valid. The driver's own local,
# dask-cuda and SLURM/PBS clusters need none of this: they make credentials per run.
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
    echo "usage: $0 DIR [PATH]" >&2
    exit 2
fi
umask 077
mkdir -p "$1"
dir="$(cd "$1" && pwd)"
path="${2:-$dir}"
days="${DAYS:-365}"

openssl req -x509 -newkey rsa:3072 -sha256 -nodes -days "$days" -subj "/CN=morpheus-dask" \
    -keyout "$dir/tls.key" -out "$dir/tls.crt" 2>/dev/null

cat > "$dir/dask-tls.yaml" <<YAML
# Dask TLS configuration (deploy/tls/make-credentials.sh): one certificate for every
# role; Dask checks the chain, not host names.
distributed:
  comm:
    require-encryption: true
    tls:
      ca-file: $path/tls.crt
      scheduler: {cert: $path/tls.crt, key: $path/tls.key}
      worker: {cert: $path/tls.crt, key: $path/tls.key}
      client: {cert: $path/tls.crt, key: $path/tls.key}
YAML
echo "wrote $dir/tls.crt, $dir/tls.key (secret) and $dir/dask-tls.yaml (valid $days days)"
