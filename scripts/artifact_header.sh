#!/bin/sh
# unibus — self-extracting artifact made by scripts/build. Everything after this
# header is a gzip'd tar: the Deno runtime, the unibus sources with every npm
# dependency already in a Deno cache (no network at run time), and nats-server.
#
# First run: unpack into ${XDG_CACHE_HOME:-$HOME/.cache}/unibus/<version>-<sha>
# (0700), after checking the payload's SHA-256, in a private directory renamed
# into place. Every run first checks that no other local user owns or can
# write any directory on the way to it.
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
name=$UNIBUS_VERSION-$(printf '%s' "$PAYLOAD_SHA256" | cut -c1-12)
me=$(id -u)

# The unpacked tree is a program this user will run. Another local user who
# can write to any directory on the way to it (or own one) could swap a file
# or a directory between our check and our exec, and run code as us. So every
# directory from / down is checked: the cache base and what is below it must
# be ours and writable by nobody else; above it, ours or root's, and writable
# by group or others only when root's and sticky (like /tmp, where nobody
# may rename another's entry).
mode_of() { stat -c '%u %a' -- "$1" 2>/dev/null || die "cannot inspect $1"; }
writable_by_others() { # $1: octal mode such as 755 or 1777
  m=$1
  g=$(printf '%s' "$m" | cut -c$((${#m} - 1)))
  o=$(printf '%s' "$m" | cut -c${#m})
  [ $((g & 2)) -ne 0 ] || [ $((o & 2)) -ne 0 ]
}
sticky() { [ ${#1} -eq 4 ] && [ $(($(printf '%s' "$1" | cut -c1) & 1)) -ne 0 ]; }
own_private() { # $1: a directory or file that must be ours and closed to others
  [ -L "$1" ] && die "$1 is a symbolic link; refusing to run through it"
  info=$(mode_of "$1")
  uid=${info%% *}
  perm=${info#* }
  [ "$uid" = "$me" ] || die "$1 is not owned by this user; refusing to run from it"
  writable_by_others "$perm" && die "$1 is writable by group or others (mode $perm); chmod go-w it"
  return 0
}
trusted_ancestors() { # $1: a physical absolute path; checks its parents up to /
  d=$1
  while [ "$d" != / ]; do
    d=$(dirname -- "$d")
    info=$(mode_of "$d")
    uid=${info%% *}
    perm=${info#* }
    if [ "$uid" != "$me" ] && [ "$uid" != 0 ]; then
      die "$d belongs to another user (uid $uid); refusing to run from below it"
    fi
    if writable_by_others "$perm" && ! { [ "$uid" = 0 ] && sticky "$perm"; }; then
      die "$d is writable by group or others (mode $perm); refusing to run from below it"
    fi
  done
}

# 077: the cache holds the program that will run as this user; nobody else
# may write into it (or read the vendored sources, which is merely tidy).
umask 077
mkdir -p -- "$base" || die "cannot create $base"
# From here on only the physical path is used: the directories checked are
# the ones the exec below walks through.
base=$(cd -P -- "$base" && pwd) || die "cannot enter $base"
trusted_ancestors "$base"
own_private "$base"
dir=$base/$name

unpack() {
  # A fresh directory only this user can enter: nothing is written, checked
  # or unpacked anywhere another user could reach.
  tmp=$(mktemp -d "$base/.unpack.XXXXXX") || die "cannot create a directory in $base"
  trap 'rm -rf "$tmp"' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  chmod 700 "$tmp"
  # Checked before tar reads a byte: a truncated download or an altered file
  # must not unpack into a cache that later runs trust without re-checking.
  # Leading zeros off first: $((…)) would read the padded offset as octal.
  offset=${PAYLOAD_OFFSET#"${PAYLOAD_OFFSET%%[!0]*}"}
  tail -c +"$((offset + 1))" "$self" >"$tmp/payload.tgz" || die "cannot read my payload"
  got=$(sha256sum "$tmp/payload.tgz" | cut -d' ' -f1)
  [ "$got" = "$PAYLOAD_SHA256" ] \
    || die "payload checksum mismatch ($got): this file is damaged or was altered; get it again"
  mkdir "$tmp/root"
  # The tar owner and modes are not trusted: files come out ours, umask 077.
  tar --no-same-owner --no-same-permissions -xzf "$tmp/payload.tgz" -C "$tmp/root" \
    || die "cannot unpack into $tmp (disk full?)"
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
# A tree someone else owns, or could write to, could hold anything: refused.
# Its contents are not hashed again at each start: only this user (or root)
# can change them once the tree and every directory above it pass this.
own_private "$dir"
for f in "$dir/deno" "$dir/app" "$dir/app/main.ts" "$dir/deno_dir"; do own_private "$f"; done

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
