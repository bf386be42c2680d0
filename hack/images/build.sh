#!/usr/bin/env bash
# Build, WITHOUT any container registry, the OCI image archives the local real node needs, into
# ~/.cache/scaledapp/images/<name>.tar, plus index.tsv (one line per image: <archive path> TAB <reference>).
#
#   hack/images/build.sh [build] [--force] [NAME...]   build (default: every image); a cached image is skipped
#   hack/images/build.sh list                          print index.tsv
#   hack/images/build.sh verify [NAME...]              unpack each archive and run its main program in a chroot;
#                                                      import them all into a throw-away containerd (if installed)
#   hack/images/build.sh names                         the image names this script knows
#
# Import on the node (containerd 1.6):  ctr -n k8s.io images import --base-name NAME --digests FILE.tar
# Each archive is an OCI image layout in a tar whose index names the image twice: io.containerd.image.name and
# org.opencontainers.image.ref.name are both the full reference, so the import gets the name with or without
# --base-name.
#
# THE CONTENT IS NOT THE UPSTREAM IMAGE. The images carry the names the operator's manifests and the chart
# already use (docker.io/library/redis:7.4.2-alpine, docker.io/library/postgres:17.5, ...) so unchanged manifests
# run, but they are built here from Debian packages and the project's own Go builds:
#   redis:7.4.2-alpine      Debian bookworm redis-server 7.0.x (not Alpine, not 7.4.2); redis 999, group redis 1000;
#                           /usr/local/bin/docker-entrypoint.sh turns option arguments into `redis-server ...` like
#                           upstream's, and adds `--protected-mode no` when no config file is given (upstream builds
#                           Redis with protected mode off; Debian's build has it on, which refuses every client
#                           outside the pod).
#   postgres:17.5           Debian trixie postgresql-17 (17.x, whatever trixie serves); postgres 999:999; binaries on
#                           PATH; STOPSIGNAL SIGINT; the sample config listens on '*' like upstream's. NO entrypoint:
#                           nothing reads POSTGRES_* variables or runs /docker-entrypoint-initdb.d.
#   redis_exporter, postgres-exporter, prometheus, coredns
#                           the static binaries of hack/localcluster/build.sh (coredns: of the node's build) on an
#                           almost empty root filesystem (no busybox, no CA certificates) with upstream's entrypoint
#                           and default arguments and upstream's user as a number (prometheus: a default
#                           /etc/prometheus/prometheus.yml that scrapes itself; coredns: no file capability, so it
#                           binds ports >= 1024 only, as the node's Corefile does).
#   demo-app, operator      built by buildah from demo-app/Dockerfile and operator/Dockerfile unchanged (context: the
#                           repository root; both pip-install the scaledapp wheel built there), on a
#                           local stand-in for python:3.11.14-slim-bookworm: Debian bookworm's python3 (3.11.2, in
#                           /usr/bin, not /usr/local) - made with mmdebstrap and stored under that exact name in
#                           buildah's own store ($CACHE/images/buildah). The machine's CA bundle is mounted
#                           read-only into the RUN steps (pip trusts what the host trusts); it is in no image.
#   pause, toolbox          localhost/scaledapp/*: the pod sandbox (hack/images/pause.c, static, user 65535) and a
#                           Debian bookworm essential root filesystem (sh, coreutils) for the local-path provisioner.
#
# Cache: each image is keyed by a hash of its inputs (this script's recipe for it, package list, Dockerfile and
# build context, binary checksum) in <name>.key; an unchanged image is not rebuilt. Debian packages are fetched
# from the Debian mirror (downloaded .debs kept in images/debs/), Python wheels (and the pinned setuptools that builds
# the scaledapp wheel) from PyPI; nothing else is reached.
# A new Debian point release does not change a key: `--force` rebuilds.
# Needs root (mmdebstrap --mode=root, umoci, buildah, chroot); installs missing Debian packages with apt-get.
# shellcheck disable=SC2016  # single-quoted scripts run elsewhere (mmdebstrap hooks, chroots, sh -c)
# shellcheck source-path=SCRIPTDIR source=../localcluster/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../localcluster/common.sh"

IMAGES_HERE="$ROOT/hack/images"
OUT="$CACHE/images"
WORK="$OUT/work"
DEBS="$OUT/debs"
LOGS="$CACHE/logs"
# The Debian mirrors this machine's apt already uses (its sources), so no host is named here.
apt_uri() {  # apt_uri SUFFIX: the first configured URI ending in SUFFIX (/debian or /debian-security)
  { grep -hE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null || true; } |
    tr ' ' '\n' | grep -E "^https?://.*$1/?\$" | head -1 | sed 's|/$||'
}
MIRROR="${SCALEDAPP_DEBIAN_MIRROR:-$(apt_uri /debian)}"
SECURITY_MIRROR="${SCALEDAPP_DEBIAN_SECURITY_MIRROR:-$(apt_uri /debian-security)}"
[ -n "$MIRROR" ] || die "no Debian mirror in /etc/apt/sources.list(.d): set SCALEDAPP_DEBIAN_MIRROR=<URI of a Debian archive>"
[ -n "$SECURITY_MIRROR" ] || SECURITY_MIRROR="${MIRROR}-security"
# buildah's own image store, apart from /var/lib/containers: only the Python base image stays in it.
BUILDAH_ROOT="$OUT/buildah"
BUILDAH_RUNROOT="/run/scaledapp-buildah"
COREDNS_BIN="$CACHE/bin/coredns-v${COREDNS_VERSION:-1.14.7}/coredns"
# What the path-exclude rules drop from every Debian root filesystem (copyright files stay).
DPKG_EXCLUDES=('/usr/share/doc/*' '/usr/share/man/*' '/usr/share/locale/*' '/usr/share/info/*' '/usr/share/lintian/*')

ALL=(pause toolbox redis postgres redis-exporter postgres-exporter prometheus coredns demo-app operator)

