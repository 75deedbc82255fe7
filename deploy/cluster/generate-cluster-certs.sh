#!/usr/bin/env bash
# deploy/cluster/generate-cluster-certs.sh — the cluster's certificates and
# shared secrets, on the operator's machine, into out/ (git-ignored).
#
#   ./generate-cluster-certs.sh [--nodes FILE] [--out DIR] [--force]
#       [--client-ca-cert FILE --client-ca-key FILE]
#
# Makes, for the nodes in nodes.env:
#   out/tls/ca.crt, ca.key            the CLIENT (data-plane) CA: clients pin it
#                                     (--tls-ca); reused when given or present
#   out/tls/cluster-ca.crt, .key      a SEPARATE route CA: it authenticates nodes
#                                     to each other, never bus users, so a client
#                                     certificate can never open the route port
#   out/tls/route-NAME.crt, .key      per node, serverAuth + clientAuth (routes
#                                     are mutual TLS), signed by the route CA
#   out/tls/server-NAME.crt, .key     per node, serverAuth, signed by the client
#                                     CA: both client planes (NATS and HTTPS)
#   out/secrets/cluster.pass          the route secret (--cluster-pass-file)
#   out/secrets/callout-issuer.seed   the auth callout's issuer, the same on
#                                     every node (--callout-issuer-file)
# SANs: the node's public IP, private IP and name (server certificates also
# 127.0.0.1 and localhost: `user add --store kv` runs on a node over loopback).
# Keys and secrets 0600. An existing CA, key or secret is never replaced
# without --force (a new CA would cut off every client pinned to the old one).
set -euo pipefail
PROG="generate-cluster-certs"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=deploy/cluster/lib.sh
source "$here/lib.sh"

nodes="$here/nodes.env" out="$here/out" force=0 client_ca_cert="" client_ca_key=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --nodes) nodes="${2:?--nodes needs a file}"; shift 2 ;;
    --out) out="${2:?--out needs a directory}"; shift 2 ;;
    --force) force=1; shift ;;
    --client-ca-cert) client_ca_cert="${2:?--client-ca-cert needs a file}"; shift 2 ;;
    --client-ca-key) client_ca_key="${2:?--client-ca-key needs a file}"; shift 2 ;;
    -h | --help) sed -n '2,25p' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (try --help)" ;;
  esac
done
[[ -z "$client_ca_cert" && -z "$client_ca_key" ]] || [[ -n "$client_ca_cert" && -n "$client_ca_key" ]] \
  || die "--client-ca-cert and --client-ca-key go together"
command -v openssl >/dev/null 2>&1 || die "openssl is needed (apt-get install openssl)"
load_nodes "$nodes"

umask 077
tls="$out/tls" secrets="$out/secrets"
mkdir -p "$tls" "$secrets"
chmod 700 "$out" "$tls" "$secrets"
days_ca=3650 days_leaf=825

# may_write FILE — true when FILE is absent or --force was given.
may_write() { [[ ! -e "$1" || $force -eq 1 ]]; }

new_key() {
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
  chmod 600 "$1"
}

new_ca() { # new_ca BASENAME SUBJECT
  local base="$1" subject="$2"
  if may_write "$base.key" && may_write "$base.crt"; then
    new_key "$base.key"
    openssl req -x509 -new -key "$base.key" -sha256 -days "$days_ca" -subj "$subject" \
      -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$base.crt" 2>/dev/null
    chmod 644 "$base.crt"
    say "made $(basename "$base").crt ($subject)"
  else
    [[ -e "$base.key" && -e "$base.crt" ]] || die "$base.crt or $base.key is missing (the other exists); restore it or use --force"
    say "kept $(basename "$base").crt (exists; --force to replace)"
  fi
}

