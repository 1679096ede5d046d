#!/usr/bin/env bash
# drover's real test bed: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler and KWOK, built from the Go modules pinned under
# tools/controlplane/ and started on loopback ports.
#
#   scripts/controlplane.sh build [--version V]
#   scripts/controlplane.sh up    [--dir DIR] [--version V] [--scenario FILE] [--speed N]
#                                 [--apiserver-arg ARG]...   (e.g. --runtime-config=events.k8s.io/v1=false)
#   scripts/controlplane.sh down  [--dir DIR]
#   scripts/controlplane.sh restart-apiserver [--dir DIR]   # stop it (TERM), start it again, wait for /readyz
#   scripts/controlplane.sh versions          # the supported versions, newest first
#   scripts/controlplane.sh bin-dir [--version V]   # where the binaries of V are
#
# V is a supported minor (1.37, 1.34), a full version (v1.37.2), or
# `newest` / `oldest`. Binaries are cached outside the work tree in
# ${DROVER_CP_CACHE:-~/.cache/drover/controlplane}, keyed by version and by a
# hash of the pinning go.mod/go.sum, and reused when present. docs/testing.md
# describes the bed, its flags and its timing.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TOOLS="$ROOT/tools/controlplane"
CACHE=${DROVER_CP_CACHE:-$HOME/.cache/drover/controlplane}
# Supported Kubernetes versions, newest first: each has its module in
# tools/controlplane/kube-v1.<minor>/.
VERSIONS=(v1.37.2 v1.34.4)
ETCD_VERSION=$(awk '/go.etcd.io\/etcd\/server\/v3 /{print $NF; exit}' "$TOOLS/etcd/go.mod")
KWOK_VERSION=$(awk '/sigs.k8s.io\/kwok /{print $NF; exit}' "$TOOLS/kwok/go.mod")

