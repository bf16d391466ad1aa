#!/usr/bin/env bash
# Makes the local control plane's CA, serving and client certificates and service-account keys
# with openssl, once. Files already present are kept, so a restart keeps every kubeconfig valid.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
mkdir -p "$PKI_DIR"
cd "$PKI_DIR"

if [ ! -f ca.crt ]; then
  log "pki: making a CA in $PKI_DIR"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
    -subj "/CN=kube-job-launcher-dev-ca" 2>/dev/null
fi

# sign NAME SUBJECT EXTENSIONS: a key and a certificate signed by the CA.
sign() {
  local name=$1 subject=$2 ext=$3
  [ -f "$name.crt" ] && return 0
  openssl req -newkey rsa:2048 -nodes -keyout "$name.key" -out "$name.csr" -subj "$subject" 2>/dev/null
  printf '%s\n' "$ext" > "$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$name.crt" \
    -days 3650 -extfile "$name.ext" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

server_ext() {
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=%s' "$1"
}
client_ext='basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth'

sign apiserver "/CN=kube-apiserver" "$(server_ext 'DNS:localhost,IP:127.0.0.1,IP:10.96.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local')"
sign kwok "/CN=kwok" "$(server_ext 'DNS:localhost,IP:127.0.0.1')"
# The admin identity, in system:masters: used by the developer, the tests and the control plane's
# own components (one local machine, one trust domain).
sign admin "/O=system:masters/CN=kubernetes-admin" "$client_ext"

if [ ! -f sa.key ]; then
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
fi
chmod 600 ./*.key