# ref NAME -> the full reference the image is stored under.
ref() {
  case "$1" in
    redis) echo "docker.io/library/redis:7.4.2-alpine" ;;
    postgres) echo "docker.io/library/postgres:17.5" ;;
    redis-exporter) echo "docker.io/oliver006/redis_exporter:v$REDIS_EXPORTER_VERSION" ;;
    postgres-exporter) echo "quay.io/prometheuscommunity/postgres-exporter:v$POSTGRES_EXPORTER_VERSION" ;;
    prometheus) echo "docker.io/prom/prometheus:v$PROMETHEUS_VERSION" ;;
    demo-app) echo "ghcr.io/scaledapp/demo-app:0.1.0" ;;
    operator) echo "ghcr.io/scaledapp/operator:0.1.0" ;;
    pause) echo "localhost/scaledapp/pause:1" ;;
    coredns) echo "localhost/scaledapp/coredns:${COREDNS_VERSION:-1.14.7}" ;;
    toolbox) echo "localhost/scaledapp/toolbox:1" ;;
    python-base) python_base_ref ;;
    *) die "unknown image '$1' (images: ${ALL[*]})" ;;
  esac
}

# The base image the Dockerfiles name (ARG PYTHON_IMAGE), fully qualified: the local stand-in is stored under it.
python_base_ref() {
  local a b
  a=$(sed -n 's/^ARG PYTHON_IMAGE=//p' "$ROOT/demo-app/Dockerfile")
  b=$(sed -n 's/^ARG PYTHON_IMAGE=//p' "$ROOT/operator/Dockerfile")
  [ -n "$a" ] && [ "$a" = "$b" ] || die "demo-app/Dockerfile and operator/Dockerfile must share one ARG PYTHON_IMAGE ('$a' vs '$b')"
  normalize "$a"
}

# normalize REF -> docker's normalisation: python:3 -> docker.io/library/python:3, a/b:1 -> docker.io/a/b:1.
normalize() {
  local r=$1 first=${1%%/*}
  if [[ $r != */* ]]; then r="docker.io/library/$r"
  elif [[ $first != *.* && $first != *:* && $first != localhost ]]; then r="docker.io/$r"; fi
  echo "$r"
}

archive() { echo "$OUT/$1.tar"; }

