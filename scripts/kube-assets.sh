#!/usr/bin/env bash
# Prints a folder holding `kube-apiserver` and `etcd` (the envtest KUBEBUILDER_ASSETS convention),
# building them on first use and caching them under ~/.cache/slipway.
#
# - KUBEBUILDER_ASSETS, when set and complete, is used as it is.
# - Otherwise kube-apiserver 1.20.2 is built from Debian bookworm's `kubernetes` source package
#   with Go 1.15 from Debian bullseye (newer Go builds a binary that segfaults), and etcd comes
#   from Debian's `etcd-server` package. apt runs with a private sources list and state folder,
#   so the system's apt configuration is untouched. First run: about 5 minutes.
set -euo pipefail
log() { echo "kube-assets: $*" >&2; }

if [[ -n "${KUBEBUILDER_ASSETS:-}" && -x "$KUBEBUILDER_ASSETS/kube-apiserver" && -x "$KUBEBUILDER_ASSETS/etcd" ]]; then
  echo "$KUBEBUILDER_ASSETS"
  exit 0
fi

K8S_VERSION=1.20.5+really1.20.2-1.1+deb12u1
cache=${SLIPWAY_CACHE:-$HOME/.cache/slipway}
assets=$cache/kubebuilder-assets/1.20.2
if [[ -x $assets/kube-apiserver && -x $assets/etcd ]]; then
  echo "$assets"
  exit 0
fi

mkdir -p "$cache/apt/lists/partial" "$cache/apt/archives/partial" "$cache/build" "$assets"
mirror=$("$(dirname "$0")/debian-mirror.sh")
cat > "$cache/apt/sources.list" <<SRC
deb $mirror bookworm main
deb-src $mirror bookworm main
deb $mirror bullseye main
SRC
apt_opts=(-o "Dir::Etc::SourceList=$cache/apt/sources.list" -o "Dir::Etc::SourceParts=-"
          -o "Dir::State::Lists=$cache/apt/lists" -o "Dir::Cache::Archives=$cache/apt/archives"
          -o "APT::Get::AllowUnauthenticated=false")
log "updating a private apt index"
apt-get -qq "${apt_opts[@]}" update >&2

# Build tools come from the same private index, so a machine whose own apt lists are empty works too.
command -v rsync >/dev/null || { log "installing rsync"; apt-get -qq "${apt_opts[@]}" install -y rsync >&2; }
command -v dpkg-source >/dev/null || { log "installing dpkg-dev"; apt-get -qq "${apt_opts[@]}" install -y dpkg-dev >&2; }

cd "$cache/build"
if [[ ! -x etcd-root/usr/bin/etcd ]]; then
  log "fetching etcd-server"
  rm -f etcd-server_*.deb
  apt-get -qq "${apt_opts[@]}" download etcd-server/bookworm >&2
  dpkg -x etcd-server_*.deb etcd-root
fi
cp etcd-root/usr/bin/etcd "$assets/etcd"

if [[ ! -x go-root/usr/lib/go-1.15/bin/go ]]; then
  log "fetching Go 1.15 from bullseye"
  rm -f golang-1.15-*.deb
  apt-get -qq "${apt_opts[@]}" download golang-1.15-go/bullseye golang-1.15-src/bullseye >&2
  for deb in golang-1.15-*.deb; do dpkg -x "$deb" go-root; done
fi
export GOROOT=$cache/build/go-root/usr/lib/go-1.15
export PATH=$GOROOT/bin:$PATH

src=$(ls -d kubernetes-*/ 2>/dev/null | head -1 || true)
if [[ -z $src ]]; then
  log "fetching the kubernetes $K8S_VERSION source package"
  apt-get -qq "${apt_opts[@]}" source --download-only "kubernetes=$K8S_VERSION" >&2
  dpkg-source --no-check -x kubernetes_*.dsc >&2
  src=$(ls -d kubernetes-*/ | head -1)
fi
cd "$src"
mkdir -p .go/src/k8s.io
[[ -e .go/src/k8s.io/kubernetes ]] || ln -s ../../.. .go/src/k8s.io/kubernetes
log "building kube-apiserver with $(go version)"
(cd .go/src/k8s.io/kubernetes && GOPATH=$PWD/../../.. GO111MODULE=off CGO_ENABLED=0 GOFLAGS=-mod=vendor \
   make WHAT=cmd/kube-apiserver >&2) || \
(cd .go/src/k8s.io/kubernetes && GOPATH=$(cd ../../.. && pwd) CGO_ENABLED=0 make WHAT=cmd/kube-apiserver >&2)
bin=$(find _output -type f -name kube-apiserver -perm -u+x | head -1)
cp "$bin" "$assets/kube-apiserver"
log "cached in $assets"
echo "$assets"
