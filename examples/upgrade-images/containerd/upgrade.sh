#!/bin/sh
# EXAMPLE: upgrade containerd on one node with the node's package manager.
# Adapt before use (package name, repositories). See ../README.md.
#
# Env: DROVER_COMPONENT, DROVER_VERSION (1.7.24), DROVER_NODE from drover;
# PACKAGE (default containerd.io, the Docker repository's package; use
# containerd for the distribution's own).
set -eu

: "${DROVER_COMPONENT:?set by drover}"
: "${DROVER_VERSION:?set by drover}"
: "${DROVER_NODE:?set by drover}"
HOST=${HOST_ROOT:-/host}
# The file Kubernetes reads the termination message from.
TERMINATION_LOG=${TERMINATION_LOG:-/dev/termination-log}
VERSION=${DROVER_VERSION#v}
LOG=$(mktemp)

# run STEP COMMAND...: run a step; on failure, print its output and leave
# its last lines plus a one-line summary as the termination message, which
# drover shows in the ClusterUpgrade's status and events.
run() {
    step=$1
    shift
    echo ">> $step"
    if "$@" >"$LOG" 2>&1; then
        cat "$LOG"
        return 0
    else
        rc=$?
    fi
    cat "$LOG" >&2
    {
        tail -n 3 "$LOG"
        echo "FAILED: $step ($DROVER_COMPONENT $DROVER_VERSION on $DROVER_NODE, exit $rc)"
    } >"$TERMINATION_LOG" 2>/dev/null || true
    echo "FAILED: $step ($DROVER_COMPONENT $DROVER_VERSION on $DROVER_NODE, exit $rc)" >&2
    exit "$rc"
}

# fail MESSAGE: stop with a message of our own.
fail() {
    echo "FAILED: $1 ($DROVER_COMPONENT $DROVER_VERSION on $DROVER_NODE)" | tee "$TERMINATION_LOG" >&2
    exit 1
}

# host COMMAND...: run a command of the node's own, through its root.
host() {
    chroot "$HOST" "$@"
}

[ -d "$HOST/etc" ] || fail "the node's root is not mounted at $HOST (set hostRoot: true)"

# The node's package manager.
pkg_manager() {
    if host sh -c 'command -v apt-get' >/dev/null 2>&1; then
        echo apt
    elif host sh -c 'command -v dnf' >/dev/null 2>&1; then
        echo dnf
    elif host sh -c 'command -v yum' >/dev/null 2>&1; then
        echo yum
    else
        echo none
    fi
}

# apt_version PACKAGE VERSION: the repository's full version string for VERSION (e.g. 1.32.0-1.1).
apt_version() {
    host apt-cache madison "$1" | awk -v v="$2" '$3 ~ "^"v"-" || $3 == v {print $3; exit}'
}

PACKAGE=${PACKAGE:-containerd.io}

installed() {
    host containerd --version 2>/dev/null | grep -Eq "[ v]$VERSION( |$)"
}

if installed; then
    echo "containerd $VERSION is already installed on $DROVER_NODE"
    exit 0
fi

case $(pkg_manager) in
apt)
    run "apt-get update" host apt-get update -q
    full=$(apt_version "$PACKAGE" "$VERSION")
    [ -n "$full" ] || fail "no $PACKAGE $VERSION in the node's apt repositories"
    run "installing $PACKAGE=$full" host env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --allow-downgrades --allow-change-held-packages -o Dpkg::Options::=--force-confold "$PACKAGE=$full"
    run "holding $PACKAGE" host apt-mark hold "$PACKAGE"
    ;;
dnf | yum)
    run "installing $PACKAGE-$VERSION" host "$(pkg_manager)" install -y "$PACKAGE-$VERSION"
    ;;
*)
    fail "the node has neither apt-get nor dnf/yum"
    ;;
esac

# Running containers survive: their shims do not depend on the daemon.
run "restarting containerd" host systemctl restart containerd
run "waiting for containerd" host sh -c 'for i in $(seq 30); do ctr version >/dev/null 2>&1 && exit 0; sleep 2; done; exit 1'
installed || fail "containerd --version does not report $VERSION after the install"
echo "containerd $VERSION installed on $DROVER_NODE"
