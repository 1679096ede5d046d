#!/usr/bin/env bash
# Checks what the tests need beyond the Rust toolchain. Idempotent.
set -euo pipefail
missing=0
need() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "$1 is required: $2" >&2
    missing=1
  fi
}
need kubectl "the end-to-end tests drive kubectl; install it from your distribution or https://kubernetes.io/docs/tasks/tools/"
need go "the real test bed builds etcd, kube-apiserver, kube-controller-manager, kube-scheduler and KWOK from Go modules (docs/testing.md)"
need openssl "the real test bed makes its TLS certificates with it (apt-get install openssl)"
need python3 "scripts/controlplane.sh picks free ports with it"
need curl "scripts/controlplane.sh checks etcd's health with it"
exit $missing
