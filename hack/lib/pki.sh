#!/usr/bin/env bash
# A local PKI made with the openssl CLI: a CA, the apiserver's serving certificate, client
# certificates (CN = user, O = group, as the apiserver's x509 authenticator reads them),
# service-account keys, and kubeconfigs. RSA 2048 throughout, as kubeadm makes them.
# Source this file; every function writes into the directory given as its first argument.

# pki::ca DIR [STEM [CN]] — a CA STEM.crt / STEM.key (default ca, ferrokube-local-ca).
pki::ca() {
  local dir="$1" stem="${2:-ca}" cn="${3:-ferrokube-local-ca}"
  openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 365 \
    -keyout "${dir}/${stem}.key" -out "${dir}/${stem}.crt" -subj "/CN=${cn}" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
  chmod 600 "${dir}/${stem}.key"
}

# pki::sign DIR STEM SUBJECT EXTENSIONS [CA] — STEM.crt / STEM.key signed by the CA CA.crt
# (default ca) in DIR.
pki::sign() {
  local dir="$1" stem="$2" subject="$3" extensions="$4" ca="${5:-ca}"
  openssl req -new -newkey rsa:2048 -nodes -sha256 \
    -keyout "${dir}/${stem}.key" -out "${dir}/${stem}.csr" -subj "${subject}" 2>/dev/null
  openssl x509 -req -sha256 -days 365 -in "${dir}/${stem}.csr" \
    -CA "${dir}/${ca}.crt" -CAkey "${dir}/${ca}.key" -CAcreateserial \
    -out "${dir}/${stem}.crt" -extfile <(printf '%b' "${extensions}") 2>/dev/null
  rm -f "${dir}/${stem}.csr"
  chmod 600 "${dir}/${stem}.key"
}

# pki::serving DIR STEM CN SAN — a server certificate; SAN like "IP:127.0.0.1,DNS:localhost".
pki::serving() {
  pki::sign "$1" "$2" "/CN=$3" \
    "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=$4\n"
}

# pki::client DIR STEM USER [GROUP [CA]] — a client certificate for USER in GROUP, signed by
# CA (default ca).
pki::client() {
  local subject="/CN=$3"
  [[ -n "${4:-}" ]] && subject="/O=$4/CN=$3"
  pki::sign "$1" "$2" "${subject}" \
    "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n" \
    "${5:-ca}"
}

# pki::service_account DIR — sa.key / sa.pub, the service-account token signing pair.
pki::service_account() {
  openssl genrsa -out "$1/sa.key" 2048 2>/dev/null
  openssl rsa -in "$1/sa.key" -pubout -out "$1/sa.pub" 2>/dev/null
  chmod 600 "$1/sa.key"
}

# pki::kubeconfig FILE SERVER CA CERT KEY USER — a kubeconfig with one cluster/user/context.
pki::kubeconfig() {
  local file="$1" server="$2" ca="$3" cert="$4" key="$5" user="$6"
  cat >"${file}" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: ferrokube-local
  cluster:
    server: "${server}"
    certificate-authority: "${ca}"
users:
- name: "${user}"
  user:
    client-certificate: "${cert}"
    client-key: "${key}"
contexts:
- name: ferrokube-local
  context:
    cluster: ferrokube-local
    user: "${user}"
current-context: ferrokube-local
KUBECONFIG
  chmod 600 "${file}"
}
