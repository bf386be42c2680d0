# PKI and kubeconfigs of the local control plane (sourced by cluster.sh after common.sh).
# ECDSA P-256 keys everywhere: generating them takes milliseconds, so a cold `up` stays fast.
# shellcheck shell=bash

PKI="$STATE/pki"

# pki_ca NAME CN: a self-signed CA.
pki_ca() {
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/$1.key" 2>/dev/null
  openssl req -x509 -new -key "$PKI/$1.key" -subj "/CN=$2" -days 3650 -out "$PKI/$1.crt" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}

# pki_sign NAME SUBJECT EXTENSIONS [CA]: a key and a certificate signed by CA (default: the cluster CA).
pki_sign() {
  local name=$1 subj=$2 ext=$3 ca=${4:-ca}
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/$name.key" 2>/dev/null
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" -CAcreateserial \
    -days 3650 -out "$PKI/$name.crt" -extfile <(printf '%b' "$ext") 2>/dev/null
  rm -f "$PKI/$name.csr"
}

# write_kubeconfig FILE USER CERT_NAME: a kubeconfig for the local apiserver, authenticating with a client cert.
write_kubeconfig() {
  local file=$1 user=$2 cert=$3
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: scaledapp-local
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority: $PKI/ca.crt
users:
- name: $user
  user:
    client-certificate: $PKI/$cert.crt
    client-key: $PKI/$cert.key
contexts:
- name: scaledapp-local
  context:
    cluster: scaledapp-local
    user: $user
current-context: scaledapp-local
EOF
  chmod 600 "$file"
}

# ensure_pki: CA, serving cert, client certs, service-account key pair and kubeconfigs (kept while the state lives:
# `cluster.sh down` removes them, so changes here take effect at the next down + up).
ensure_pki() {
  if [ -s "$PKI/done" ]; then return 0; fi
  say "PKI: creating a CA and certificates in $PKI"
  rm -rf "$PKI" && mkdir -p "$PKI" && chmod 700 "$PKI"
  pki_ca ca scaledapp-local-ca
  local san="IP:127.0.0.1,DNS:localhost,IP:10.96.0.1,DNS:kubernetes,DNS:kubernetes.default"
  san="$san,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:$ADVERTISE_ADDRESS"
  pki_sign apiserver "/CN=kube-apiserver" \
    "subjectAltName=$san\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment"
  local client="extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment"
  pki_sign admin "/O=system:masters/CN=kubernetes-admin" "$client"
  # The controller-manager acts with its own name but in system:masters, without per-controller ServiceAccount
  # credentials: in that mode it exits (F client_builder_dynamic) whenever the apiserver is briefly unreachable.
  pki_sign controller-manager "/O=system:masters/CN=system:kube-controller-manager" "$client"
  pki_sign scheduler "/CN=system:kube-scheduler" "$client"
  # The aggregation layer's front proxy (lets aggregated APIs such as metrics-server authenticate the apiserver).
  pki_ca front-proxy-ca scaledapp-local-front-proxy-ca
  pki_sign front-proxy-client "/CN=front-proxy-client" "$client" front-proxy-ca
  # The service-account token signing key pair (ES256).
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/sa.key" 2>/dev/null
  openssl ec -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  write_kubeconfig "$STATE/kubeconfig" kubernetes-admin admin
  write_kubeconfig "$PKI/controller-manager.kubeconfig" system:kube-controller-manager controller-manager
  write_kubeconfig "$PKI/scheduler.kubeconfig" system:kube-scheduler scheduler
  chmod 600 "$PKI"/*.key
  date -u +%FT%TZ >"$PKI/done"
}
