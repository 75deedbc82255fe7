#!/usr/bin/env bash
# deploy/install.sh — install unibus as a systemd USER service (idempotent).
#
#   deploy/install.sh [--artifact FILE]        install, enable and start
#   deploy/install.sh --dry-run                print each step, change nothing
#
# Steps: build dist/unibus if it is missing (or take --artifact), install it as
# ~/.local/bin/unibus, create ~/.local/share/unibus (0700; serve keeps
# local_files/ there), link deploy/unibus.service into ~/.config/systemd/user/,
# then systemctl --user daemon-reload and enable --now. Without a systemd user
# manager (a container, an ssh session without lingering) it prints the
# systemctl commands to run by hand instead.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
dry=0 artifact="$root/dist/unibus"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) dry=1; shift ;;
    --artifact) artifact="${2:?--artifact needs a file}"; shift 2 ;;
    -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "install: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
[[ -n "${HOME:-}" ]] || { echo "install: HOME is not set" >&2; exit 1; }

bin_dir="$HOME/.local/bin"
work_dir="$HOME/.local/share/unibus"
unit_dir="${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user"
unit="unibus.service"

step() {
  printf '+ %s\n' "$*"
  if [[ $dry -eq 0 ]]; then "$@"; fi
}

[[ $dry -eq 1 ]] && echo "install: DRY RUN: nothing is changed"
if [[ ! -x "$artifact" ]]; then
  [[ "$artifact" == "$root/dist/unibus" ]] || { echo "install: --artifact $artifact is not an executable file" >&2; exit 1; }
  step bash "$root/scripts/build"
fi
if [[ -x "$bin_dir/unibus" ]] && cmp -s "$artifact" "$bin_dir/unibus"; then
  echo "install: $bin_dir/unibus is already this build"
else
  # install(1) replaces the file (unlink + create): a running service keeps
  # the copy it has open, the next (re)start gets the new one.
  step install -D -m 0755 "$artifact" "$bin_dir/unibus"
fi
step mkdir -p -m 0700 "$work_dir"
step mkdir -p "$unit_dir"
step ln -sfn "$here/$unit" "$unit_dir/$unit"

if systemctl --user show-environment >/dev/null 2>&1; then
  step systemctl --user daemon-reload
  step systemctl --user enable --now "$unit"
  echo "install: done; 'systemctl --user status $unit', logs: 'journalctl --user -u $unit -f'"
else
  cat <<MANUAL
install: no systemd user manager is reachable from here (no session bus:
install: a container, or an ssh login without lingering). Run by hand, in a
install: login session of $(id -un):
  systemctl --user daemon-reload
  systemctl --user enable --now $unit
  sudo loginctl enable-linger $(id -un)   # keep it running after logout
MANUAL
fi
cat <<NEXT
install: the unit runs 'unibus serve --bus-auth enforce' in $work_dir: register
install: your first user there before clients connect (deploy/README.md "Install"):
  cd $work_dir && unibus identity new --out admin.id --handle admin
NEXT