# ---------------------------------------------------------------------------------------------- tools
# need CMD:PACKAGE... -> install the missing Debian packages (root) or name them.
need() {
  local missing=() item
  for item in "$@"; do command -v "${item%%:*}" >/dev/null || missing+=("${item#*:}"); done
  [ ${#missing[@]} -gt 0 ] || return 0
  [ "$(id -u)" = 0 ] || die "missing Debian packages: ${missing[*]} (apt-get install ${missing[*]})"
  say "installing Debian packages: ${missing[*]}"
  apt-cache show "${missing[@]}" >/dev/null 2>&1 || apt-get update -qq >&2 || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 \
    || die "apt-get install ${missing[*]} failed"
}

need_root() { [ "$(id -u)" = 0 ] || die "building images needs root (mmdebstrap --mode=root, umoci, buildah, chroot)"; }

# run LOG CMD... -> run quietly into LOG; on failure show its tail and stop.
run() {
  local log=$1; shift
  printf '+ %s\n' "$*" >>"$log"
  "$@" >>"$log" 2>&1 || { tail -n 40 "$log" >&2; die "failed: $* (full log: $log)"; }
}

sha() { sha256sum | cut -c1-64; }

# files_hash DIR [find args] -> one hash of the paths and contents of the files under DIR (no caches).
files_hash() {
  local dir=$1; shift
  (cd "$dir" && find "$@" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*/.mypy_cache/*' -print0 \
    | LC_ALL=C sort -z | xargs -0 -r sha256sum) | sha
}

# key NAME PARTS... -> the cache key: the recipe (the shell functions that build NAME) and the inputs.
key() {
  local name=$1; shift
  { declare -f "build_$name" debian_rootfs set_user clean_rootfs static_rootfs pack_rootfs finalize binary_image \
      dockerfile_image
    declare -F "extra_$name" >/dev/null && declare -f "extra_$name"
    printf '%s\n' "$(ref "$name")" "${DPKG_EXCLUDES[*]}" "$@"; } | sha
}

# fresh NAME KEY -> true when the archive of NAME exists and was built from KEY (with --force: only when it was
# built by this run, so the shared base is built once).
BUILT=" "
fresh() {
  { [ "${FORCE:-0}" = 0 ] || [[ $BUILT == *" $1 "* ]]; } \
    && [ -s "$(archive "$1")" ] && [ "$(cat "$OUT/$1.key" 2>/dev/null)" = "$2" ]
}

# ---------------------------------------------------------------------------------------------- root filesystems
# debian_rootfs NAME SUITE DIR PACKAGE... [-- MMDEBSTRAP_OPTION...] -> an essential Debian root filesystem plus
# PACKAGEs (and their dependencies).
debian_rootfs() {
  local name=$1 suite=$2 dir=$3; shift 3
  local log="$LOGS/images-$name.log" start=$SECONDS names=() pkgs opts=() p
  while [ $# -gt 0 ] && [ "$1" != -- ]; do names+=("$1"); shift; done
  [ $# -eq 0 ] || { shift; opts+=("$@"); }
  pkgs=$(IFS=,; echo "${names[*]}")
  for p in "${DPKG_EXCLUDES[@]}"; do opts+=(--dpkgopt="path-exclude=$p"); done
  opts+=(--dpkgopt='path-include=/usr/share/doc/*/copyright')
  mkdir -p "$DEBS/$suite"
  say "$name: Debian $suite root filesystem (essential${pkgs:+ + $pkgs}) ..."
  # The downloaded .debs are kept in $DEBS (mmdebstrap's documented sync-in/sync-out cache).
  run "$log" mmdebstrap --mode=root --variant=essential ${pkgs:+--include="$pkgs"} "${opts[@]}" \
    --skip=download/empty --skip=essential/unlink \
    --setup-hook='mkdir -p "$1"/var/cache/apt/archives/' \
    --setup-hook="sync-in $DEBS/$suite /var/cache/apt/archives/" \
    --customize-hook="sync-out /var/cache/apt/archives $DEBS/$suite" \
    "$suite" "$dir" \
    "deb $MIRROR $suite main" "deb $MIRROR $suite-updates main" "deb $SECURITY_MIRROR $suite-security main"
  say "$name: root filesystem ready in $((SECONDS - start))s ($(du -sm "$dir" | cut -f1) MB)"
}

# set_user ROOTFS USER UID GROUP GID HOME SHELL -> USER:GROUP get exactly these ids (files owned by the old ids
# follow). Edits the root filesystem's own /etc files, never the host's.
set_user() {
  local r=$1 user=$2 uid=$3 group=$4 gid=$5 home=$6 shell=$7 f old_uid old_gid other
  for f in passwd group shadow gshadow; do
    [ ! -L "$r/etc/$f" ] || die "$r/etc/$f is a symlink"
    touch "$r/etc/$f"
  done
  other=$(awk -F: -v u="$user" -v id="$uid" '$3 == id && $1 != u {print $1}' "$r/etc/passwd")
  [ -z "$other" ] || die "uid $uid is taken by '$other' in $r"
  other=$(awk -F: -v g="$group" -v id="$gid" '$3 == id && $1 != g {print $1}' "$r/etc/group")
  [ -z "$other" ] || die "gid $gid is taken by '$other' in $r"
  old_uid=$(awk -F: -v u="$user" '$1 == u {print $3}' "$r/etc/passwd")
  old_gid=$(awk -F: -v g="$group" '$1 == g {print $3}' "$r/etc/group")
  awk -F: -v u="$user" '$1 != u' "$r/etc/passwd" >"$r/etc/passwd.new"
  echo "$user:x:$uid:$gid:$user:$home:$shell" >>"$r/etc/passwd.new"
  awk -F: -v g="$group" '$1 != g' "$r/etc/group" >"$r/etc/group.new"
  echo "$group:x:$gid:" >>"$r/etc/group.new"
  awk -F: -v u="$user" '$1 != u' "$r/etc/shadow" >"$r/etc/shadow.new"
  echo "$user:*:19000:0:99999:7:::" >>"$r/etc/shadow.new"
  awk -F: -v g="$group" '$1 != g' "$r/etc/gshadow" >"$r/etc/gshadow.new"
  echo "$group:!::" >>"$r/etc/gshadow.new"
  for f in passwd group shadow gshadow; do
    chmod --reference="$r/etc/$f" "$r/etc/$f.new"; chown --reference="$r/etc/$f" "$r/etc/$f.new"
    mv "$r/etc/$f.new" "$r/etc/$f"
  done
  # find runs inside the root filesystem (chroot): symlinks there resolve there, not on the host.
  if [ -n "$old_uid" ] && [ "$old_uid" != "$uid" ]; then
    chroot "$r" /usr/bin/find / -xdev -uid "$old_uid" -exec chown -h "$uid" {} +
  fi
  if [ -n "$old_gid" ] && [ "$old_gid" != "$gid" ]; then
    chroot "$r" /usr/bin/find / -xdev -gid "$old_gid" -exec chgrp -h "$gid" {} +
  fi
}

# clean_rootfs ROOTFS -> drop what a build leaves behind and the host's identity.
clean_rootfs() {
  local r=$1 d
  # Each of these is a real folder in a Debian root filesystem; a link would lead the globs below to the host.
  for d in var/lib/apt var/cache var/lib/dpkg var/log tmp root etc; do
    [ ! -L "$r/$d" ] || die "$r/$d is a symlink"
  done
  rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/* "$r"/var/cache/debconf/*-old "$r"/var/lib/dpkg/*-old \
    "$r"/var/log/*.log "$r"/var/log/apt/* "$r"/tmp/* "$r"/root/.cache
  # mmdebstrap copies the host's; the runtime mounts the pod's over them.
  rm -f "$r/etc/machine-id" "$r/etc/hostname" "$r/etc/resolv.conf"
  install -m 0644 /dev/null "$r/etc/hostname"
  install -m 0644 /dev/null "$r/etc/resolv.conf"
}

# static_rootfs DIR -> an almost empty root filesystem for a static binary: /etc/passwd and /etc/group with root
# and nobody (65534), /tmp (1777).
static_rootfs() {
  local r=$1
  mkdir -p "$r/etc" "$r/tmp" "$r/bin"
  chmod 1777 "$r/tmp"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' >"$r/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\n' >"$r/etc/group"
}

# pack_rootfs NAME DIR [umoci config options...] -> an OCI layout in $WORK/NAME/layout: one layer with DIR as /.
pack_rootfs() {
  local name=$1 dir=$2; shift 2
  local l="$WORK/$name/layout" log="$LOGS/images-$name.log" start=$SECONDS
  say "$name: packing the root filesystem into one OCI layer (umoci) ..."
  rm -rf "$l"
  run "$log" umoci init --layout "$l"
  run "$log" umoci new --image "$l:image"
  run "$log" umoci insert --image "$l:image" --history.created_by "hack/images/build.sh ($name)" "$dir" /
  run "$log" umoci config --image "$l:image" --os linux --architecture amd64 --author "hack/images/build.sh" \
    --history.created_by "hack/images/build.sh ($name): config" "$@"
  run "$log" umoci gc --layout "$l"
  say "$name: packed in $((SECONDS - start))s"
}

# finalize NAME LAYOUT -> name the layout's image (both annotations) and tar it into $OUT/NAME.tar.
finalize() {
  local name=$1 l=$2 r tmp
  r=$(ref "$name")
  jq -e '.manifests | length == 1' "$l/index.json" >/dev/null || die "$name: expected one manifest in $l/index.json"
  jq --arg r "$r" '.manifests[0].annotations = ((.manifests[0].annotations // {})
      + {"org.opencontainers.image.ref.name": $r, "io.containerd.image.name": $r})' "$l/index.json" >"$l/index.json.new"
  mv "$l/index.json.new" "$l/index.json"
  tmp="$(archive "$name").tmp"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$l" -cf "$tmp" oci-layout index.json blobs
  mv "$tmp" "$(archive "$name")"
}

# begin NAME -> an empty work folder and a fresh log for NAME.
begin() {
  rm -rf "${WORK:?}/$1"; mkdir -p "$WORK/$1" "$LOGS"
  : >"$LOGS/images-$1.log"
}

# done_image NAME KEY -> record the key, clean the work folder, report.
done_image() {
  echo "$2" >"$OUT/$1.key"
  BUILT="$BUILT$1 "
  rm -rf "${WORK:?}/$1"
  say "$1: $(ref "$1") -> $(archive "$1") ($(du -m "$(archive "$1")" | cut -f1) MB)"
}

# ---------------------------------------------------------------------------------------------- images
build_pause() {
  local k; k=$(key pause "$(sha <"$IMAGES_HERE/pause.c")" "$(gcc --version | head -1)")
  if fresh pause "$k"; then say "pause: cached"; return 0; fi
  need_root; need gcc:gcc
  [ -e /usr/lib/x86_64-linux-gnu/libc.a ] || need_pkg libc6-dev
  local r="$WORK/pause/rootfs"; begin pause; mkdir -p "$r"
  say "pause: compiling hack/images/pause.c (gcc -static -Os) ..."
  gcc -static -Os -s -Wall -Werror -o "$r/pause" "$IMAGES_HERE/pause.c"
  pack_rootfs pause "$r" --config.entrypoint /pause --config.user 65535:65535
  finalize pause "$WORK/pause/layout"; done_image pause "$k"
}

need_pkg() { dpkg -s "$1" >/dev/null 2>&1 || { need_root; say "installing $1"; apt-get install -y -qq "$1" >&2; }; }

build_toolbox() {
  local k; k=$(key toolbox)
  if fresh toolbox "$k"; then say "toolbox: cached"; return 0; fi
  need_root
  local r="$WORK/toolbox/rootfs"; begin toolbox; mkdir -p "$r"
  debian_rootfs toolbox bookworm "$r"
  clean_rootfs "$r"
  pack_rootfs toolbox "$r" --config.cmd /bin/sh \
    --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  finalize toolbox "$WORK/toolbox/layout"; done_image toolbox "$k"
}

build_redis() {
  local k; k=$(key redis "$(sha <"$IMAGES_HERE/redis-entrypoint.sh")")
  if fresh redis "$k"; then say "redis: cached"; return 0; fi
  need_root
  local r="$WORK/redis/rootfs"; begin redis; mkdir -p "$r"
  debian_rootfs redis bookworm "$r" redis-server
  say "redis: user redis 999, group redis 1000 (as the manifests run it); /data; the entrypoint"
  set_user "$r" redis 999 redis 1000 /data /bin/sh
  install -d -m 0755 -o 999 -g 1000 "$r/data"
  install -m 0755 "$IMAGES_HERE/redis-entrypoint.sh" "$r/usr/local/bin/docker-entrypoint.sh"
  clean_rootfs "$r"
  pack_rootfs redis "$r" --config.entrypoint docker-entrypoint.sh --config.cmd redis-server \
    --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --config.workingdir /data --config.exposedports 6379/tcp --config.volume /data
  finalize redis "$WORK/redis/layout"; done_image redis "$k"
}

build_postgres() {
  local k; k=$(key postgres)
  if fresh postgres "$k"; then say "postgres: cached"; return 0; fi
  need_root
  local r="$WORK/postgres/rootfs"; begin postgres; mkdir -p "$r"
  # postgresql-common creates no cluster (it would be owned by the uid its postinst picked).
  debian_rootfs postgres trixie "$r" postgresql-17 -- \
    --essential-hook='mkdir -p "$1"/etc/postgresql-common/createcluster.d' \
    --essential-hook='echo "create_main_cluster = false" >"$1"/etc/postgresql-common/createcluster.d/no-main-cluster.conf'
  say "postgres: user postgres 999:999, /run/postgresql, PGDATA, listen_addresses='*' in the sample config"
  # The essential hook keeps postgresql-common from creating a cluster; remove one if it did anyway.
  rm -rf "$r/etc/postgresql/17" "$r/var/lib/postgresql/17" "$r/etc/postgresql-common/createcluster.d/no-main-cluster.conf"
  set_user "$r" postgres 999 postgres 999 /var/lib/postgresql /bin/bash
  # /var/run is a link to /run (absolute in Debian): write to the root filesystem's own /run only.
  [ ! -L "$r/run" ] || die "$r/run is a symlink"
  install -d -m 3777 -o 999 -g 999 "$r/run/postgresql"
  install -d -m 0755 -o 999 -g 999 "$r/var/lib/postgresql"
  install -d -m 1777 -o 999 -g 999 "$r/var/lib/postgresql/data"
  sed -ri "s!^#?(listen_addresses)\s*=\s*\S+.*!\1 = '*'!" "$r/usr/share/postgresql/17/postgresql.conf.sample"
  grep -q "^listen_addresses = '\*'" "$r/usr/share/postgresql/17/postgresql.conf.sample" \
    || die "postgres: listen_addresses not set in the sample config"
  [ -x "$r/usr/lib/postgresql/17/bin/postgres" ] || die "postgres: no /usr/lib/postgresql/17/bin/postgres"
  clean_rootfs "$r"
  pack_rootfs postgres "$r" --config.cmd postgres --config.stopsignal SIGINT \
    --config.env PATH=/usr/lib/postgresql/17/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --config.env PG_MAJOR=17 --config.env PGDATA=/var/lib/postgresql/data --config.env LANG=C.UTF-8 \
    --config.exposedports 5432/tcp --config.volume /var/lib/postgresql/data
  finalize postgres "$WORK/postgres/layout"; done_image postgres "$k"
}

# go_binary TOOL BINARY -> the path of a binary of hack/localcluster/build.sh, building it when missing (that
# script takes its own lock: it waits for any build already running).
go_binary() {
  local bin; bin="$(bin_dir "$1")/$2"
  if [ ! -x "$bin" ]; then
    say "$1: $bin is missing: hack/localcluster/build.sh $1 (waits for a running build first)"
    "$ROOT/hack/localcluster/build.sh" "$1" >&2
  fi
  [ -x "$bin" ] || die "$1: no $bin after hack/localcluster/build.sh $1"
  echo "$bin"
}

# binary_image NAME BINARY PATH_IN_IMAGE [umoci config options...]
binary_image() {
  local name=$1 bin=$2 dest=$3; shift 3
  local k; k=$(key "$name" "$(sha <"$bin")" "$dest" "$@")
  if fresh "$name" "$k"; then say "$name: cached"; return 0; fi
  need_root
  local r="$WORK/$name/rootfs"; begin "$name"; mkdir -p "$r"
  static_rootfs "$r"
  install -D -m 0755 "$bin" "$r$dest"
  # An extra step per image (prometheus: its data and config folders).
  if declare -F "extra_$name" >/dev/null; then "extra_$name" "$r"; fi
  pack_rootfs "$name" "$r" --config.entrypoint "$dest" "$@"
  finalize "$name" "$WORK/$name/layout"; done_image "$name" "$k"
}

build_redis-exporter() {
  local bin; bin=$(go_binary redis-exporter redis_exporter)
  # upstream: FROM scratch, USER 59000:59000, ENTRYPOINT ["/redis_exporter"]
  binary_image redis-exporter "$bin" /redis_exporter \
    --config.user 59000:59000 --config.exposedports 9121/tcp
}

build_postgres-exporter() {
  local bin; bin=$(go_binary postgres-exporter postgres_exporter)
  # upstream: USER nobody (65534), ENTRYPOINT ["/bin/postgres_exporter"]
  binary_image postgres-exporter "$bin" /bin/postgres_exporter \
    --config.user 65534:65534 --config.exposedports 9187/tcp
}

# upstream's image: /etc/prometheus/prometheus.yml (scrapes itself), /prometheus owned by nobody, WORKDIR /prometheus.
extra_prometheus() {
  local r=$1
  install -d -m 0755 "$r/etc/prometheus"
  cat >"$r/etc/prometheus/prometheus.yml" <<'EOF'
# The default configuration of the image (hack/images/build.sh): Prometheus scrapes itself.
# The scaledapp-operator chart mounts its own configuration and passes --config.file.
global:
  scrape_interval: 15s
  evaluation_interval: 15s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ["localhost:9090"]
EOF
  install -d -m 0755 -o 65534 -g 65534 "$r/prometheus"
}

build_prometheus() {
  local bin; bin=$(go_binary prometheus prometheus)
  # upstream: USER nobody, WORKDIR /prometheus, ENTRYPOINT ["/bin/prometheus"], CMD [config, storage path]
  binary_image prometheus "$bin" /bin/prometheus \
    --config.cmd --config.file=/etc/prometheus/prometheus.yml --config.cmd --storage.tsdb.path=/prometheus \
    --config.user 65534:65534 --config.workingdir /prometheus --config.exposedports 9090/tcp \
    --config.volume /prometheus
}

build_coredns() {
  if [ ! -x "$COREDNS_BIN" ]; then
    warn "coredns: skipped: no $COREDNS_BIN (it is built by the node's build step); rerun after it exists"
    return 0
  fi
  # upstream: USER nonroot (65532), ENTRYPOINT ["/coredns"], and cap_net_bind_service=+ep on the binary. No file
  # capability here: with `capabilities: {drop: [ALL]}` (the node's manifest) exec would fail with EPERM; listen
  # on a port >= 1024 instead (the node's Corefile uses 1053).
  binary_image coredns "$COREDNS_BIN" /coredns --config.user 65532:65532 \
    --config.exposedports 53/udp --config.exposedports 53/tcp
}

extra_coredns() { echo "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin" >>"$1/etc/passwd"
  echo "nonroot:x:65532:" >>"$1/etc/group"; }

# --------------------------------------------------------------------------------------------- Dockerfile images
bh() { buildah --root "$BUILDAH_ROOT" --runroot "$BUILDAH_RUNROOT" --storage-driver overlay "$@"; }

# The stand-in for python:3.11.14-slim-bookworm: Debian bookworm's python3 with venv (python = python3),
# imported into buildah's store under the name the Dockerfiles use. Its archive is kept (python-base.tar, not in
# the index) so a wiped buildah store is refilled without a new root filesystem.
build_python-base() {
  local k base; k=$(key python-base); base=$(ref python-base)
  if ! fresh python-base "$k"; then
    need_root
    local r="$WORK/python-base/rootfs"; begin python-base; mkdir -p "$r"
    debian_rootfs python-base bookworm "$r" python3 python3-venv python-is-python3 ca-certificates
    clean_rootfs "$r"
    pack_rootfs python-base "$r" --config.cmd python3 --config.env LANG=C.UTF-8 \
      --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    finalize python-base "$WORK/python-base/layout"; done_image python-base "$k"
  fi
  # The image ID in containers-storage is the config digest: compare it with the archive's.
  local want have manifest
  manifest=$(tar -xOf "$(archive python-base)" index.json | jq -r '.manifests[0].digest')
  want=$(tar -xOf "$(archive python-base)" "blobs/sha256/${manifest#sha256:}" | jq -r '.config.digest')
  have=$(bh inspect --type image --format '{{.FromImageID}}' "$base" 2>/dev/null || true)
  if [ "sha256:${have#sha256:}" != "$want" ]; then
    say "python-base: importing into buildah's store as $base"
    bh rmi -f "$base" >/dev/null 2>&1 || true
    run "$LOGS/images-python-base.log" bh pull --quiet "oci-archive:$(archive python-base)"
    local id; id=$(bh inspect --type image --format '{{.FromImageID}}' "${want#sha256:}")
    bh tag "$id" "$base"
  fi
}

# isolation -> how buildah runs RUN steps here: runc ("oci") when a trivial container runs in it, else "chroot"
# (runc needs what some sandboxes lack). Probed once, remembered in $OUT/buildah-isolation.
isolation() {
  local f="$OUT/buildah-isolation" c iso=chroot
  if [ ! -s "$f" ]; then
    c=$(bh from --pull=never --quiet "$(ref python-base)")
    if bh run --isolation=oci "$c" -- true >>"$LOGS/images-buildah-probe.log" 2>&1; then iso=oci; else
      warn "buildah cannot run containers with runc here (log: $LOGS/images-buildah-probe.log): --isolation=chroot"
    fi
    bh rm "$c" >/dev/null
    echo "$iso" >"$f"
  fi
  cat "$f"
}

# dockerfile_image NAME DOCKERFILE CONTEXT CONTEXT_HASH
dockerfile_image() {
  local name=$1 dockerfile=$2 context=$3 chash=$4
  local k; k=$(key "$name" "$(cat "$OUT/python-base.key" 2>/dev/null)" "$(sha <"$dockerfile")" "$chash")
  if fresh "$name" "$k"; then say "$name: cached"; return 0; fi
  need_root; need buildah:buildah
  build_python-base
  # the key again: building the base just now may have changed it
  k=$(key "$name" "$(cat "$OUT/python-base.key")" "$(sha <"$dockerfile")" "$chash")
  local log="$LOGS/images-$name.log" start=$SECONDS r iso opts=()
  r=$(ref "$name")
  begin "$name"
  iso=$(isolation)
  # pip trusts what this machine trusts (e.g. the CA of a TLS-intercepting proxy): the host's CA bundle is
  # mounted read-only over the base image's for the RUN steps only; it is not part of any image.
  [ ! -s /etc/ssl/certs/ca-certificates.crt ] \
    || opts+=(--volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
  local ctx=${context#"$ROOT"}; ctx=${ctx#/}
  say "$name: buildah bud -f ${dockerfile#"$ROOT"/} ${ctx:-.} (isolation $iso; wheels from PyPI) ..."
  run "$log" bh bud --pull=never --network=host --isolation="$iso" --layers=false "${opts[@]}" \
    -f "$dockerfile" -t "$r" "$context"
  say "$name: built in $((SECONDS - start))s; exporting"
  run "$log" bh push --quiet "$r" "oci:$WORK/$name/layout:$r"
  bh rmi "$r" >/dev/null 2>&1 || true
  finalize "$name" "$WORK/$name/layout"; done_image "$name" "$k"
}

# Both images are built from the repository root and pip-install the scaledapp wheel built there; the root
# context's .dockerignore lets only these files through (the distribution and the pinned requirements).
CONTEXT_FILES=(.dockerignore pyproject.toml README.md requirements/runtime.txt requirements/build.txt
               demo-app/requirements.txt operator/scaledapp demo-app/demo_app)

build_demo-app() {
  dockerfile_image demo-app "$ROOT/demo-app/Dockerfile" "$ROOT" \
    "$(files_hash "$ROOT" demo-app/Dockerfile "${CONTEXT_FILES[@]}")"
}

build_operator() {
  dockerfile_image operator "$ROOT/operator/Dockerfile" "$ROOT" \
    "$(files_hash "$ROOT" operator/Dockerfile "${CONTEXT_FILES[@]}")"
}

# ---------------------------------------------------------------------------------------------- index
write_index() {
  local tmp="$OUT/index.tsv.tmp" n
  : >"$tmp"
  for n in "${ALL[@]}"; do
    if [ -s "$(archive "$n")" ]; then printf '%s\t%s\n' "$(archive "$n")" "$(ref "$n")" >>"$tmp"; fi
  done
  mv "$tmp" "$OUT/index.tsv"
}

cmd_build() {
  local names=() n
  FORCE=0
  for n in "$@"; do
    case "$n" in
      --force) FORCE=1 ;;
      *) ref "$n" >/dev/null; names+=("$n") ;;
    esac
  done
  [ ${#names[@]} -gt 0 ] || names=("${ALL[@]}")
  need mmdebstrap:mmdebstrap umoci:umoci jq:jq gcc:gcc
  need_root
  mkdir -p "$OUT" "$WORK" "$DEBS" "$LOGS"
  exec 8>"$OUT/.lock"
  flock -w 3600 8 || die "another image build holds $OUT/.lock for over an hour"
  local total=$SECONDS
  for n in "${names[@]}"; do "build_$n"; done
  write_index
  say "images ready in $((SECONDS - total))s; index: $OUT/index.tsv"
}

# ---------------------------------------------------------------------------------------------- verify
# in_image ROOTFS UID:GID ENV_FILE CMD... -> CMD in the image's root filesystem as UID:GID with the image's
# environment, in private mount and PID namespaces (a fresh /proc, the host's /dev, a tmpfs /tmp): every mount and
# every process it starts end with it.
in_image() {
  local r=$1 user=$2 envf=$3; shift 3
  local envs=(); mapfile -t envs <"$envf"
  unshare --mount --pid --fork --kill-child /bin/sh -c '
    r=$1; shift
    mkdir -p "$r/proc" "$r/dev" "$r/tmp"
    mount -t proc proc "$r/proc" && mount --rbind /dev "$r/dev" && mount -t tmpfs -o mode=1777 tmpfs "$r/tmp" || exit 1
    exec /usr/bin/env -i "$@"' in_image "$r" "${envs[@]}" "$(command -v chroot)" --userspec="$user" "$r" "$@"
}

# check NAME DESCRIPTION CMD... -> run a check, print its last line of output, count a failure.
check() {
  local name=$1 what=$2 out; shift 2
  if out=$("$@" 2>&1); then
    out=$(echo "$out" | tail -n 1)
    printf '    ok   %-18s %s%s\n' "$name" "$what" "${out:+: $out}" >&2
  else
    printf '    FAIL %-18s %s:\n%s\n' "$name" "$what" "$(echo "$out" | tail -n 15 | sed 's/^/        /')" >&2
    FAILED=$((FAILED + 1))
  fi
}

# image_config LAYOUT -> the image's config JSON (first manifest).
image_config() {
  local l=$1 m
  m=$(jq -r '.manifests[0].digest' "$l/index.json")
  cat "$l/blobs/sha256/$(jq -r '.config.digest' "$l/blobs/sha256/${m#sha256:}" | cut -d: -f2)"
}

# Checks run inside the images (bash/sh scripts).
REDIS_CHECK='cd /tmp
  docker-entrypoint.sh --port 0 --unixsocket /tmp/r.sock --dir /tmp --save "" >/tmp/r.log 2>&1 &
  for i in $(seq 50); do [ -S /tmp/r.sock ] && break; sleep 0.1; done
  redis-cli -s /tmp/r.sock ping
  redis-cli -s /tmp/r.sock config get protected-mode | tr "\n" " "'
POSTGRES_CHECK='set -e
  echo "user $(whoami)"; test -w /var/run/postgresql
  initdb -D /tmp/pg -U postgres --auth=trust >/tmp/initdb.log
  grep -qxF "listen_addresses = '"'*'"'" /tmp/pg/postgresql.conf
  pg_ctl -D /tmp/pg -o "-c listen_addresses= -c unix_socket_directories=/var/run/postgresql" -w -l /tmp/pg.log start >/dev/null
  pg_isready -h /var/run/postgresql
  echo "server $(psql -h /var/run/postgresql -U postgres -Atc "show server_version")"
  pg_ctl -D /tmp/pg -m fast -w stop >/dev/null'

# prometheus_ready ROOTFS USER ENV_FILE -> the image's default command (data in /tmp) answers /-/ready.
prometheus_ready() {
  local port=$((20000 + RANDOM % 10000)) pid _
  in_image "$1" "$2" "$3" /bin/prometheus --config.file=/etc/prometheus/prometheus.yml \
    --storage.tsdb.path=/prometheus --web.listen-address="127.0.0.1:$port" >"$WORK/verify/prometheus.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$port/-/ready" 2>/dev/null && { kill "$pid"; wait "$pid" 2>/dev/null; return 0; }
    sleep 0.2
  done
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; tail -n 5 "$WORK/verify/prometheus.log"; return 1
}

# check_installed ROOTFS ENV_FILE PACKAGE -> the image sets no PYTHONPATH and PACKAGE is installed into the venv
# as a distribution (its RECORD lists it), the way `pip install .` installs it; no source tree beside it.
check_installed() {
  local r=$1 envf=$2 pkg=$3 record
  ! grep -q '^PYTHONPATH=' "$envf" || { echo "PYTHONPATH set: $(grep '^PYTHONPATH=' "$envf")"; return 1; }
  record=$(echo "$r"/opt/venv/lib/python3*/site-packages/scaledapp-*.dist-info/RECORD)
  [ -s "$record" ] || { echo "no scaledapp dist-info in /opt/venv"; return 1; }
  grep -q "^$pkg/__init__.py," "$record" || { echo "$pkg is not in the distribution's RECORD"; return 1; }
  [ ! -e "$r/app" ] && [ ! -e "$r/src" ] || { echo "a source tree (/app or /src) in the image"; return 1; }
  echo "$(basename "$(dirname "$record")") holds $pkg"
}

verify_image() {
  local name=$1 a r d cfg user
  a=$(archive "$name"); r=$(ref "$name")
  d="$WORK/verify/$name"; rm -rf "$d"; mkdir -p "$d/layout"
  tar -xf "$a" -C "$d/layout"
  check "$name" "index names $r" jq -e --arg r "$r" '.manifests[0].annotations
    | .["io.containerd.image.name"] == $r and .["org.opencontainers.image.ref.name"] == $r' "$d/layout/index.json"
  cfg=$(image_config "$d/layout")
  jq '.manifests[0].annotations["org.opencontainers.image.ref.name"] = "verify"' "$d/layout/index.json" >"$d/i.json"
  mv "$d/i.json" "$d/layout/index.json"
  umoci unpack --image "$d/layout:verify" "$d/bundle" >"$d/unpack.log" 2>&1 \
    || { cat "$d/unpack.log" >&2; die "$name: umoci unpack failed"; }
  jq -r '.process.env[]' "$d/bundle/config.json" >"$d/env"
  user="$(jq -r '.process.user.uid' "$d/bundle/config.json"):$(jq -r '.process.user.gid' "$d/bundle/config.json")"
  printf '  %s  %s  (%s MB)\n    config: %s\n' "$name" "$r" "$(du -m "$a" | cut -f1)" \
    "$(jq -c '.config | {User, Entrypoint, Cmd, WorkingDir, StopSignal, Env}' <<<"$cfg")" >&2
  local R="$d/bundle/rootfs" E="$d/env"
  case "$name" in
    pause) check pause "/pause --version as $user" in_image "$R" "$user" "$E" /pause --version ;;
    toolbox) check toolbox "sh, mkdir, chmod, rm" in_image "$R" "$user" "$E" /bin/sh -c \
               'mkdir -m 0777 -p /tmp/a/b && chmod 0700 /tmp/a/b && rm -rf /tmp/a && echo sh mkdir chmod rm work' ;;
    redis)
      check redis "redis-server --version" in_image "$R" "$user" "$E" redis-server --version
      check redis "redis-cli --version" in_image "$R" "$user" "$E" redis-cli --version
      check redis "999:1000 has names" in_image "$R" 999:1000 "$E" /bin/sh -c 'echo "$(id -un):$(id -gn)"'
      check redis "entrypoint + option args as 999:1000" in_image "$R" 999:1000 "$E" /bin/sh -c "$REDIS_CHECK" ;;
    postgres)
      check postgres "postgres --version" in_image "$R" "$user" "$E" postgres --version
      check postgres "tools on PATH" in_image "$R" 999:999 "$E" /bin/bash -c 'for t in postgres initdb pg_ctl \
        pg_basebackup pg_receivewal pg_isready psql; do command -v $t >/dev/null || { echo "no $t"; exit 1; }; done
        echo "$(command -v pg_basebackup) ..."'
      check postgres "initdb, start, query, stop as 999:999" in_image "$R" 999:999 "$E" /bin/bash -c "$POSTGRES_CHECK"
      check postgres "STOPSIGNAL SIGINT" jq -e '.config.StopSignal == "SIGINT"' <<<"$cfg" ;;
    redis-exporter) check "$name" "--version" in_image "$R" "$user" "$E" /redis_exporter --version ;;
    postgres-exporter) check "$name" "--version" in_image "$R" "$user" "$E" /bin/postgres_exporter --version ;;
    prometheus)
      check prometheus "--version" in_image "$R" "$user" "$E" /bin/prometheus --version
      check prometheus "default config, ready as $user" prometheus_ready "$R" "$user" "$E" ;;
    coredns) check coredns "-version" in_image "$R" "$user" "$E" /coredns -version ;;
    demo-app)
      check demo-app "no PYTHONPATH, no sources" check_installed "$R" "$E" demo_app
      check demo-app "import demo_app.app, .worker as $user" in_image "$R" "$user" "$E" python -c \
        'import sys, demo_app.app, demo_app.worker; print("python", sys.version.split()[0], "imports ok")'
      check demo-app "CMD is the console script" jq -e '.config.Cmd == ["scaledapp-demo-app"]' <<<"$cfg"
      check demo-app "scaledapp-demo-app, -worker on PATH" in_image "$R" "$user" "$E" /bin/sh -c \
        'for s in scaledapp-demo-app scaledapp-demo-worker; do command -v "$s" || exit 1; done'
      check demo-app "scaledapp-demo-load --help" in_image "$R" "$user" "$E" scaledapp-demo-load --help ;;
    operator)
      check operator "no PYTHONPATH, no sources" check_installed "$R" "$E" scaledapp
      check operator "import scaledapp.handlers as $user" in_image "$R" "$user" "$E" python -c \
        'import scaledapp.handlers, scaledapp.__main__; print("imports ok")'
      check operator "ENTRYPOINT is the console script" jq -e '.config.Entrypoint == ["scaledapp"]' <<<"$cfg"
      check operator "scaledapp --help" in_image "$R" "$user" "$E" scaledapp --help
      check operator "kubectl-scaledapp --help" in_image "$R" "$user" "$E" kubectl-scaledapp --help ;;
  esac
  rm -rf "$d"
}

