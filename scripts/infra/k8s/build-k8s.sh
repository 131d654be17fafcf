#!/bin/bash
# build-k8s.sh - one-time setup for start-k8s.sh, using only Debian bookworm packages.
#  1. apt: golang-go (1.19), etcd-server (3.4.23), containernetworking-plugins, gcc
#  2. apt-get source kubernetes (1.20.5+really1.20.2; Debian only ships kubectl from it,
#     but the orig tarball is the full upstream tree incl. vendor/)
#  3. go build (GOPATH mode, like upstream 1.20): kube-apiserver, kube-controller-manager,
#     kube-scheduler, kubelet  -> $K8S_BIN   (~15-25 min cold on 2 cores)
#  4. build the static pause binary and `docker import` it as local/pause:3.2
# Idempotent: skips steps whose outputs exist.
set -euo pipefail
H=${K8S_HELPER_HOME:-/var/cache/prefect-pfcon/k8s}
K8S_BIN=${K8S_BIN:-$H/bin}
SRC=$H/src/kubernetes-1.20.2
mkdir -p "$H/src" "$K8S_BIN"

need=""
for p in golang-go etcd-server containernetworking-plugins gcc libc6-dev openssl curl; do
  dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"
done
[ -z "$need" ] || apt-get install -y -q $need

if [ ! -d "$SRC/vendor" ]; then
  SRCLIST=/etc/apt/sources.list.d/zz-pfcon-k8s-src.sources
  if ! apt-cache showsrc kubernetes 2>/dev/null | grep -q '^Package: kubernetes'; then
    printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' > "$SRCLIST"
    apt-get update -o Dir::Etc::sourcelist="$SRCLIST" -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0
  fi
  (cd "$H/src" && apt-get source --download-only kubernetes && tar xzf kubernetes_*.orig.tar.gz)
fi
# Go >= 1.18 crashes (SIGSEGV in mapiterinit) with the vendored reflect2 v1.0.1 / json-iterator
# v1.1.10: swap in Debian's reflect2 1.0.2 + json-iterator 1.1.12 (as later k8s releases did).
if ! grep -q go_above_118 <(ls "$SRC/vendor/github.com/modern-go/reflect2"); then
  dpkg -s golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev >/dev/null 2>&1 || \
    apt-get install -y -q golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev
  for d in modern-go/reflect2 json-iterator/go; do
    rm -rf "$SRC/vendor/github.com/$d"; mkdir -p "$SRC/vendor/github.com/$d"
    (cd /usr/share/gocode/src/github.com/$d && cp $(ls *.go *.s 2>/dev/null | grep -v _test.go) "$SRC/vendor/github.com/$d/")
  done
  rm -f "$K8S_BIN"/kube-apiserver "$K8S_BIN"/kubelet "$K8S_BIN"/kube-controller-manager "$K8S_BIN"/kube-scheduler
fi

# This sandbox lacks CAP_SYS_RESOURCE, so any NEGATIVE oom_score_adj is refused and runc fails
# with "can't get final child's PID from pipe: EOF". dockershim uses -998 for every pause
# container and -997 for Guaranteed pods: patch both to 0.
F1=$SRC/pkg/kubelet/dockershim/docker_sandbox.go F2=$SRC/pkg/kubelet/qos/policy.go
if grep -q 'defaultSandboxOOMAdj int = -99' "$F1" || grep -q 'guaranteedOOMScoreAdj int = -997' "$F2"; then
  sed -i 's/defaultSandboxOOMAdj int = -99[78]/defaultSandboxOOMAdj int = 0/' "$F1"
  sed -i 's/guaranteedOOMScoreAdj int = -997/guaranteedOOMScoreAdj int = 0/' "$F2"
  rm -f "$K8S_BIN/kubelet"
fi

if [ ! -x "$K8S_BIN/kubelet" ] || [ ! -x "$K8S_BIN/kube-apiserver" ] || [ ! -x "$K8S_BIN/kube-controller-manager" ] || [ ! -x "$K8S_BIN/kube-scheduler" ]; then
  mkdir -p "$H/gopath/src/k8s.io"
  [ -L "$H/gopath/src/k8s.io/kubernetes" ] || ln -s "$SRC" "$H/gopath/src/k8s.io/kubernetes"
  cd "$H/gopath/src/k8s.io/kubernetes"
  # openapi definitions are generated at build time in 1.20 (not in the tarball)
  [ -f pkg/generated/openapi/zz_generated.openapi.go ] || make gen_openapi
  CB=k8s.io/kubernetes/vendor/k8s.io/component-base/version
  CG=k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version
  V="-X $CB.gitVersion=v1.20.2 -X $CB.gitMajor=1 -X $CB.gitMinor=20 -X $CB.gitTreeState=clean -X $CG.gitVersion=v1.20.2 -X $CG.gitMajor=1 -X $CG.gitMinor=20"
  start=$(date +%s)
  CGO_ENABLED=0 GO111MODULE=off GOPATH=$H/gopath GOFLAGS= GOCACHE=$H/gocache \
    go build -ldflags "-s -w $V" -o "$K8S_BIN/" ./cmd/kube-apiserver ./cmd/kube-controller-manager ./cmd/kube-scheduler ./cmd/kubelet
  echo "go build done in $(( $(date +%s) - start ))s"
fi

if ! docker image inspect local/pause:3.2 >/dev/null 2>&1; then
  mkdir -p "$H/pause"
  gcc -Os -static -DVERSION=v3.2-local -o "$H/pause/pause" "$SRC/build/pause/linux/pause.c"
  strip "$H/pause/pause"
  tar -C "$H/pause" -cf "$H/pause/pause.tar" pause
  docker import -c 'ENTRYPOINT ["/pause"]' "$H/pause/pause.tar" local/pause:3.2
fi
echo "build-k8s: ready ($K8S_BIN)"
