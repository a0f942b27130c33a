#!/bin/sh
# Build lbbench-example/haproxy:3.0 offline: the Dockerfile next to this file on
# lbbench's Debian 13 base image (`bench images build --flavour node-trixie` makes it).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
base=$(docker images --format '{{.Repository}}:{{.Tag}}' 'lbbench/base' | grep ':trixie-' | head -n1)
if [ -z "$base" ]; then
    echo "no lbbench/base:trixie-* image; run: bench images build --flavour node-trixie" >&2
    exit 1
fi
docker build -q -t lbbench-example/haproxy:3.0 --build-arg BASE="$base" --label org.lbbench.project=lbbench "$here"
docker run --rm lbbench-example/haproxy:3.0 haproxy -v | head -n1
