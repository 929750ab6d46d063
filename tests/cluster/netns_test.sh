#!/usr/bin/env bash
# Layer-placement training across network namespaces: the supervisor (and the
# client) and two nodes each in their own namespace with their own address on
# a private /24, joined by veth pairs on a bridge, with mutual TLS whose
# certificates name each process's address. The trained model must equal a
# single-process run byte for byte, and /status must show each node's own
# data-plane address.
#
#   netns_test.sh TROUPE DATA_DIR
#
# Needs root, iproute2 and network-namespace support; otherwise exits 77
# (skipped).
set -u

TROUPE=${1:?usage: netns_test.sh TROUPE DATA_DIR}
DATA=${2:?usage: netns_test.sh TROUPE DATA_DIR}
TROUPE=$(readlink -f "$TROUPE")
DATA=$(readlink -f "$DATA")
STEPS=30

skip() { echo "SKIP: $*"; exit 77; }

[ "$(id -u)" -eq 0 ] || skip "not root (network namespaces need root)"
command -v ip >/dev/null 2>&1 || skip "the ip command (iproute2) is missing"
command -v python3 >/dev/null 2>&1 || skip "python3 is missing (used to read JSON and HTTP)"
[ -x "$TROUPE" ] || { echo "FAIL: $TROUPE is not executable"; exit 1; }
[ -d "$DATA/mnist" ] || { echo "FAIL: no MNIST data in $DATA/mnist"; exit 1; }

ID=$$
PREFIX="troupe-netns"
NS_BR="${PREFIX}-${ID}-sw"     # holds the bridge: host firewall rules never apply
NS_S="${PREFIX}-${ID}-sup"     # supervisor and client
NS_1="${PREFIX}-${ID}-n1"
NS_2="${PREFIX}-${ID}-n2"
TAG="tr${ID}"                  # interface names stay <= 15 characters
BR="${TAG}br"
NET="10.251.$((ID % 250 + 1))"
SUP_IP="$NET.1"
N1_IP="$NET.2"
N2_IP="$NET.3"

WORK=$(mktemp -d "/tmp/${PREFIX}-${ID}-XXXXXX")
PIDS=()
CREATED_NS=()

kill_ns() {  # NS: end what runs inside one of this test's namespaces, then delete it
  local p
  for p in $(ip netns pids "$1" 2>/dev/null); do
    kill -KILL "$p" 2>/dev/null
  done
  ip netns del "$1" 2>/dev/null
}

