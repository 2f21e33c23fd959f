#!/usr/bin/env bash
# A two-node test bed on one machine: two network namespaces ("nodes" a and
# b) joined by one veth pair, the only interface of each besides loopback,
# shaped to a given bandwidth with tc tbf in both directions; MPI ranks are
# started in each namespace by mpirun with an rsh agent that enters the
# namespace, and Open MPI talks TCP over the veth only. No default route, no
# bridge to the host: the two namespaces reach each other and nothing else.
# What it does not model: latency (netem is not available everywhere; tbf
# shapes bandwidth only), separate CPUs, memory or file systems (the "nodes"
# share the kernel, the cores and the files).
#
#   scripts/netbed.sh check                      can beds be made here? else one line why, exit 1
#   scripts/netbed.sh up [--name NAME] [--rate RATE] [--owner PID]
#                                                make a bed, print its name (default name pgml<pid>,
#                                                rate 10gbit; it belongs to PID, default the caller)
#   scripts/netbed.sh down NAME | --stale        remove a bed, or every bed whose owner has exited
#   scripts/netbed.sh run [--name NAME] [--rate RATE] -- CMD [ARGS...]
#                                                bed up, CMD with NETBED_NAME in its environment,
#                                                bed down on every exit (signals included)
#   scripts/netbed.sh mpirun NAME MPIRUN_ARGS... mpirun in node a, one slot on each node
#   scripts/netbed.sh bytes NAME                 bytes sent a->b and b->a over the veth so far
#   scripts/netbed.sh env NAME                   the bed as shell assignments (NETBED_*)
#   scripts/netbed.sh status                     every bed: owner, shaping, counters
#
# A bed is recorded in $NETBED_STATE/NAME (default /run/proxygml-netbed; /run
# is emptied at boot, as are the namespaces) with the PID and start time of
# its owner. `up` first removes the beds whose owner has exited, so a bed left
# by an owner killed with SIGKILL (the one signal no trap sees) is removed by
# the next `up` or by `down --stale`.
# Run as root (namespaces, veth and qdiscs need CAP_NET_ADMIN/CAP_SYS_ADMIN).
set -euo pipefail

SELF=$(readlink -f "$0")
STATE=${NETBED_STATE:-/run/proxygml-netbed}
# The same addresses in every bed: each bed's pair lives in its own two
# namespaces with no route anywhere else, so concurrent beds cannot collide.
ADDR_A=10.213.0.1 ADDR_B=10.213.0.2 SUBNET=10.213.0.0/30
IF_A=vetha IF_B=vethb

die() { echo "netbed: $*" >&2; exit 1; }

# bits per second of a tc rate (10gbit, 1gbit, 500mbit, 100kbit, 1000000)
rate_bps() {
  local r=${1,,} n u
  [[ $r =~ ^([0-9]+)(|bit|kbit|mbit|gbit)$ ]] || die "rate '$1': expected e.g. 10gbit, 1gbit, 500mbit"
  n=${BASH_REMATCH[1]} u=${BASH_REMATCH[2]}
  case $u in ""|bit) echo "$n" ;; kbit) echo $((n * 1000)) ;; mbit) echo $((n * 1000000)) ;; gbit) echo $((n * 1000000000)) ;; esac
}

valid_name() { [[ $1 =~ ^[a-z][a-z0-9]{0,15}$ ]] || die "name '$1': lower-case letters and digits, at most 16, starting with a letter"; }

# the start time of process PID (field 22 of /proc/PID/stat): with the PID it
# tells a live owner from a later process that reuses the PID
proc_id() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }   # the command name may hold spaces: cut after its ')'
  # shellcheck disable=SC2086
  set -- $stat
  [ "$1" != Z ] || return 1   # a zombie has exited
  echo "${20}"
}
owner_alive() {   # owner_alive STATEDIR
  local pid start now
  read -r pid start <"$1/owner" 2>/dev/null || return 1
  now=$(proc_id "$pid") || return 1
  [ "$now" = "$start" ]
}

