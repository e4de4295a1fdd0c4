# Sourced by tests/compose/run: a Docker engine of the test's own, from
# Debian's docker.io, with its own data root, exec root, socket and pidfile,
# so it never touches another engine on the machine. engine_stop removes what
# dockerd leaves behind in the host's network (iptables chains and rules, the
# bridges it created, ip_forward), also when the test fails half-way.
#
# Needs: $state (a directory for the engine's state).

engine_install() {
  local missing=()
  [ -x /usr/sbin/dockerd ] && [ -x /usr/bin/docker ] || missing+=(docker.io)
  command -v iptables >/dev/null 2>&1 || missing+=(iptables)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

engine_start() {
  # runc refuses a container root whose path passes through a symlink, as
  # target/ does in CI (a link to the machine's cache): use the real path.
  mkdir -p "$state/engine"
  engine_root=$(cd "$state/engine" && pwd -P)
  # The exec root holds unix sockets, whose paths are limited to 108 bytes:
  # keep it short, outside the (possibly deep) checkout.
  engine_exec=$(mktemp -d /tmp/ubiops-dockerd.XXXXXX)

  export DOCKER_HOST=unix://$engine_root/docker.sock
  engine_forward_before=$(cat /proc/sys/net/ipv4/ip_forward)
  engine_links_before=$(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | sort)
  /usr/sbin/dockerd \
    --data-root "$engine_root/data" \
    --exec-root "$engine_exec" \
    --pidfile "$engine_root/dockerd.pid" \
    -H "$DOCKER_HOST" \
    --storage-driver overlay2 \
    >>"${engine_log:-$engine_root/dockerd.log}" 2>&1 &
  engine_pid=$!
  local i
  for i in $(seq 1 60); do
    if /usr/bin/docker version >/dev/null 2>&1; then
      return 0
    fi
    if ! kill -0 "$engine_pid" 2>/dev/null; then
      echo "dockerd exited at start:" >&2
      tail -20 "${engine_log:-$engine_root/dockerd.log}" >&2
      return 1
    fi
    sleep 1
  done
  echo "dockerd did not answer within 60 s:" >&2
  tail -20 "${engine_log:-$engine_root/dockerd.log}" >&2
  return 1
}

engine_stop() {
  # Also after dockerd died by itself: its leftovers are cleaned all the same.
  [ -n "${engine_exec:-}" ] || return 0
  if [ -n "${engine_pid:-}" ] && kill -0 "$engine_pid" 2>/dev/null; then
    kill "$engine_pid"
    local i
    for i in $(seq 1 30); do
      kill -0 "$engine_pid" 2>/dev/null || break
      sleep 1
    done
    kill -KILL "$engine_pid" 2>/dev/null || true
  fi
  wait "$engine_pid" 2>/dev/null || true
  engine_pid=
  # Its containerd, if it outlived it.
  local pidfile
  pidfile=$engine_exec/containerd/containerd.pid
  if [ -f "$pidfile" ]; then
    kill "$(cat "$pidfile")" 2>/dev/null || true
  fi
  # Mounts left under our roots (overlay layers, network namespaces).
  local mount
  for mount in $(awk -v a="$engine_root" -v b="$engine_exec" \
    'index($2, a) == 1 || index($2, b) == 1 {print $2}' /proc/mounts | sort -r); do
    umount -l "$mount" 2>/dev/null || true
  done
  engine_clean_network
  rm -rf "$engine_exec"
  engine_exec=
  return 0
}

# dockerd adds DOCKER* chains with jumps to them in the filter and nat tables,
# MASQUERADE rules for its bridges, the bridges themselves, and turns on
# ip_forward; none of it is removed when it stops.
engine_clean_network() {
  local table rule chain link
  for table in filter nat; do
    iptables-save -t "$table" 2>/dev/null \
      | grep -E '^-A (INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) .*(-j DOCKER|docker0|br-[0-9a-f]{12})' \
      | sed 's/^-A /-D /' | while read -r rule; do
          eval "iptables -t $table $rule" 2>/dev/null || true
        done
    for chain in $(iptables-save -t "$table" 2>/dev/null | sed -n 's/^:\(DOCKER[A-Z0-9_-]*\) .*/\1/p'); do
      iptables -t "$table" -F "$chain" 2>/dev/null || true
    done
    for chain in $(iptables-save -t "$table" 2>/dev/null | sed -n 's/^:\(DOCKER[A-Z0-9_-]*\) .*/\1/p'); do
      iptables -t "$table" -X "$chain" 2>/dev/null || true
    done
  done
  for link in $(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | sort); do
    case "$link" in docker0|br-*|veth*) ;; *) continue ;; esac
    if ! grep -qx "$link" <<<"$engine_links_before"; then
      ip link delete "$link" 2>/dev/null || true
    fi
  done
  if [ -n "${engine_forward_before:-}" ]; then
    echo "$engine_forward_before" >/proc/sys/net/ipv4/ip_forward 2>/dev/null || true
  fi
  return 0
}