# The references the sources use must be the ones built here.
verify_refs() {
  local api="$ROOT/operator/scaledapp/api.py" var want got
  for var in REDIS_IMAGE:redis POSTGRES_IMAGE:postgres DEMO_APP_IMAGE:demo-app REDIS_EXPORTER_IMAGE:redis-exporter \
             POSTGRES_EXPORTER_IMAGE:postgres-exporter; do
    got=$(sed -n "s/^${var%%:*} = \"\(.*\)\"/\1/p" "$api")
    want=$(ref "${var#*:}")
    check "${var#*:}" "operator's ${var%%:*} is $want" test "$(normalize "$got")" = "$want"
  done
  local values="$ROOT/charts/scaledapp-operator/values.yaml"
  got="$(awk '/^prometheus:/{p=1} p && /repository:/{print $2; exit}' "$values"):$(awk '/^prometheus:/{p=1} p && /tag:/{print $2; exit}' "$values")"
  check prometheus "chart's prometheus image is $(ref prometheus)" test "$(normalize "$got")" = "$(ref prometheus)"
  got="$(awk '/^image:/{p=1} p && /repository:/{print $2; exit}' "$values"):$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}/\1/p' "$ROOT/charts/scaledapp-operator/Chart.yaml")"
  check operator "chart's operator image is $(ref operator)" test "$(normalize "$got")" = "$(ref operator)"
}