load() {   # load NAME: the bed's namespaces and agent, or fail
  valid_name "$1"
  NAME=$1 NS_A=$1-a NS_B=$1-b DIR=$STATE/$1
  [ -f "$DIR/owner" ] || die "no bed '$1' (scripts/netbed.sh status lists them)"
  RATE=$(cat "$DIR/rate")
}

# Every process in the bed's namespaces was started in the bed (by `mpirun`
# or `run`), so ending them is ending our own: TERM first, so that mpirun can
# stop its ranks and remove its session directory, KILL what is left.
ns_pids() {   # ns_pids NS...: the live processes (not zombies) in the namespaces
  local ns
  for ns in "$@"; do ip netns pids "$ns" 2>/dev/null | grep -vx "$$" || true; done
}
kill_ns_procs() {   # kill_ns_procs NS...
  local pids
  pids=$(ns_pids "$@")
  [ -n "$pids" ] || return 0
  # shellcheck disable=SC2086
  kill -TERM $pids 2>/dev/null || true
  for _ in $(seq 40); do
    pids=$(ns_pids "$@")
    [ -n "$pids" ] || return 0
    sleep 0.05
  done
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null || true
}

down_bed() {   # down_bed NAME: whatever of the bed exists, in reverse order of up
  local name=$1 p mpiruns=""
  for p in $(ns_pids "$name-a"); do
    [ "$(cat "/proc/$p/comm" 2>/dev/null)" != mpirun ] || mpiruns+=" $p"
  done
  kill_ns_procs "$name-a" "$name-b"
  # the session directory of an mpirun that had to be killed outright
  for p in $mpiruns; do
    kill -0 "$p" 2>/dev/null || rm -rf "${TMPDIR:-/tmp}"/ompi.*/"pid.$p"
  done
  # deleting a namespace destroys its end of the veth, and with it the pair
  ip netns del "$name-a" 2>/dev/null || true
  ip netns del "$name-b" 2>/dev/null || true
  rm -rf "${STATE:?}/$name"
}

