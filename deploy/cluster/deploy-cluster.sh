#!/usr/bin/env bash
# deploy/cluster/deploy-cluster.sh — put unibus on every node of nodes.env.
#
#   ./deploy-cluster.sh [--nodes FILE] [--out DIR] [--artifact FILE]     dry run
#   ./deploy-cluster.sh ... --yes                                        apply
#
# Dry run (the default) contacts no host: it writes each node's cluster.env
# under out/nodes/NAME/ and prints every command --yes would run. With --yes it
# runs them: per node, over ssh/rsync, the artifact, the unit and its drop-in
# directory, cluster.env, the node's certificates, the route secret and the
# callout issuer, each with its mode. It never starts a node: bring-up is a
# human step (README "Bring up": all three together; a lone node never
# becomes healthy), printed at the end.
#
# cluster.env holds no secret: the routes are bare (nats://IP:PORT, no
# user:pass@) and the secret stays in a 0600 file serve reads itself. Secrets
# travel only inside rsync's ssh channel, never on a command line.
set -euo pipefail
PROG="deploy-cluster"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# shellcheck source=deploy/cluster/lib.sh
source "$here/lib.sh"

nodes="$here/nodes.env" out="$here/out" artifact="$root/dist/unibus" apply=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --nodes) nodes="${2:?--nodes needs a file}"; shift 2 ;;
    --out) out="${2:?--out needs a directory}"; shift 2 ;;
    --artifact) artifact="${2:?--artifact needs a file}"; shift 2 ;;
    --yes) apply=1; shift ;;
    -h | --help) sed -n '2,17p' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (try --help)" ;;
  esac
done
load_nodes "$nodes"
tls="$out/tls" secrets="$out/secrets"
for f in "$tls/ca.crt" "$tls/cluster-ca.crt" "$secrets/cluster.pass" "$secrets/callout-issuer.seed"; do
  [[ -f "$f" ]] || die "$f is missing: run ./generate-cluster-certs.sh first"
done
for name in "${NODE_NAME[@]}"; do
  for f in "$tls/route-$name.crt" "$tls/route-$name.key" "$tls/server-$name.crt" "$tls/server-$name.key"; do
    [[ -f "$f" ]] || die "$f is missing: run ./generate-cluster-certs.sh (nodes.env changed?)"
  done
done

# run CMD... — prints the command; runs it only with --yes.
run() {
  printf '+ %s\n' "$*"
  if [[ $apply -eq 1 ]]; then "$@"; fi
}

if [[ $apply -eq 0 ]]; then
  say "DRY RUN: no host is contacted; add --yes to apply"
fi
if [[ ! -x "$artifact" ]]; then
  if [[ "$artifact" == "$root/dist/unibus" ]]; then
    run bash "$root/scripts/build"
  else
    die "--artifact $artifact is not an executable file"
  fi
fi

R="$REMOTE_DIR"
for i in "${!NODE_NAME[@]}"; do
  name="${NODE_NAME[$i]}" pub="${NODE_PUBLIC[$i]}"
  target="$SSH_USER@${NODE_SSH[$i]}"
  routes=()
  for j in "${!NODE_NAME[@]}"; do
    [[ $j -eq $i ]] || routes+=("nats://$(route_ip "$j"):$CLUSTER_PORT")
  done
  if [[ "$BIND" == node ]]; then
    client_host="$pub" cluster_host="$(route_ip "$i")"
  else
    client_host="0.0.0.0" cluster_host="0.0.0.0"
  fi
  env_dir="$out/nodes/$name"
  mkdir -p "$env_dir"
  # Every value here is read by systemd (EnvironmentFile=) and lands in
  # ExecStart; none is a secret, so it may show in ps and the journal.
  cat >"$env_dir/cluster.env" <<ENV
# cluster.env for $name — written by deploy-cluster.sh from nodes.env. No secret.
SERVER_NAME=$name
CLUSTER_NAME=$CLUSTER_NAME
DATA_DIR=$R/local_files
HTTP_ADDR=$client_host:$HTTP_PORT
NATS_HOST=$client_host
NATS_PORT=$NATS_PORT
CLUSTER_HOST=$cluster_host
CLUSTER_PORT=$CLUSTER_PORT
ROUTES=$(IFS=,; echo "${routes[*]}")
CLUSTER_USER=$CLUSTER_USER
CLUSTER_PASS_FILE=$R/secrets/cluster.pass
CALLOUT_ISSUER_FILE=$R/secrets/callout-issuer.seed
INTERNAL_ID_FILE=$R/secrets/internal.id
TLS_CERT=$R/tls/server-$name.crt
TLS_KEY=$R/tls/server-$name.key
TLS_CA=$R/tls/ca.crt
ROUTE_TLS_CERT=$R/tls/route-$name.crt
ROUTE_TLS_KEY=$R/tls/route-$name.key
ROUTE_TLS_CA=$R/tls/cluster-ca.crt
KV_REPLICAS=$KV_REPLICAS
ENV
  chmod 644 "$env_dir/cluster.env"
  say "node $name ($target): routes $(IFS=,; echo "${routes[*]}")"
  run ssh "$target" "install -d -m 0755 $R && install -d -m 0700 $R/tls $R/secrets $R/local_files"
  run rsync -e ssh --chmod=F0755 "$artifact" "$target:$R/unibus"
  run rsync -e ssh --chmod=F0644 "$env_dir/cluster.env" "$here/README.md" "$target:$R/"
  run rsync -e ssh --chmod=F0644 "$tls/ca.crt" "$tls/cluster-ca.crt" "$tls/server-$name.crt" "$tls/route-$name.crt" "$target:$R/tls/"
  run rsync -e ssh --chmod=F0600 "$tls/server-$name.key" "$tls/route-$name.key" "$target:$R/tls/"
  run rsync -e ssh --chmod=F0600 "$secrets/cluster.pass" "$secrets/callout-issuer.seed" "$target:$R/secrets/"
  run rsync -e ssh --chmod=F0644 "$here/unibus-cluster.service" "$target:/etc/systemd/system/"
  run ssh "$target" "install -d -m 0755 /etc/systemd/system/unibus-cluster.service.d && systemctl daemon-reload"
done

cat <<NEXT

$PROG: next, by hand (README "Bring up"; this script never starts a node):
  1. Start ALL nodes together — order does not matter. A lone node has no
     JetStream quorum and never turns healthy: do not wait for one before
     starting the next.
       for h in ${NODE_SSH[*]}; do ssh "$SSH_USER@\$h" systemctl enable --now unibus-cluster; done
  2. Poll /healthz on each (ok once a meta leader is elected, ~10-30 s cold):
       curl -fsS --cacert $R/tls/ca.crt https://${NODE_PUBLIC[0]}:$HTTP_PORT/healthz
  3. The first admin, on any one node, over loopback (README "The first admin"):
       ssh $SSH_USER@${NODE_SSH[0]} '$R/unibus user add --store kv --role admin --handle ... --sign-pub ... --kex-pub ... --kex-sig ...'
  4. Verify posture and quorum (README "Verify"); add users live the same way.
NEXT
