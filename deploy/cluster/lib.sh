# deploy/cluster/lib.sh — sourced by generate-cluster-certs.sh and
# deploy-cluster.sh: messages, and loading + checking nodes.env.
# shellcheck shell=bash

say() { printf '%s: %s\n' "$PROG" "$*"; }
die() {
  printf '%s: error: %s\n' "$PROG" "$*" >&2
  exit 1
}

# load_nodes FILE — sources FILE and fills NODE_NAME/NODE_SSH/NODE_PUBLIC/
# NODE_PRIVATE (parallel arrays). Refuses a file that still holds a
# <PLACEHOLDER> (outside comments) or a malformed row: a half-filled topology
# would mint certificates for the wrong addresses or route to nowhere.
load_nodes() {
  local file="$1"
  [[ -r "$file" ]] || die "cannot read $file"
  local left
  left="$(grep -nE '^[^#]*<[A-Za-z0-9_]+>' "$file" || true)"
  if [[ -n "$left" ]]; then
    die "$file still has placeholders to fill:
$left"
  fi
  # shellcheck source=deploy/cluster/nodes.env
  source "$file"
  local v
  for v in CLUSTER_NAME CLUSTER_USER KV_REPLICAS NATS_PORT HTTP_PORT CLUSTER_PORT SSH_USER REMOTE_DIR ROUTE_NETWORK BIND; do
    [[ -n "${!v:-}" ]] || die "$file: $v is not set"
  done
  for v in NATS_PORT HTTP_PORT CLUSTER_PORT; do
    [[ "${!v}" =~ ^[0-9]+$ && "${!v}" -ge 1 && "${!v}" -le 65535 ]] || die "$file: $v=${!v} is not a port"
  done
  [[ "$CLUSTER_NAME" =~ ^[A-Za-z0-9_-]+$ ]] || die "$file: CLUSTER_NAME may hold only letters, digits, _ and -"
  [[ "$CLUSTER_USER" =~ ^[A-Za-z0-9_-]+$ ]] || die "$file: CLUSTER_USER may hold only letters, digits, _ and -"
  [[ "$REMOTE_DIR" =~ ^/[A-Za-z0-9_./-]+$ ]] || die "$file: REMOTE_DIR must be an absolute path"
  [[ "$ROUTE_NETWORK" == private || "$ROUTE_NETWORK" == public ]] || die "$file: ROUTE_NETWORK must be private or public"
  [[ "$BIND" == node || "$BIND" == any ]] || die "$file: BIND must be node or any"
  NODE_NAME=() NODE_SSH=() NODE_PUBLIC=() NODE_PRIVATE=()
  local row name ssh pub priv extra
  for row in "${CLUSTER_NODES[@]}"; do
    read -r name ssh pub priv extra <<<"$row"
    [[ -n "$priv" && -z "$extra" ]] || die "$file: row '$row' must be: NAME SSH_HOST PUBLIC_IP PRIVATE_IP"
    [[ "$name" =~ ^[a-z0-9][a-z0-9-]*$ ]] || die "$file: node name '$name' must be [a-z0-9-]"
    [[ "$ssh" =~ ^[A-Za-z0-9@._-]+$ ]] || die "$file: ssh host '$ssh' of $name is not a host name"
    is_ipv4 "$pub" || die "$file: public IP '$pub' of $name is not an IPv4 address"
    is_ipv4 "$priv" || die "$file: private IP '$priv' of $name is not an IPv4 address"
    NODE_NAME+=("$name") NODE_SSH+=("$ssh") NODE_PUBLIC+=("$pub") NODE_PRIVATE+=("$priv")
  done
  [[ ${#NODE_NAME[@]} -ge 3 ]] || die "$file: a cluster needs at least 3 nodes (quorum survives losing one), got ${#NODE_NAME[@]}"
  [[ "$(printf '%s\n' "${NODE_NAME[@]}" | sort -u | wc -l)" -eq ${#NODE_NAME[@]} ]] || die "$file: node names must be unique"
  [[ "$KV_REPLICAS" =~ ^[0-9]+$ && "$KV_REPLICAS" -ge 1 && "$KV_REPLICAS" -le ${#NODE_NAME[@]} ]] \
    || die "$file: KV_REPLICAS must be 1..${#NODE_NAME[@]}"
}

is_ipv4() {
  local IFS=. a b c d
  [[ "$1" =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]] || return 1
  read -r a b c d <<<"$1"
  ((a <= 255 && b <= 255 && c <= 255 && d <= 255))
}

# The address node $1 (an index) is reached on by its peers' routes.
route_ip() {
  if [[ "$ROUTE_NETWORK" == private ]]; then echo "${NODE_PRIVATE[$1]}"; else echo "${NODE_PUBLIC[$1]}"; fi
}