down_stale() {
  local d
  [ -d "$STATE" ] || return 0
  for d in "$STATE"/*/; do
    [ -d "$d" ] || continue
    d=${d%/}
    owner_alive "$d" && continue
    echo "netbed: removing bed '$(basename "$d")' (its owner has exited)" >&2
    down_bed "$(basename "$d")"
  done
  # the namespaces of a `check` that was killed
  local ns
  for ns in $(ip netns list 2>/dev/null | awk '$1 ~ /^netbedprobe[0-9]+-[ab]$/ {print $1}'); do
    ns=${ns#netbedprobe}
    proc_id "${ns%-?}" >/dev/null || ip netns del "netbedprobe$ns" 2>/dev/null || true
  done
  # a state directory that `up` had not yet renamed into place
  find "$STATE" -maxdepth 1 -name '.new.*' -mmin +1 -exec rm -rf {} + 2>/dev/null || true
}

cmd_check() {
  [ "$(id -u)" -eq 0 ] || { echo "not root: network namespaces need CAP_SYS_ADMIN"; exit 1; }
  command -v ip >/dev/null || { echo "no 'ip' command (package iproute2)"; exit 1; }
  command -v tc >/dev/null || { echo "no 'tc' command (package iproute2)"; exit 1; }
  local p=netbedprobe$$ err
  err=$(ip netns add "$p-a" 2>&1) || { echo "ip netns add failed: ${err%%$'\n'*}"; exit 1; }
  # shellcheck disable=SC2064
  trap "ip netns del $p-a 2>/dev/null; ip netns del $p-b 2>/dev/null; true" EXIT
  err=$(ip netns add "$p-b" 2>&1) || { echo "ip netns add failed: ${err%%$'\n'*}"; exit 1; }
  err=$(ip link add $IF_A netns "$p-a" type veth peer name $IF_B netns "$p-b" 2>&1) ||
    { echo "cannot make a veth pair: ${err%%$'\n'*}"; exit 1; }
  err=$(tc -n "$p-a" qdisc add dev $IF_A root tbf rate 1gbit burst 128kb latency 10ms 2>&1) ||
    { echo "tc tbf unavailable: ${err%%$'\n'*}"; exit 1; }
  echo "network namespaces, veth and tbf work here"
}

cmd_up() {
  local name="" rate=10gbit owner=$PPID
  while [ $# -gt 0 ]; do
    case $1 in
      --name) name=${2:?--name NAME}; shift 2 ;;
      --rate) rate=${2:?--rate RATE}; shift 2 ;;
      --owner) owner=${2:?--owner PID}; shift 2 ;;
      *) die "up: unknown argument '$1'" ;;
    esac
  done
  [ -n "$name" ] || name=pgml$owner
  valid_name "$name"
  local bps ownerid
  bps=$(rate_bps "$rate")
  ownerid=$(proc_id "$owner") || die "owner $owner: no such process"
  mkdir -p "$STATE"
  down_stale
  # Record the bed before making anything, so that whatever part of it exists
  # can be found and removed; the rename fails if the name is taken.
  local tmpd="$STATE/.new.$$"
  rm -rf "$tmpd"; mkdir "$tmpd"
  echo "$owner $ownerid" >"$tmpd/owner"
  echo "$rate" >"$tmpd/rate"
  if ! mv -T "$tmpd" "$STATE/$name" 2>/dev/null; then
    rm -rf "$tmpd"; die "a bed named '$name' exists (its owner is alive)"
  fi
  local ns_a=$name-a ns_b=$name-b ns
  # a failure from here on removes what was made
  # shellcheck disable=SC2064
  trap "down_bed $name" EXIT
  ip netns add "$ns_a"
  ip netns add "$ns_b"
  # no IPv6 link-local addresses either: the bed's two addresses are its only
  # ones (and no router solicitations show in the byte counters)
  for ns in "$ns_a" "$ns_b"; do
    ip netns exec "$ns" sh -c 'echo 1 >/proc/sys/net/ipv6/conf/default/disable_ipv6' 2>/dev/null || true
  done
  # both ends are made inside their namespaces: they never appear on the host
  ip link add $IF_A netns "$ns_a" type veth peer name $IF_B netns "$ns_b"
  ip -n "$ns_a" addr add $ADDR_A/30 dev $IF_A
  ip -n "$ns_b" addr add $ADDR_B/30 dev $IF_B
  # Token bucket: burst = the bytes that may leave at once above the rate.
  # It must hold a whole GSO packet (up to 64 KiB on a veth: tbf would
  # otherwise cut each into MTU segments) and about 1 ms of traffic at the
  # rate (125 KB at 1 Gbit/s, 1.25 MB at 10 Gbit/s): on a busy host the
  # dequeue timer fires late by that much, and tokens that overflow a smaller
  # bucket meanwhile are lost, so the link would run below its rate. 1 ms is
  # still short next to a gradient exchange (the MLP's 2.9 MB take 23 ms at
  # 1 Gbit/s), so the rate, not the burst, sets its time. latency 10 ms caps
  # the queue (rate x 10 ms + burst); TCP backs off when it is full.
  local burst=$(( bps / 8 / 1000 ))
  [ $burst -ge 65536 ] || burst=65536
  local dev
  for ns in "$ns_a:$IF_A" "$ns_b:$IF_B"; do
    dev=${ns#*:} ns=${ns%%:*}
    ip -n "$ns" link set lo up
    ip -n "$ns" link set "$dev" up
    tc -n "$ns" qdisc add dev "$dev" root tbf rate "$bps"bit burst "$burst" latency 10ms
  done
  # The rsh agent mpirun calls as "agent HOST COMMAND...": the command, a
  # string for a remote shell, runs in the namespace that holds HOST's address.
  cat >"$STATE/$name/agent" <<EOF
#!/bin/sh
# rsh agent of the two-node bed '$name' (scripts/netbed.sh)
case \$1 in
  $ADDR_A) ns=$ns_a ;;
  $ADDR_B) ns=$ns_b ;;
  *) echo "netbed agent: host '\$1' is not a node of bed '$name'" >&2; exit 1 ;;
esac
shift
exec ip netns exec "\$ns" /bin/sh -c "\$*"
EOF
  chmod +x "$STATE/$name/agent"
  trap - EXIT
  echo "$name"
}

cmd_env() {
  load "${1:?env NAME}"
  cat <<EOF
NETBED_NAME=$NAME
NETBED_NS_A=$NS_A
NETBED_NS_B=$NS_B
NETBED_ADDR_A=$ADDR_A
NETBED_ADDR_B=$ADDR_B
NETBED_SUBNET=$SUBNET
NETBED_RATE=$RATE
NETBED_AGENT=$DIR/agent
EOF
}

# mpirun runs in node a and starts the daemon of node b through the agent.
# Open MPI is held to the veth: pml ob1 with only the tcp and self BTLs (the
# shared-memory BTL, which would join the two "nodes" through the common
# kernel, and UCX are out), and both the MPI traffic and mpirun's own
# out-of-band channel on the bed's subnet. rsh is the launcher even inside a
# Slurm job, whose variables are dropped so that Open MPI does not take the
# job's nodes.
cmd_mpirun() {
  load "${1:?mpirun NAME ARGS...}"; shift
  local unset=() v
  for v in $(compgen -e | grep '^SLURM_' || true); do unset+=(-u "$v"); done
  exec env "${unset[@]}" ip netns exec "$NS_A" mpirun \
    --host "$ADDR_A:1,$ADDR_B:1" --mca plm rsh --mca plm_rsh_agent "$DIR/agent" \
    --mca pml ob1 --mca btl tcp,self \
    --mca btl_tcp_if_include "$SUBNET" --mca oob_tcp_if_include "$SUBNET" "$@"
}

cmd_bytes() {
  load "${1:?bytes NAME}"
  echo "$(ip netns exec "$NS_A" cat /sys/class/net/$IF_A/statistics/tx_bytes)" \
       "$(ip netns exec "$NS_B" cat /sys/class/net/$IF_B/statistics/tx_bytes)"
}

cmd_status() {
  local d name
  if [ ! -d "$STATE" ] || [ -z "$(ls -A "$STATE")" ]; then echo "no beds"; return 0; fi
  for d in "$STATE"/*/; do
    d=${d%/} name=$(basename "$d")
    local alive="exited"
    owner_alive "$d" && alive="alive"
    echo "bed $name: rate $(cat "$d/rate"), owner $(cut -d' ' -f1 "$d/owner") ($alive)," \
         "bytes a->b b->a: $(cmd_bytes "$name" 2>/dev/null || echo '?')"
    tc -n "$name-a" qdisc show dev $IF_A 2>/dev/null | sed 's/^/  a: /' || true
    tc -n "$name-b" qdisc show dev $IF_B 2>/dev/null | sed 's/^/  b: /' || true
  done
}