# A throw-away containerd (its own root, state and socket; CRI off) imports every archive the way the node will.
verify_ctr_import() {
  if ! command -v containerd >/dev/null || ! command -v ctr >/dev/null; then
    warn "containerd/ctr not installed: the import check is skipped"; return 0
  fi
  local d="$WORK/verify/containerd" pid a r _
  rm -rf "$d"; mkdir -p "$d"
  cat >"$d/config.toml" <<EOF
version = 2
root = "$d/root"
state = "$d/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$d/containerd.sock"
[ttrpc]
  address = "$d/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$d/opt"
EOF
  containerd --config "$d/config.toml" >"$d/containerd.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do [ -S "$d/containerd.sock" ] && break; sleep 0.1; done
  while IFS=$'\t' read -r a r; do
    check "$(basename "$a" .tar)" "ctr -n k8s.io images import --base-name ${r%:*} --digests" \
      ctr -a "$d/containerd.sock" -n k8s.io images import --base-name "${r%:*}" --digests "$a"
    check "$(basename "$a" .tar)" "containerd lists $r" \
      sh -c 'ctr -a "$1" -n k8s.io images ls -q | grep -qxF "$2" && echo present' _ "$d/containerd.sock" "$r"
  done <"$OUT/index.tsv"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  # unpacking leaves no mounts behind; make sure before removing the folder
  if grep -q " $d/" /proc/self/mounts; then warn "mounts left under $d: not removed"; else rm -rf "$d"; fi
}

