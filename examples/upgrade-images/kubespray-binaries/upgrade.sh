#!/bin/sh
# EXAMPLE: Kubespray-style binary upgrades (containerd, etcd, kubelet):
# replace the binaries in /usr/local/bin from a download mirror and restart
# the component's systemd unit. Adapt before use. See ../README.md.
#
# Env: DROVER_COMPONENT, DROVER_VERSION, DROVER_NODE from drover;
# DOWNLOAD_BASE: the files are fetched from
#   $DOWNLOAD_BASE/<component>/<version>/<arch>/<file>
# FILES (optional): which files, default by component:
#   containerd: containerd containerd-shim-runc-v2 ctr
#   etcd:       etcd etcdctl etcdutl
#   kubelet:    kubelet
# UNIT (optional): the systemd unit to restart, default the component's name.
#
# etcd: drover takes etcd members one at a time and only when every member
# is Ready; this script restarts the local member and waits for it to be
# healthy before it exits (ETCDCTL_* variables as Kubespray sets them in
# /etc/etcd.env).
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
UNIT=${UNIT:-$DROVER_COMPONENT}
case $DROVER_COMPONENT in
containerd) FILES=${FILES:-containerd containerd-shim-runc-v2 ctr} ;;
etcd) FILES=${FILES:-etcd etcdctl etcdutl} ;;
kubelet) FILES=${FILES:-kubelet} ;;
*) : "${FILES:?set FILES for component $DROVER_COMPONENT}" ;;
esac
case $(uname -m) in
x86_64) ARCH=amd64 ;;
aarch64) ARCH=arm64 ;;
*) fail "unsupported architecture $(uname -m)" ;;
esac

tmp=$(mktemp -d)
for f in $FILES; do
    url="$DOWNLOAD_BASE/$DROVER_COMPONENT/$DROVER_VERSION/$ARCH/$f"
    run "downloading $url" curl -fsSL --retry 3 -o "$tmp/$f" "$url"
    chmod 0755 "$tmp/$f"
done
first=${FILES%% *}
"$tmp/$first" --version 2>&1 | grep -q "$VERSION" || fail "$first --version does not report $VERSION"

# Skip the restart when nothing changed (a re-run after a crash).
changed=no
for f in $FILES; do
    if ! cmp -s "$tmp/$f" "$HOST/usr/local/bin/$f"; then
        cp "$tmp/$f" "$HOST/usr/local/bin/$f.new"
        mv "$HOST/usr/local/bin/$f.new" "$HOST/usr/local/bin/$f"
        changed=yes
    fi
done
if [ "$changed" = yes ]; then
    run "restarting $UNIT" host systemctl restart "$UNIT"
fi
if [ "$DROVER_COMPONENT" = etcd ]; then
    run "waiting for the local etcd member to be healthy" host sh -c \
        'set -a; [ -f /etc/etcd.env ] && . /etc/etcd.env; for i in $(seq 60); do etcdctl endpoint health >/dev/null 2>&1 && exit 0; sleep 2; done; etcdctl endpoint health'
fi
echo "$DROVER_COMPONENT $DROVER_VERSION installed on $DROVER_NODE"