cmd_run() {
  local up_args=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do up_args+=("$1"); shift; done
  { [ "${1:-}" = "--" ] && [ $# -ge 2 ]; } || die "usage: run [--name NAME] [--rate RATE] -- CMD [ARGS...]"
  shift
  local name child=""
  name=$(cmd_up "${up_args[@]}" --owner $$)
  # The teardown runs in a session of its own: a SIGKILL to our process group
  # (what a test harness sends when TERM did not end us fast enough) then
  # does not cut it short.
  # shellcheck disable=SC2064
  trap "[ -z \"\$child\" ] || kill -TERM \$child 2>/dev/null; setsid bash '$SELF' down '$name' & wait \$!" EXIT
  trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM
  export NETBED_NAME=$name
  # in the background: bash runs a trap only between commands, and `wait`
  # returns at once when a signal arrives
  "$@" & child=$!
  local rc=0
  wait $child || rc=$?
  child=""
  exit $rc
}

case ${1:-} in
  check) shift; cmd_check "$@" ;;
  up) shift; cmd_up "$@" ;;
  down)
    shift
    case ${1:-} in
      --stale) down_stale ;;
      "") die "down NAME | --stale" ;;
      *) valid_name "$1"; down_bed "$1" ;;
    esac ;;
  run) shift; cmd_run "$@" ;;
  mpirun) shift; cmd_mpirun "$@" ;;
  bytes) shift; cmd_bytes "$@" ;;
  env) shift; cmd_env "$@" ;;
  status) shift; cmd_status ;;
  *) sed -n '12,24s/^# \{0,1\}//p' "$SELF" >&2; exit 2 ;;
esac
