#!/usr/bin/env bash
# Checks what the tests need beyond the Rust toolchain. Idempotent.
set -euo pipefail
if ! command -v kubectl >/dev/null 2>&1; then
  echo "kubectl is required by the end-to-end tests; install it from your distribution or https://kubernetes.io/docs/tasks/tools/" >&2
  exit 1
fi
