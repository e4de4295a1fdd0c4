# Sourced by the test scripts: makes or reuses a Python virtual environment.
#
# ensure_venv DIR WANT PIP_ARGS...: reuses the venv at DIR if its .installed
# says WANT, else makes it again with `pip install PIP_ARGS...`; sets VENV
# to its path. The venv is made at DIR's real path: pip writes that path
# into the #! line of every script it installs, and target/ may be a link
# shared by clones that come and go (.ci/run). A venv whose scripts name a
# path that is gone is made again.
ensure_venv() {
  local dir=$1 want=$2 interpreter
  shift 2
  mkdir -p "$(dirname "$dir")"
  dir="$(cd "$(dirname "$dir")" && pwd -P)/$(basename "$dir")"
  interpreter=$(sed -n '1s/^#!//p' "$dir/bin/pip" 2>/dev/null || true)
  if [ "$(cat "$dir/.installed" 2>/dev/null)" != "$want" ] || [ ! -x "$interpreter" ]; then
    echo "creating $dir"
    rm -rf "$dir"
    python3 -m venv "$dir"
    "$dir/bin/pip" install --quiet --disable-pip-version-check "$@"
    printf '%s\n' "$want" >"$dir/.installed"
  fi
  VENV=$dir
}