log() { printf '%s controlplane: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

resolve_version() {
    local v=${1:-newest}
    case $v in
        newest) echo "${VERSIONS[0]}"; return ;;
        oldest) echo "${VERSIONS[-1]}"; return ;;
    esac
    v=${v#v}
    for full in "${VERSIONS[@]}"; do
        if [[ ${full#v} == "$v" || ${full#v} == "$v".* ]]; then
            echo "$full"
            return
        fi
    done
    die "unsupported version '$1': supported are ${VERSIONS[*]} (or newest, oldest)"
}

minor_of() { local m=${1#v1.}; echo "${m%%.*}"; }

module_hash() { cat "$1/go.mod" "$1/go.sum" | sha256sum | cut -c1-12; }

# The cache directory of one component: <name>-<version>-<hash of its pins>.
cache_dir() { echo "$CACHE/$1-$2-$(module_hash "$3")"; }

kube_dir() { local v=$1; cache_dir kube "$v" "$TOOLS/kube-v1.$(minor_of "$v")"; }
etcd_dir() { cache_dir etcd "$ETCD_VERSION" "$TOOLS/etcd"; }
kwok_dir() { cache_dir kwok "$KWOK_VERSION" "$TOOLS/kwok"; }

# go_build NAME DIR MODULE_DIR LDFLAGS PACKAGES...: one `go build` into DIR,
# skipped when DIR is complete.
go_build() {
    local name=$1 out=$2 mod=$3 ldflags=$4
    shift 4
    if [[ -f $out/.complete ]]; then
        log "$name: cached in $out"
        return
    fi
    command -v go >/dev/null || die "go is not installed: the real test bed builds its binaries with Go"
    local start=$SECONDS tmp="$out.tmp.$$"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    log "$name: building $* ..."
    (cd "$mod" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$tmp/" "$@") ||
        die "$name: go build failed (see above)"
    touch "$tmp/.complete"
    rm -rf "$out"
    mv "$tmp" "$out"
    log "$name: built in $((SECONDS - start)) s"
}

build() {
    local v
    v=$(resolve_version "${OPT_VERSION:-newest}")
    local minor pkg=k8s.io/component-base/version
    minor=$(minor_of "$v")
    local start=$SECONDS
    mkdir -p "$CACHE"
    go_build "kubernetes $v" "$(kube_dir "$v")" "$TOOLS/kube-v1.$minor" \
        "-s -w -X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z" \
        k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler
    go_build "etcd $ETCD_VERSION" "$(etcd_dir)" "$TOOLS/etcd" "-s -w" .
    go_build "kwok $KWOK_VERSION" "$(kwok_dir)" "$TOOLS/kwok" \
        "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}" sigs.k8s.io/kwok/cmd/kwok
    log "build of $v done in $((SECONDS - start)) s"
}

bin_path() { # NAME VERSION
    case $1 in
        etcd) echo "$(etcd_dir)/etcd" ;;
        kwok) echo "$(kwok_dir)/kwok" ;;
        *) echo "$(kube_dir "$2")/$1" ;;
    esac
}

# ---------------------------------------------------------------------------
# up / down

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_until SECONDS WHAT COMMAND...: polls COMMAND every 0.2 s; on timeout
# fails naming WHAT and the log to read.
wait_until() {
    local limit=$1 what=$2
    shift 2
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            die "$what not ready after ${limit} s"
        fi
        sleep 0.2
    done
}

gen_certs() {
    local d=$1/pki
    mkdir -p "$d"
    (
        cd "$d"
        openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 30 -subj "/CN=drover-test-ca" 2>/dev/null
        cat >server.ext <<EOF
subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc
extendedKeyUsage=serverAuth
EOF
        openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=kube-apiserver" 2>/dev/null
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 30 -extfile server.ext 2>/dev/null
        # Client certificates: CN is the user, O the group.
        for who in "admin:system:masters" "kube-controller-manager:" "kube-scheduler:" "kwok:system:masters" "agent:system:masters"; do
            local cn=${who%%:*} org=${who#*:} subj
            case $cn in
                kube-controller-manager | kube-scheduler) subj="/CN=system:$cn" ;;
                *) subj="/CN=$cn" ;;
            esac
            [[ -n $org ]] && subj="/O=$org$subj"
            openssl req -newkey rsa:2048 -nodes -keyout "$cn.key" -out "$cn.csr" -subj "$subj" 2>/dev/null
            printf 'extendedKeyUsage=clientAuth\n' >client.ext
            openssl x509 -req -in "$cn.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$cn.crt" -days 30 -extfile client.ext 2>/dev/null
        done
        openssl genrsa -out sa.key 2048 2>/dev/null
        openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
        rm -f ./*.csr ./*.ext ./*.srl
    )
}

write_kubeconfig() { # FILE SERVER USER [TOKEN]
    local f=$1 server=$2 user=$3 token=${4:-}
    local pki
    pki=$(dirname "$f")/pki
    {
        cat <<EOF
apiVersion: v1
kind: Config
clusters:
- name: drover-test
  cluster:
    server: $server
    certificate-authority: $pki/ca.crt
contexts:
- name: drover-test
  context: {cluster: drover-test, user: $user}
current-context: drover-test
users:
- name: $user
  user:
EOF
        if [[ -n $token ]]; then
            echo "    token: $token"
        else
            echo "    client-certificate: $pki/$user.crt"
            echo "    client-key: $pki/$user.key"
        fi
    } >"$f"
}

# start NAME COMMAND...: runs COMMAND in the background with its log in
# DIR/logs/NAME.log (appended to), its pid in DIR/pids/NAME and its command
# line in DIR/cmd/NAME (one argument per line, for restart-apiserver).
start() {
    local name=$1
    shift
    mkdir -p "$DIR/logs" "$DIR/pids" "$DIR/cmd"
    printf '%s\n' "$@" >"$DIR/cmd/$name"
    setsid "$@" >>"$DIR/logs/$name.log" 2>&1 </dev/null &
    echo $! >"$DIR/pids/$name"
}

# wait_or_kill PID DEADLINE: waits for PID (and its process group) to exit,
# SIGKILL at DEADLINE (in $SECONDS).
wait_or_kill() {
    local pid=$1 deadline=$2
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.1
    done
}

# restart-apiserver: as a control-plane node's kube-apiserver restarts
# (an upgrade, a crash): SIGTERM, at most 15 s to exit (then SIGKILL), the
# same command line again, and /readyz within 90 s. Its clients see
# refused connections and their watches end meanwhile.
restart_apiserver() {
    DIR=${OPT_DIR:-$ROOT/target/controlplane}
    [[ -f $DIR/cmd/kube-apiserver && -f $DIR/pids/kube-apiserver ]] ||
        die "no kube-apiserver started by this script in $DIR"
    local t0=$SECONDS
    local pid
    pid=$(cat "$DIR/pids/kube-apiserver")
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    wait_or_kill "$pid" $((SECONDS + 15))
    local -a cmd
    mapfile -t cmd <"$DIR/cmd/kube-apiserver"
    echo "--- restarted by controlplane.sh restart-apiserver at $(date +%H:%M:%S)" >>"$DIR/logs/kube-apiserver.log"
    start kube-apiserver "${cmd[@]}"
    local k=(kubectl --kubeconfig "$DIR/admin.kubeconfig" --request-timeout 10s)
    deadline=$((SECONDS + 90))
    until "${k[@]}" get --raw /readyz >/dev/null 2>&1; do
        check_alive kube-apiserver
        ((SECONDS < deadline)) || die "kube-apiserver not ready 90 s after its restart (log: $DIR/logs/kube-apiserver.log)"
        sleep 0.3
    done
    log "kube-apiserver restarted in $((SECONDS - t0)) s"
}

alive() { [[ -f $DIR/pids/$1 ]] && kill -0 "$(cat "$DIR/pids/$1")" 2>/dev/null; }

# check_alive NAME: fails with the tail of NAME's log if it has exited.
check_alive() {
    alive "$1" || {
        tail -n 30 "$DIR/logs/$1.log" >&2 || true
        die "$1 exited (log: $DIR/logs/$1.log)"
    }
}

up() {
    local v
    v=$(resolve_version "${OPT_VERSION:-newest}")
    local speed=${OPT_SPEED:-10}
    DIR=${OPT_DIR:-$ROOT/target/controlplane}
    mkdir -p "$DIR"
    DIR=$(cd "$DIR" && pwd)
    if [[ -d $DIR/pids ]] && compgen -G "$DIR/pids/*" >/dev/null; then
        down_dir "$DIR"
    fi
    local t0=$SECONDS
    OPT_VERSION=$v build
    local t_build=$((SECONDS - t0))
    command -v openssl >/dev/null || die "openssl is not installed (apt-get install openssl)"
    command -v kubectl >/dev/null || die "kubectl is not installed"
    rm -rf "$DIR/pki" "$DIR/etcd-data" "$DIR/logs" "$DIR/pids" "$DIR/cmd" "$DIR"/*.kubeconfig "$DIR/audit.log" "$DIR/ready"
    gen_certs "$DIR"

    local etcd_client etcd_peer api kcm_port sched_port kwok_port
    etcd_client=$(free_port)
    etcd_peer=$(free_port)
    api=$(free_port)
    kcm_port=$(free_port)
    sched_port=$(free_port)
    kwok_port=$(free_port)
    local server=https://127.0.0.1:$api
    echo "$server" >"$DIR/server"
    echo "$v" >"$DIR/version"
    echo "$speed" >"$DIR/speed"

    start etcd "$(bin_path etcd)" --name drover-test --data-dir "$DIR/etcd-data" \
        --listen-client-urls "http://127.0.0.1:$etcd_client" --advertise-client-urls "http://127.0.0.1:$etcd_client" \
        --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
        --initial-cluster "drover-test=http://127.0.0.1:$etcd_peer" \
        --listen-metrics-urls "" --quota-backend-bytes 2147483648 --unsafe-no-fsync --log-level warn
    wait_until 30 etcd curl -sf "http://127.0.0.1:$etcd_client/health"
    log "etcd up ($((SECONDS - t0 - t_build)) s)"

    local pki=$DIR/pki
    # The audit policy: one JSON line per request at Metadata level (user,
    # verb, resource, subresource, code); reads of leases and events left
    # out to keep the file small.
    cat >"$DIR/audit-policy.yaml" <<'EOF'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  resources: [{group: coordination.k8s.io, resources: [leases]}]
  namespaces: [kube-node-lease, kube-system]
  verbs: [get, update, patch]
- level: None
  nonResourceURLs: ["/healthz*", "/readyz*", "/livez*", "/version", "/metrics"]
- level: Metadata
EOF
    start kube-apiserver "$(bin_path kube-apiserver "$v")" \
        --etcd-servers "http://127.0.0.1:$etcd_client" \
        --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api" \
        --endpoint-reconciler-type none \
        --tls-cert-file "$pki/server.crt" --tls-private-key-file "$pki/server.key" \
        --client-ca-file "$pki/ca.crt" --allow-privileged=true \
        --authorization-mode Node,RBAC \
        --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
        --service-account-issuer https://kubernetes.default.svc.cluster.local \
        --service-account-max-token-expiration 48h \
        --service-cluster-ip-range 10.96.0.0/16 \
        --audit-log-path "$DIR/audit.log" --audit-log-format json --audit-log-maxsize 0 \
        --audit-policy-file "$DIR/audit-policy.yaml" --audit-log-mode batch \
        --audit-log-batch-max-wait 1s \
        --max-requests-inflight 800 --max-mutating-requests-inflight 400 \
        --enable-priority-and-fairness=false \
        --profiling=false --v=1 ${OPT_APISERVER_ARGS[@]+"${OPT_APISERVER_ARGS[@]}"}
    write_kubeconfig "$DIR/admin.kubeconfig" "$server" admin
    local k=(kubectl --kubeconfig "$DIR/admin.kubeconfig" --request-timeout 10s)
    local deadline=$((SECONDS + 90))
    until "${k[@]}" get --raw /readyz >/dev/null 2>&1; do
        check_alive kube-apiserver
        ((SECONDS < deadline)) || die "kube-apiserver not ready after 90 s (log: $DIR/logs/kube-apiserver.log)"
        sleep 0.3
    done
    log "kube-apiserver $v up at $server ($((SECONDS - t0 - t_build)) s)"

    write_kubeconfig "$DIR/kube-controller-manager.kubeconfig" "$server" kube-controller-manager
    write_kubeconfig "$DIR/kube-scheduler.kubeconfig" "$server" kube-scheduler
    write_kubeconfig "$DIR/kwok.kubeconfig" "$server" kwok
    write_kubeconfig "$DIR/agent.kubeconfig" "$server" agent

    # Timing flags scale with --speed (docs/testing.md): a node whose lease
    # stops being renewed is NotReady after 40 s / speed, but never less
    # than 20 s, since KWOK renews each node's 10 s lease every 2.5 s.
    local grace
    grace=$(awk -v s="$speed" 'BEGIN { g = 40 / s; if (g < 20) g = 20; printf "%ds", g }')
    start kube-controller-manager "$(bin_path kube-controller-manager "$v")" \
        --kubeconfig "$DIR/kube-controller-manager.kubeconfig" \
        --authentication-kubeconfig "$DIR/kube-controller-manager.kubeconfig" \
        --authorization-kubeconfig "$DIR/kube-controller-manager.kubeconfig" \
        --bind-address 127.0.0.1 --secure-port "$kcm_port" \
        --root-ca-file "$pki/ca.crt" --service-account-private-key-file "$pki/sa.key" \
        --use-service-account-credentials=true \
        --controllers '*' \
        --node-monitor-period 1s --node-monitor-grace-period "$grace" \
        --concurrent-deployment-syncs 10 --concurrent-replicaset-syncs 10 --concurrent-job-syncs 10 \
        --kube-api-qps 200 --kube-api-burst 400 \
        --leader-elect=false --profiling=false --v=1
    start kube-scheduler "$(bin_path kube-scheduler "$v")" \
        --kubeconfig "$DIR/kube-scheduler.kubeconfig" \
        --authentication-kubeconfig "$DIR/kube-scheduler.kubeconfig" \
        --authorization-kubeconfig "$DIR/kube-scheduler.kubeconfig" \
        --bind-address 127.0.0.1 --secure-port "$sched_port" \
        --kube-api-qps 200 --kube-api-burst 400 \
        --leader-elect=false --profiling=false --v=1

    stages "$speed" >"$DIR/kwok-stages.yaml"
    start kwok "$(bin_path kwok)" --kubeconfig "$DIR/kwok.kubeconfig" --config "$DIR/kwok-stages.yaml" \
        --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
        --node-lease-duration-seconds 10 --cidr 10.244.0.0/16 --node-ip 10.0.0.1 \
        --server-address "127.0.0.1:$kwok_port"

    # drover's namespace and ServiceAccount (its RBAC comes from deploy/),
    # and a token for it valid 48 h.
    deadline=$((SECONDS + 60))
    until "${k[@]}" get serviceaccount default -n default >/dev/null 2>&1; do
        check_alive kube-controller-manager
        ((SECONDS < deadline)) || die "the ServiceAccount controller made no default ServiceAccount in 60 s"
        sleep 0.3
    done
    "${k[@]}" create namespace drover-system >/dev/null
    "${k[@]}" create serviceaccount drover -n drover-system >/dev/null
    local token
    token=$("${k[@]}" create token drover -n drover-system --duration 48h)
    write_kubeconfig "$DIR/drover.kubeconfig" "$server" drover "$token"
    for c in kube-controller-manager kube-scheduler kwok; do check_alive "$c"; done
    log "control plane up ($((SECONDS - t0 - t_build)) s)"

    if [[ -n ${OPT_SCENARIO:-} ]]; then
        # The agent: $KUBESIM_BIN, else a built kubesim, else one built now.
        local agent=${KUBESIM_BIN:-}
        if [[ -z $agent ]]; then
            for agent in "$ROOT/target/release/kubesim" "$ROOT/target/debug/kubesim" ""; do
                [[ -x $agent ]] && break
            done
        fi
        if [[ -z $agent ]]; then
            log "building kubesim (the scenario's agent) ..."
            (cd "$ROOT" && cargo build -q --release -p kubesim --bin kubesim) || die "cannot build kubesim"
            agent=$ROOT/target/release/kubesim
        fi
        rm -f "$DIR/health.url"
        start agent "$agent" agent --kubeconfig "$DIR/agent.kubeconfig" --scenario "$OPT_SCENARIO" \
            --speed "$speed" --ready-file "$DIR/ready" \
            --health-listen 127.0.0.1:0 --health-url-file "$DIR/health.url"
        deadline=$((SECONDS + 360))
        until [[ -f $DIR/ready ]]; do
            check_alive agent
            ((SECONDS < deadline)) || die "the scenario was not Running and Ready in 360 s (log: $DIR/logs/agent.log)"
            sleep 0.3
        done
        log "scenario $(basename "$OPT_SCENARIO") loaded ($((SECONDS - t0 - t_build)) s); health endpoints at $(cat "$DIR/health.url" 2>/dev/null)"
    fi
    log "ready in $((SECONDS - t0)) s: kubectl --kubeconfig $DIR/admin.kubeconfig get nodes,pods -A"
    echo "$DIR"
}

down_dir() {
    local d=$1 pid
    [[ -d $d/pids ]] || return 0
    for name in agent kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
        [[ -f $d/pids/$name ]] || continue
        pid=$(cat "$d/pids/$name")
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    done
    local deadline=$((SECONDS + 15))
    for f in "$d"/pids/*; do
        [[ -f $f ]] || continue
        wait_or_kill "$(cat "$f")" "$deadline"
        rm -f "$f"
    done
    log "stopped the control plane in $d"
}

down() { down_dir "${OPT_DIR:-$ROOT/target/controlplane}"; }

# ---------------------------------------------------------------------------
# KWOK's stages: what KWOK does as the kubelet, with the scenario's timing
# scaled by the speed. Unlike KWOK's defaults they leave drover's upgrade
# pods to the agent (which ends them when the simulated upgrade is done),
# they let a node the agent reboots go NotReady, and they leave the pods a
# bad version holds unready (annotated kubesim.drover.dev/unhealthy) so.
stages() {
    local speed=$1 ms
    ms() { awk -v s="$speed" -v x="$1" 'BEGIN { printf "%d", x * 1000 / s }'; }
    local start_ms ready_ms shutdown_ms job_ms
    start_ms=$(ms 2)
    ready_ms=$(ms 3)
    shutdown_ms=$(ms 2)
    job_ms=$(ms 10)
    cat <<EOF
# Generated by scripts/controlplane.sh for speed $speed.
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata: {name: node-initialize}
spec:
  resourceRef: {apiGroup: v1, kind: Node}
  selector:
    matchExpressions:
    - {key: '.status.conditions.[] | select( .type == "Ready" ) | .status', operator: NotIn, values: ['True']}
    - {key: '.metadata.annotations["kubesim.drover.dev/rebooting"]', operator: DoesNotExist}
  next:
    statusTemplate: |
      {{ \$now := Now }}
      conditions:
      {{ range NodeConditions }}
      - lastHeartbeatTime: {{ \$now | Quote }}
        lastTransitionTime: {{ \$now | Quote }}
        message: {{ .message | Quote }}
        reason: {{ .reason | Quote }}
        status: {{ .status | Quote }}
        type: {{ .type | Quote }}
      {{ end }}
      phase: Running
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata: {name: node-heartbeat}
spec:
  resourceRef: {apiGroup: v1, kind: Node}
  selector:
    matchExpressions:
    - {key: '.status.conditions.[] | select( .type == "Ready" ) | .status', operator: In, values: ['True']}
    - {key: '.metadata.annotations["kubesim.drover.dev/rebooting"]', operator: DoesNotExist}
  delay: {durationMilliseconds: 20000, jitterDurationMilliseconds: 25000}
  next:
    statusTemplate: |
      {{ \$now := Now }}
      conditions:
      {{ range .status.conditions }}
      - lastHeartbeatTime: {{ \$now | Quote }}
        lastTransitionTime: {{ .lastTransitionTime | Quote }}
        message: {{ .message | Quote }}
        reason: {{ .reason | Quote }}
        status: {{ .status | Quote }}
        type: {{ .type | Quote }}
      {{ end }}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata: {name: pod-start}
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchExpressions:
    - {key: '.metadata.deletionTimestamp', operator: DoesNotExist}
    - {key: '.status.phase', operator: In, values: [Pending]}
  delay: {durationMilliseconds: $start_ms}
  next:
    statusTemplate: |
      {{ \$now := Now }}
      conditions:
      - {lastTransitionTime: {{ \$now | Quote }}, status: "True", type: PodScheduled}
      - {lastTransitionTime: {{ \$now | Quote }}, status: "True", type: Initialized}
      - {lastTransitionTime: {{ \$now | Quote }}, status: "False", type: Ready, reason: ContainersNotReady}
      - {lastTransitionTime: {{ \$now | Quote }}, status: "False", type: ContainersReady, reason: ContainersNotReady}
      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: false
        started: true
        restartCount: 0
        state: {running: {startedAt: {{ \$now | Quote }}}}
      {{ end }}
      {{ \$hostIPs := NodeIPsWith .spec.nodeName }}
      {{ with \$hostIPs }}
      hostIP: {{ index . 0 | Quote }}
      hostIPs:
      {{ range . }}
      - ip: {{ . | Quote }}
      {{ end }}
      {{ end }}
      {{ \$podIPs := PodIPsWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) }}
      {{ with \$podIPs }}
      podIP: {{ index . 0 | Quote }}
      podIPs:
      {{ range . }}
      - ip: {{ . | Quote }}
      {{ end }}
      {{ end }}
      phase: Running
      startTime: {{ \$now | Quote }}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata: {name: pod-ready}
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchExpressions:
    - {key: '.metadata.deletionTimestamp', operator: DoesNotExist}
    - {key: '.status.phase', operator: In, values: [Running]}
    - {key: '.status.conditions.[] | select( .type == "Ready" ) | .status', operator: NotIn, values: ['True']}
    - {key: '.metadata.annotations["kubesim.drover.dev/restarting"]', operator: DoesNotExist}
    - {key: '.metadata.annotations["kubesim.drover.dev/unhealthy"]', operator: DoesNotExist}
  delay: {durationMilliseconds: $ready_ms}
  next:
    statusTemplate: |
      {{ \$now := Now }}
      conditions:
      - {lastTransitionTime: {{ \$now | Quote }}, status: "True", type: Ready}
      - {lastTransitionTime: {{ \$now | Quote }}, status: "True", type: ContainersReady}
      containerStatuses:
      {{ range .status.containerStatuses }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: true
        started: true
        restartCount: {{ .restartCount }}
        state: {running: {startedAt: {{ \$now | Quote }}}}
      {{ end }}
---
# Job pods run for the scenario's jobRunSeconds, except drover's upgrade
# pods (labelled drover.dev/component), which the agent ends.
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata: {name: pod-complete}
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchExpressions:
    - {key: '.metadata.deletionTimestamp', operator: DoesNotExist}
    - {key: '.status.phase', operator: In, values: [Running]}
    - {key: '.metadata.ownerReferences.[].kind', operator: In, values: [Job]}
    - {key: '.metadata.labels["drover.dev/component"]', operator: DoesNotExist}
  delay: {durationMilliseconds: $job_ms}
  next:
    statusTemplate: |
      {{ \$now := Now }}
      conditions:
      - {lastTransitionTime: {{ \$now | Quote }}, status: "False", type: Ready, reason: PodCompleted}
      - {lastTransitionTime: {{ \$now | Quote }}, status: "False", type: ContainersReady, reason: PodCompleted}
      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: false
        started: false
        restartCount: 0
        state: {terminated: {exitCode: 0, reason: Completed, startedAt: {{ \$now | Quote }}, finishedAt: {{ \$now | Quote }}}}
      {{ end }}
      phase: Succeeded
---
# Graceful deletion: the containers stop podShutdownSeconds after the
# deletion starts, then the pod object is removed (a pod deleted with grace
# 0 is removed by the API server at once).
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata: {name: pod-delete}
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchExpressions:
    - {key: '.metadata.deletionTimestamp', operator: Exists}
  delay: {durationMilliseconds: $shutdown_ms}
  next:
    finalizers: {empty: true}
    delete: true
EOF
}

# ---------------------------------------------------------------------------

CMD=${1:-}
[[ -n $CMD ]] && shift
OPT_DIR= OPT_VERSION= OPT_SCENARIO= OPT_SPEED=
OPT_APISERVER_ARGS=()
while (($#)); do
    case $1 in
        --dir) OPT_DIR=$2; shift 2 ;;
        --version) OPT_VERSION=$2; shift 2 ;;
        --scenario) OPT_SCENARIO=$(cd "$(dirname "$2")" && pwd)/$(basename "$2"); shift 2 ;;
        --speed) OPT_SPEED=$2; shift 2 ;;
        --apiserver-arg) OPT_APISERVER_ARGS+=("$2"); shift 2 ;;
        *) die "unknown option '$1' (see the top of $0)" ;;
    esac
done
case $CMD in
    build) build ;;
    up) up ;;
    down) down ;;
    restart-apiserver) restart_apiserver ;;
    versions) printf '%s\n' "${VERSIONS[@]}" ;;
    bin-dir) kube_dir "$(resolve_version "${OPT_VERSION:-newest}")" ;;
    stages) stages "${OPT_SPEED:-10}" ;;
    *) die "usage: $0 build|up|down|restart-apiserver|versions|bin-dir|stages [options] (see the top of $0)" ;;
esac
