#!/bin/sh
# EXAMPLE: kubeadm upgrades. Adapt before use. See ../README.md.
#
#   upgrade.sh control-plane   kubeadm upgrade apply (first control-plane
#                              node) or kubeadm upgrade node (the others)
#   upgrade.sh kubelet         kubeadm upgrade node, then the kubelet and
#                              kubectl packages, then restart the kubelet
#
# Env: DROVER_COMPONENT, DROVER_VERSION (v1.32.0), DROVER_NODE from drover;
# KUBEADM_BINARY_BASE: fetch kubeadm from $KUBEADM_BINARY_BASE/kubeadm/<version>/<arch>/kubeadm
# instead of the package manager (clusters built by Kubespray, which installs
# binaries in /usr/local/bin).
#
# The Kubernetes package repositories are per minor version: point the
# node's repository at the new minor before a minor upgrade.
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

MODE=${1:-kubelet}
KUBECONFIG_ADMIN=/etc/kubernetes/admin.conf

arch() {
    case $(uname -m) in
    x86_64) echo amd64 ;;
    aarch64) echo arm64 ;;
    *) uname -m ;;
    esac
}

# install_packages PACKAGE...: each at VERSION.
install_packages() {
    case $(pkg_manager) in
    apt)
        run "apt-get update" host apt-get update -q
        specs=""
        for p in "$@"; do
            full=$(apt_version "$p" "$VERSION")
            [ -n "$full" ] || fail "no $p $VERSION in the node's apt repositories (is the v${VERSION%.*} repository configured?)"
            specs="$specs $p=$full"
        done
        # shellcheck disable=SC2086
        run "installing$specs" host env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
            --allow-downgrades --allow-change-held-packages -o Dpkg::Options::=--force-confold $specs
        run "holding $*" host apt-mark hold "$@"
        ;;
    dnf | yum)
        specs=""
        for p in "$@"; do specs="$specs $p-$VERSION"; done
        # shellcheck disable=SC2086
        run "installing$specs" host "$(pkg_manager)" install -y --disableexcludes=kubernetes $specs
        ;;
    *)
        fail "the node has neither apt-get nor dnf/yum"
        ;;
    esac
}

install_kubeadm() {
    if host kubeadm version -o short 2>/dev/null | grep -qx "v$VERSION"; then
        return 0
    fi
    if [ -n "${KUBEADM_BINARY_BASE:-}" ]; then
        url="$KUBEADM_BINARY_BASE/kubeadm/v$VERSION/$(arch)/kubeadm"
        run "downloading $url" curl -fsSL --retry 3 -o "$HOST/usr/local/bin/kubeadm.new" "$url"
        chmod 0755 "$HOST/usr/local/bin/kubeadm.new"
        mv "$HOST/usr/local/bin/kubeadm.new" "$HOST/usr/local/bin/kubeadm"
    else
        install_packages kubeadm
    fi
    host kubeadm version -o short | grep -qx "v$VERSION" || fail "kubeadm does not report v$VERSION after the install"
}

# The version kubeadm's cluster configuration names: after the first
# control-plane node ran `kubeadm upgrade apply`, it is the new one.
cluster_version() {
    host kubectl --kubeconfig "$KUBECONFIG_ADMIN" -n kube-system get configmap kubeadm-config \
        -o jsonpath='{.data.ClusterConfiguration}' | awk '/kubernetesVersion:/ {print $2}'
}

case $MODE in
control-plane)
    [ -f "$HOST$KUBECONFIG_ADMIN" ] || fail "$KUBECONFIG_ADMIN not found: is $DROVER_NODE a kubeadm control-plane node?"
    install_kubeadm
    current=$(cluster_version) || fail "cannot read the kubeadm-config ConfigMap"
    if [ "$current" != "v$VERSION" ]; then
        run "kubeadm upgrade apply v$VERSION" host kubeadm upgrade apply "v$VERSION" --yes
    else
        run "kubeadm upgrade node" host kubeadm upgrade node
    fi
    ;;
kubelet)
    install_kubeadm
    run "kubeadm upgrade node" host kubeadm upgrade node
    if [ -n "${KUBEADM_BINARY_BASE:-}" ]; then
        fail "with KUBEADM_BINARY_BASE use kubespray-binaries for the kubelet"
    fi
    install_packages kubelet kubectl
    run "restarting the kubelet" host sh -c 'systemctl daemon-reload && systemctl restart kubelet'
    ;;
*)
    fail "unknown mode $MODE (control-plane or kubelet)"
    ;;
esac
echo "$DROVER_COMPONENT: $MODE upgrade to v$VERSION done on $DROVER_NODE"