cmd_verify() {
  need umoci:umoci jq:jq unshare:util-linux curl:curl; need_root
  [ -s "$OUT/index.tsv" ] || die "no $OUT/index.tsv: run hack/images/build.sh first"
  local names=("$@") n
  if [ ${#names[@]} -eq 0 ]; then
    for n in "${ALL[@]}"; do [ -s "$(archive "$n")" ] && names+=("$n"); done
  fi
  FAILED=0
  say "verifying ${#names[@]} images (unpack with umoci, run in a chroot) ..."
  mkdir -p "$WORK/verify"
  for n in "${names[@]}"; do
    [ -s "$(archive "$n")" ] || { warn "$n: no archive $(archive "$n")"; FAILED=$((FAILED + 1)); continue; }
    verify_image "$n"
  done
  say "the references the operator and the chart use"
  verify_refs
  if [ $# -eq 0 ]; then say "importing the archives into a throw-away containerd"; verify_ctr_import; fi
  rm -rf "${WORK:?}/verify"
  [ "$FAILED" = 0 ] || die "$FAILED check(s) failed"
  say "all checks passed"
}

case "${1:-build}" in
  build) shift || true; cmd_build "$@" ;;
  list) [ -s "$OUT/index.tsv" ] || die "no $OUT/index.tsv: run hack/images/build.sh first"; cat "$OUT/index.tsv" ;;
  verify) shift; cmd_verify "$@" ;;
  names) printf '%s\n' "${ALL[@]}" ;;
  -h|--help|help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' ;;
  -*|[a-z]*) if [ "${1:-}" = "--force" ] || declare -F "build_$1" >/dev/null; then cmd_build "$@"; else
               die "unknown command '$1' (build [--force] [NAME...] | list | verify [NAME...] | names)"; fi ;;
esac
