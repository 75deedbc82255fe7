#!/bin/sh
# unibus — self-extracting artifact made by scripts/build. Everything after this
# header is a gzip'd tar: the Deno runtime, the unibus sources with every npm
# dependency already in a Deno cache (no network at run time), and nats-server.
#
# First run: unpack into ${XDG_CACHE_HOME:-$HOME/.cache}/unibus/<version>-<sha>
# (0700), after checking the payload's SHA-256. Later runs start from there.
# Then exec Deno (no subshell, so SIGTERM from systemd reaches `unibus serve`).
#
# scripts/build fills the three @…@ values; PAYLOAD_OFFSET keeps its width so
# the header's length does not depend on it.
set -eu
UNIBUS_VERSION='@VERSION@'
PAYLOAD_SHA256='@PAYLOAD_SHA256@'
PAYLOAD_OFFSET='@PAYLOAD_OFFSET@'

die() {
  printf 'unibus: %s\n' "$*" >&2
  exit 1
}

self=$0
case $self in
  */*) ;;
  *) self=$(command -v -- "$self") || die "cannot find my own file ($0)" ;;
esac

if [ -n "${XDG_CACHE_HOME:-}" ]; then
  base=$XDG_CACHE_HOME/unibus
elif [ -n "${HOME:-}" ]; then
  base=$HOME/.cache/unibus
else
  die "neither XDG_CACHE_HOME nor HOME is set; set one so unibus can unpack its runtime"
fi
dir=$base/$UNIBUS_VERSION-$(printf '%s' "$PAYLOAD_SHA256" | cut -c1-12)

unpack() {
  # 077: the cache holds the program that will run as this user; nobody else
  # may write into it (or read the vendored sources, which is merely tidy).
  umask 077
  mkdir -p "$base" || die "cannot create $base"
  tmp=$(mktemp -d "$base/.unpack.XXXXXX") || die "cannot create a directory in $base"
  trap 'rm -rf "$tmp"' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  # Checked before tar reads a byte: a truncated download or an altered file
  # must not unpack into a cache that later runs trust without re-checking.
  # Leading zeros off first: $((…)) would read the padded offset as octal.
  offset=${PAYLOAD_OFFSET#"${PAYLOAD_OFFSET%%[!0]*}"}
  tail -c +"$((offset + 1))" "$self" >"$tmp/payload.tgz" || die "cannot read my payload"
  got=$(sha256sum "$tmp/payload.tgz" | cut -d' ' -f1)
  [ "$got" = "$PAYLOAD_SHA256" ] \
    || die "payload checksum mismatch ($got): this file is damaged or was altered; get it again"
  mkdir "$tmp/root"
  tar -xzf "$tmp/payload.tgz" -C "$tmp/root" || die "cannot unpack into $tmp (disk full?)"
  rm -f "$tmp/payload.tgz"
  printf '%s\n' "$PAYLOAD_SHA256" >"$tmp/root/.complete"
  chmod 700 "$tmp/root"
  # rename(2) makes the finished tree appear at once. When two copies start
  # together, one rename wins; the other fails (target not empty), finds the
  # winner's complete tree and uses it.
  if ! mv -T "$tmp/root" "$dir" 2>/dev/null; then
    [ -f "$dir/.complete" ] || die "cannot move the unpacked runtime to $dir"
  fi
  rm -rf "$tmp"
  trap - EXIT INT TERM
}

if [ ! -f "$dir/.complete" ]; then
  [ -e "$dir" ] && die "$dir exists but is incomplete; remove it and run again"
  unpack
fi
# A cache directory someone else owns could hold anything: refuse it.
[ -O "$dir" ] || die "$dir is not owned by this user; remove it and run again"

DENO_DIR=$dir/deno_dir
DENO_NO_UPDATE_CHECK=1
export DENO_DIR DENO_NO_UPDATE_CHECK
# The same permissions as scripts/unibus; --cached-only: the npm packages come
# from the unpacked cache, never the network; --frozen: they must match the
# lockfile's integrity hashes; --config: the project's import map, whatever
# deno.json the current directory may hold.
exec "$dir/deno" run --quiet --cached-only --frozen --config "$dir/app/deno.json" \
  --allow-net --allow-read --allow-write --allow-run --allow-env --allow-sys --allow-ffi \
  "$dir/app/main.ts" "$@"
