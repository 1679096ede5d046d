#!/bin/sh
# EXAMPLE: upgrade k3s on one node by replacing its binary. Adapt before use.
# See ../README.md.
#
# Env: DROVER_COMPONENT (k3s-server or k3s-agent), DROVER_VERSION
# (v1.32.0+k3s1), DROVER_NODE from drover; DOWNLOAD_BASE: your mirror of the
# k3s release assets, laid out as $DOWNLOAD_BASE/<version>/k3s (amd64) or
# k3s-arm64, with sha256sum-<arch>.txt beside them.
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

: "${DOWNLOAD_BASE:?set DOWNLOAD_BASE in upgrade.job.env}"
BIN=$HOST/usr/local/bin/k3s

case $(uname -m) in
x86_64) asset=k3s sums=sha256sum-amd64.txt ;;
aarch64) asset=k3s-arm64 sums=sha256sum-arm64.txt ;;
*) fail "unsupported architecture $(uname -m)" ;;
esac

if [ -x "$BIN" ] && "$BIN" --version 2>/dev/null | grep -q "k3s version $DROVER_VERSION "; then
    echo "k3s $DROVER_VERSION is already installed on $DROVER_NODE"
    exit 0
fi

# `+` in a version is %2B in a URL.
dir="$DOWNLOAD_BASE/$(echo "$DROVER_VERSION" | sed 's/+/%2B/g')"
tmp=$(mktemp -d)
run "downloading $dir/$asset" curl -fsSL --retry 3 -o "$tmp/$asset" "$dir/$asset"
run "downloading $dir/$sums" curl -fsSL --retry 3 -o "$tmp/$sums" "$dir/$sums"
run "checking the sha256 of $asset" sh -c "cd '$tmp' && grep ' $asset\$' '$sums' | sha256sum -c -"

# Replace atomically (a rename on the node's filesystem), then restart.
cp "$tmp/$asset" "$BIN.new"
chmod 0755 "$BIN.new"
mv "$BIN.new" "$BIN"
if host systemctl cat k3s >/dev/null 2>&1; then
    unit=k3s
elif host systemctl cat k3s-agent >/dev/null 2>&1; then
    unit=k3s-agent
else
    fail "neither k3s nor k3s-agent is a systemd unit on the node"
fi
run "restarting $unit" host systemctl restart "$unit"
echo "k3s $DROVER_VERSION installed on $DROVER_NODE ($unit restarted)"
