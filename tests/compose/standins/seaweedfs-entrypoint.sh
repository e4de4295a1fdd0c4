#!/bin/sh
# The stand-in seaweedfs image's entrypoint, written for this test to behave
# as the official image's does: as root, make /data the seaweed user's and
# re-run itself as that user; then run weed with the default flags of the
# official entrypoint for the subcommands the stack uses, and anything else
# as `weed <args>`.
set -e
export GODEBUG="${GODEBUG:+$GODEBUG,}fips140=on"

if [ "$(id -u)" = 0 ]; then
  if [ "$(stat -c %u:%g /data)" != "$(id -u seaweed):$(id -g seaweed)" ]; then
    chown -R seaweed:seaweed /data
  fi
  exec setpriv --reuid=seaweed --regid=seaweed --init-groups "$0" "$@"
fi

has_flag() {
  flag=$1
  shift
  for arg in "$@"; do
    case "$arg" in "$flag" | "$flag"=* | "-$flag" | "-$flag"=*) return 0 ;; esac
  done
  return 1
}

case "$1" in
  mini)
    shift
    if has_flag -dir "$@"; then
      exec /usr/bin/weed -logtostderr=true mini "$@"
    fi
    exec /usr/bin/weed -logtostderr=true mini -dir=/data "$@"
    ;;
  server)
    shift
    if has_flag -volume.max "$@"; then
      exec /usr/bin/weed -logtostderr=true server -dir=/data -master.volumeSizeLimitMB=1024 "$@"
    fi
    exec /usr/bin/weed -logtostderr=true server -dir=/data -volume.max=0 -master.volumeSizeLimitMB=1024 "$@"
    ;;
  master)
    shift
    exec /usr/bin/weed -logtostderr=true master -mdir=/data -volumeSizeLimitMB=1024 "$@"
    ;;
  volume)
    shift
    if has_flag -max "$@"; then
      exec /usr/bin/weed -logtostderr=true volume -dir=/data "$@"
    fi
    exec /usr/bin/weed -logtostderr=true volume -dir=/data -max=0 "$@"
    ;;
  filer)
    shift
    exec /usr/bin/weed -logtostderr=true filer "$@"
    ;;
  s3)
    shift
    exec /usr/bin/weed -logtostderr=true s3 -domainName="$S3_DOMAIN_NAME" -key.file="$S3_KEY_FILE" -cert.file="$S3_CERT_FILE" "$@"
    ;;
  *)
    exec /usr/bin/weed "$@"
    ;;
esac
