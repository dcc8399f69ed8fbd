#!/usr/bin/env bash
# Sourced by the Kubernetes-mode benchmarks: starts etcd and kube-apiserver (from
# scripts/kube-assets.sh) on loopback ports with their data under $out, installs Slipway's CRDs,
# and exports KUBECONFIG. Both stop when the sourcing script exits.
assets=$(scripts/kube-assets.sh)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
etcd_port=$(port); peer_port=$(port); api_port=$(port)
"$assets/etcd" --data-dir "$out/etcd" --listen-client-urls "http://127.0.0.1:$etcd_port" \
  --advertise-client-urls "http://127.0.0.1:$etcd_port" --listen-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-cluster "default=http://127.0.0.1:$peer_port" > "$out/etcd.log" 2>&1 &
etcd_pid=$!
echo 'admin-token,admin,admin,"system:masters"' > "$out/tokens.csv"
openssl genrsa -out "$out/sa.key" 2048 2>/dev/null
"$assets/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" --bind-address 127.0.0.1 \
  --advertise-address 127.0.0.1 --secure-port "$api_port" --cert-dir "$out/certs" \
  --token-auth-file "$out/tokens.csv" --authorization-mode RBAC \
  --service-account-key-file "$out/sa.key" --service-account-signing-key-file "$out/sa.key" \
  --service-account-issuer https://kubernetes.default.svc --service-cluster-ip-range 10.96.0.0/16 \
  --disable-admission-plugins ServiceAccount > "$out/kube-apiserver.log" 2>&1 &
api_pid=$!
trap 'kill $api_pid $etcd_pid 2>/dev/null || true' EXIT
cat > "$out/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters: [{name: bench, cluster: {server: "https://127.0.0.1:$api_port", insecure-skip-tls-verify: true}}]
users: [{name: admin, user: {token: admin-token}}]
contexts: [{name: admin, context: {cluster: bench, user: admin}}]
current-context: admin
KC
export KUBECONFIG=$out/kubeconfig
for _ in $(seq 120); do kubectl get --raw /readyz >/dev/null 2>&1 && break; sleep 0.5; done
kubectl apply -f charts/slipway/crds/slipway.dev.yaml >/dev/null
kubectl wait --for condition=Established crd --all --timeout 60s >/dev/null