new_leaf() { # new_leaf BASENAME CA_BASENAME CN EKU SAN
  local base="$1" ca="$2" cn="$3" eku="$4" san="$5"
  if ! may_write "$base.key" || ! may_write "$base.crt"; then
    say "kept $(basename "$base").crt (exists; --force to replace)"
    return
  fi
  new_key "$base.key"
  local ext
  ext="$(mktemp)"
  printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=$eku" "subjectAltName=$san" >"$ext"
  openssl req -new -key "$base.key" -subj "/CN=$cn" 2>/dev/null \
    | openssl x509 -req -CA "$ca.crt" -CAkey "$ca.key" -CAcreateserial -sha256 -days "$days_leaf" \
      -extfile "$ext" -out "$base.crt" 2>/dev/null
  rm -f "$ext" "$ca.srl"
  chmod 644 "$base.crt"
  say "made $(basename "$base").crt (EKU $eku; SAN $san)"
}

if [[ -n "$client_ca_cert" ]]; then
  [[ -r "$client_ca_cert" && -r "$client_ca_key" ]] || die "cannot read the client CA files"
  if may_write "$tls/ca.crt" || may_write "$tls/ca.key"; then
    install -m 0644 "$client_ca_cert" "$tls/ca.crt"
    install -m 0600 "$client_ca_key" "$tls/ca.key"
    say "using the given client CA"
  else
    cmp -s "$client_ca_cert" "$tls/ca.crt" || die "$tls/ca.crt exists and differs from --client-ca-cert; --force to replace"
  fi
else
  new_ca "$tls/ca" "/CN=$CLUSTER_NAME client CA"
fi
new_ca "$tls/cluster-ca" "/CN=$CLUSTER_NAME route CA"

for i in "${!NODE_NAME[@]}"; do
  name="${NODE_NAME[$i]}" pub="${NODE_PUBLIC[$i]}" priv="${NODE_PRIVATE[$i]}"
  ips="IP:$pub"
  [[ "$priv" == "$pub" ]] || ips="$ips,IP:$priv"
  new_leaf "$tls/route-$name" "$tls/cluster-ca" "$name.route.$CLUSTER_NAME" \
    "serverAuth,clientAuth" "DNS:$name,$ips"
  local_ips="$ips"
  [[ "$pub" == 127.0.0.1 || "$priv" == 127.0.0.1 ]] || local_ips="$ips,IP:127.0.0.1"
  new_leaf "$tls/server-$name" "$tls/ca" "$name.$CLUSTER_NAME" \
    "serverAuth" "DNS:$name,DNS:localhost,$local_ips"
done

# The secrets go straight from the generator to a 0600 file: never argv, never
# a terminal.
if may_write "$secrets/cluster.pass"; then
  openssl rand -base64 32 >"$secrets/cluster.pass"
  chmod 600 "$secrets/cluster.pass"
  say "made secrets/cluster.pass"
else
  say "kept secrets/cluster.pass (exists; --force to replace)"
fi
if may_write "$secrets/callout-issuer.seed"; then
  # An nkey account seed, made by the project's own nkeys library (no
  # hand-rolled encoding); UNIBUS_DENO comes from scripts/setup.
  # A subshell: scripts/setup brings its own say/die.
  rm -f "$secrets/callout-issuer.seed"
  (
    # shellcheck source=scripts/setup
    source "$here/../../scripts/setup"
    unibus_setup all >/dev/null
    cd "$here/../.."
    "$UNIBUS_DENO" eval --quiet --frozen --cached-only \
      'import { createAccount } from "@nats-io/nkeys";
       await Deno.stdout.write(createAccount().getSeed());
       await Deno.stdout.write(new TextEncoder().encode("\n"));'
  ) >"$secrets/callout-issuer.seed"
  chmod 600 "$secrets/callout-issuer.seed"
  grep -q '^SA' "$secrets/callout-issuer.seed" || die "could not make an account nkey seed"
  say "made secrets/callout-issuer.seed"
else
  say "kept secrets/callout-issuer.seed (exists; --force to replace)"
fi
say "done: $out (keys and secrets 0600; never commit out/)"