cleanup() {
  local p ns
  for p in "${PIDS[@]}"; do
    kill -KILL "$p" 2>/dev/null
  done
  for p in "${PIDS[@]}"; do
    wait "$p" 2>/dev/null
  done
  # Deleting the namespaces deletes the veth pairs and the bridge inside them.
  for ns in "${CREATED_NS[@]}"; do
    kill_ns "$ns"
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

dump_logs() {
  local f
  for f in "$WORK"/*.log; do
    [ -f "$f" ] || continue
    echo "--- $f"
    tail -c 3000 "$f"
  done
}

fail() { echo "FAIL: $*"; dump_logs; exit 1; }
ok() { echo "ok: $*"; }

# Namespaces and directories of earlier runs that were killed (SIGKILL from a
# ctest timeout skips the trap): their shell is gone, so remove them.
stale() {  # NAME: true if NAME is PREFIX-PID-... of a run that is gone
  local owner=${1#"${PREFIX}-"}
  owner=${owner%%-*}
  [ -n "$owner" ] && [ "$owner" != "$ID" ] && ! kill -0 "$owner" 2>/dev/null
}
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^${PREFIX}-[0-9][0-9]*-"); do
  if stale "$ns"; then
    echo "removing stale namespace $ns"
    kill_ns "$ns"
  fi
done
for d in /tmp/"${PREFIX}"-[0-9]*-*; do
  [ -d "$d" ] && stale "${d#/tmp/}" && rm -rf "$d"
done

# --- network ---------------------------------------------------------------
if ! err=$(ip netns add "$NS_BR" 2>&1); then
  skip "ip netns add failed (no CAP_SYS_ADMIN or no netns support?): $err"
fi
CREATED_NS+=("$NS_BR")
for ns in "$NS_S" "$NS_1" "$NS_2"; do
  ip netns add "$ns" || fail "ip netns add $ns"
  CREATED_NS+=("$ns")
done

if ! err=$(ip -n "$NS_BR" link add "$BR" type bridge 2>&1); then
  skip "cannot create a bridge (no bridge support?): $err"
fi
ip -n "$NS_BR" link set "$BR" up || fail "ip link set $BR up"

# One veth pair per namespace: one end on the bridge in the switch namespace,
# the other (eth0) inside the namespace with that process's address.
plug() {  # NS SUFFIX ADDR
  local ns=$1 port="${TAG}$2" addr=$3
  if ! err=$(ip -n "$NS_BR" link add "$port" type veth peer name eth0 netns "$ns" 2>&1); then
    skip "cannot create a veth pair (no veth support?): $err"
  fi
  ip -n "$NS_BR" link set "$port" master "$BR" || fail "attach $port to $BR"
  ip -n "$NS_BR" link set "$port" up || fail "ip link set $port up"
  ip -n "$ns" addr add "$addr/24" dev eth0 || fail "address $addr in $ns"
  ip -n "$ns" link set eth0 up || fail "eth0 up in $ns"
  ip -n "$ns" link set lo up || fail "lo up in $ns"
}
plug "$NS_S" s "$SUP_IP"
plug "$NS_1" a "$N1_IP"
plug "$NS_2" b "$N2_IP"

# The namespaces reach each other over the bridge: a TCP connection to a
# closed port is refused (RST) once the peer's address resolves.
reach() {  # NS ADDR
  ip netns exec "$1" python3 - "$2" <<'EOF' >/dev/null 2>&1
import socket, sys, time
deadline = time.time() + 10
while time.time() < deadline:
    try:
        socket.create_connection((sys.argv[1], 9), timeout=1).close()
        sys.exit(0)
    except ConnectionRefusedError:
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
EOF
}
reach "$NS_1" "$SUP_IP" || fail "$NS_1 cannot reach $SUP_IP over the bridge"
reach "$NS_2" "$SUP_IP" || fail "$NS_2 cannot reach $SUP_IP over the bridge"
reach "$NS_1" "$N2_IP" || fail "$NS_1 cannot reach $N2_IP over the bridge"
ok "namespaces $NS_S ($SUP_IP), $NS_1 ($N1_IP), $NS_2 ($N2_IP) reach each other"

in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# --- certificates: each names its process's address -------------------------
CERTS="$WORK/certs"
"$TROUPE" certs init --dir "$CERTS" >"$WORK/certs.log" 2>&1 || fail "troupe certs init"
issue() {  # NAME HOST
  "$TROUPE" certs issue --dir "$CERTS" --name "$1" --host "$2" >>"$WORK/certs.log" 2>&1 \
    || fail "troupe certs issue $1 --host $2"
}
issue supervisor "$SUP_IP"
issue client "$SUP_IP"      # the client runs in the supervisor's namespace
issue n1 "$N1_IP"
issue n2 "$N2_IP"
ok "certificates for supervisor@$SUP_IP, client@$SUP_IP, n1@$N1_IP, n2@$N2_IP"

# --- processes ------------------------------------------------------------
# `ip netns exec` execs the command, so $! is the troupe process itself (not
# through a shell function, which would put a subshell in between).
INFO="$WORK/supervisor.json"
ip netns exec "$NS_S" "$TROUPE" supervisor --listen "$SUP_IP:0" --status 127.0.0.1:0 --certs "$CERTS" \
  --expect-nodes 2 --info-file "$INFO" >"$WORK/supervisor.log" 2>&1 &
SUP_PID=$!
PIDS+=("$SUP_PID")

for _ in $(seq 200); do
  [ -s "$INFO" ] && python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$INFO" 2>/dev/null && break
  kill -0 "$SUP_PID" 2>/dev/null || fail "the supervisor exited early"
  sleep 0.1
done
[ -s "$INFO" ] || fail "timed out waiting for the supervisor's info file"
info() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$INFO" "$1"; }
PORT=$(info port)
STATUS_PORT=$(info status_port)
ok "supervisor listening on $SUP_IP:$PORT (status on 127.0.0.1:$STATUS_PORT in $NS_S)"

ip netns exec "$NS_1" "$TROUPE" node --supervisor "$SUP_IP:$PORT" --data-address "$N1_IP" \
  --certs "$CERTS" --name n1 --no-measure >"$WORK/node-n1.log" 2>&1 &
N1_PID=$!
PIDS+=("$N1_PID")
ip netns exec "$NS_2" "$TROUPE" node --supervisor "$SUP_IP:$PORT" --data-address "$N2_IP" \
  --certs "$CERTS" --name n2 --no-measure >"$WORK/node-n2.log" 2>&1 &
N2_PID=$!
PIDS+=("$N2_PID")

status_json() {
  in_ns "$NS_S" python3 - "$STATUS_PORT" <<'EOF'
import sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/status", timeout=5) as r:
    sys.stdout.write(r.read().decode())
EOF
}
metrics_text() {
  in_ns "$NS_S" python3 - "$STATUS_PORT" <<'EOF'
import sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5) as r:
    sys.stdout.write(r.read().decode())
EOF
}
ready_count() {
  status_json 2>/dev/null | python3 -c \
    'import json,sys; print(sum(1 for n in json.load(sys.stdin)["nodes"] if n["ready"]))' 2>/dev/null
}

n=0
for _ in $(seq 300); do
  n=$(ready_count)
  [ "${n:-0}" = 2 ] && break
  for p in "$SUP_PID" "$N1_PID" "$N2_PID"; do
    kill -0 "$p" 2>/dev/null || fail "process $p exited before the nodes were ready"
  done
  sleep 0.1
done
[ "${n:-0}" = 2 ] || fail "timed out waiting for 2 ready nodes (have ${n:-0})"
ok "2 nodes ready across namespaces"

# --- the job --------------------------------------------------------------
CK_CLUSTER="$WORK/ck-cluster"
CK_LOCAL="$WORK/ck-local"
# Seen while it runs: which node pid hosts each stage actor.
SEEN="$WORK/seen.json"
ip netns exec "$NS_S" timeout 90 "$TROUPE" train --supervisor "$SUP_IP:$PORT" --certs "$CERTS" \
  --name client --model mlp --stages 2 --steps "$STEPS" --no-eval --no-progress \
  --data "$DATA/mnist" --checkpoint "$CK_CLUSTER" >"$WORK/client.log" 2>&1 &
CLIENT_PID=$!
PIDS+=("$CLIENT_PID")
echo '{}' >"$SEEN"
while kill -0 "$CLIENT_PID" 2>/dev/null; do
  status_json 2>/dev/null | python3 -c '
import json, sys
seen = json.load(open(sys.argv[1]))
s = json.load(sys.stdin)
for a in s["job"]["actors"] + s["job"]["previous_actors"]:
    if a["kind"] == "layer_shard":
        seen[a["label"]] = a["pid"]
json.dump(seen, open(sys.argv[1], "w"))' "$SEEN" 2>/dev/null
  sleep 0.05
done
wait "$CLIENT_PID"
rc=$?
[ "$rc" -eq 0 ] || fail "the cluster job failed (exit $rc)"
ok "the cluster job succeeded"

python3 - "$SEEN" "$N1_PID" "$N2_PID" <<'EOF' || fail "stage actors not on the two node processes: $(cat "$SEEN")"
import json, sys
seen = json.load(open(sys.argv[1]))
assert len(seen) == 2 and set(seen.values()) == {int(sys.argv[2]), int(sys.argv[3])}, seen
EOF
ok "/status showed the 2 stage actors in the 2 node pids ($(cat "$SEEN"))"

# --- /status: each node advertises its own address ---------------------------
ST="$WORK/status.json"
status_json >"$ST" || fail "GET /status inside $NS_S"
python3 - "$ST" "$N1_IP" "$N2_IP" <<'EOF' || fail "nodes' data_plane hosts in /status: $(cat "$ST")"
import json, sys
s = json.load(open(sys.argv[1]))
hosts = {n["name"]: n["data_plane"]["host"] for n in s["nodes"]}
print("data_plane hosts:", hosts)
assert hosts == {"n1": sys.argv[2], "n2": sys.argv[3]}, hosts
EOF
ok "/status: n1 data_plane.host=$N1_IP, n2 data_plane.host=$N2_IP"

sleep 1.0  # one more heartbeat brings the nodes' final counters
metrics_text >"$WORK/metrics.txt" || fail "GET /metrics inside $NS_S"
DP=$(python3 - "$WORK/metrics.txt" <<'EOF'
import re, sys
t = open(sys.argv[1]).read()
v = [float(x) for x in re.findall(
    r'^troupe_dataplane_peer_bytes_sent_total\{node="n[12]",peer="n[12]"\} (\S+)$', t, re.M)]
print(int(sum(v)))
EOF
)
[ "${DP:-0}" -gt 0 ] || fail "no node-to-node data-plane bytes in /metrics"
ok "node-to-node data-plane bytes over the veth links: $DP"

# That traffic went through n1's veth (bytes n1 received plus sent).
VETH=$(( $(ip netns exec "$NS_1" cat /sys/class/net/eth0/statistics/rx_bytes) +
         $(ip netns exec "$NS_1" cat /sys/class/net/eth0/statistics/tx_bytes) ))
[ "$VETH" -ge "$((DP / 2))" ] || fail "n1's eth0 carried only $VETH bytes (data plane: $DP)"
ok "n1's veth carried $VETH bytes"

kill -TERM "$SUP_PID"
for p in "$SUP_PID" "$N1_PID" "$N2_PID"; do
  for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$p" 2>/dev/null && fail "process $p still running 10 s after SIGTERM to the supervisor"
  wait "$p"
  rc=$?
  [ "$rc" -eq 0 ] || fail "process $p exited $rc"
done
ok "SIGTERM stops the supervisor, which stops the nodes; all exit 0"

# --- single-process reference ------------------------------------------------
(cd "$WORK" && timeout 60 "$TROUPE" train --model mlp --stages 2 --threads 2 --steps "$STEPS" \
  --no-eval --no-progress --data "$DATA/mnist" --checkpoint "$CK_LOCAL" >"$WORK/local.log" 2>&1) \
  || fail "the single-process run failed"
ok "the single-process run succeeded"

[ -f "$CK_CLUSTER/model.safetensors" ] || fail "no $CK_CLUSTER/model.safetensors"
cmp "$CK_CLUSTER/model.safetensors" "$CK_LOCAL/model.safetensors" \
  || fail "the cluster model differs from the single-process one"
ok "model.safetensors is byte-identical to the single-process run"

echo "PASS netns"
