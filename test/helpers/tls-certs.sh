#!/bin/sh
# tls-certs.sh DIR: the certificates and keys of the TLS tests and benchmarks,
# written into DIR with the openssl CLI only (OpenSSL 3.0: its `x509 -req`
# has no -not_before/-not_after, so the leaves are signed by `openssl ca`,
# whose -startdate/-enddate set any validity, the past included). All keys
# are ECDSA P-256 except rsa.key. Every server certificate has the SANs
# 127.0.0.1 and localhost.
#
#   ca.pem ca.key                 a private CA
#   server.pem server.key         server certificate + chain (the CA after it)
#   server2.pem server2.key       a second valid one (another key, another fingerprint)
#   expired.pem expired.key       notAfter in the past (2021-01-01)
#   soon.pem soon.key             expires in 10 days
#   client.pem client.key         a client certificate from ca.pem
#   expired-client.pem .key       an expired client certificate from ca.pem
#   other-ca.pem other-ca.key     another CA
#   badclient.pem badclient.key   a client certificate from other-ca.pem
#   rsa.pem rsa.key               an RSA 2048 server certificate + chain
#   haproxy.pem                   server.pem and server.key in one file (haproxy's crt)
#   device.pem device.key         a client certificate from ca.pem with identities: CN
#                                 device-7.example, SANs DNS:device-7.example,
#                                 URI:spiffe://fleet/device-7, email:device-7@example.com
#
# Exit 0 with the files there, non-zero (openssl's message on stderr) if not.
set -eu

[ $# -eq 1 ] || {
	echo "usage: tls-certs.sh DIR" >&2
	exit 2
}
dir=$1
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
work=$(mktemp -d "$dir/.ca.XXXXXX")
trap 'rm -rf "$work"' EXIT

# openssl ca's bookkeeping: an index, a serial, and the config of the
# extensions each kind of certificate gets.
: >"$work/index.txt"
echo 1000 >"$work/serial"
cat >"$work/ca.cnf" <<EOF
[ca]
default_ca = ca_sect
[ca_sect]
database = $work/index.txt
serial = $work/serial
new_certs_dir = $work
default_md = sha256
policy = policy_any
unique_subject = no
copy_extensions = none
email_in_dn = no
[policy_any]
commonName = supplied
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[v3_ca]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[device]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectAltName = DNS:device-7.example, URI:spiffe://fleet/device-7, email:device-7@example.com
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF

ossl() {
	OPENSSL_CONF=$work/ca.cnf openssl "$@" 2>"$work/err" || {
		cat "$work/err" >&2
		exit 1
	}
}

eckey() {
	ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/$1.key"
}

# ca NAME CN: a self-signed CA, ten years.
ca() {
	eckey "$1"
	ossl req -new -x509 -key "$dir/$1.key" -subj "/CN=$2" -days 3650 \
		-config "$work/ca.cnf" -extensions v3_ca -out "$dir/$1.pem"
}

# leaf NAME CN EXT CA [ca's -startdate/-enddate/-days args]: a key (made
# already for rsa) and a certificate signed by CA with the extensions EXT.
leaf() {
	name=$1 cn=$2 ext=$3 signer=$4
	shift 4
	[ -e "$dir/$name.key" ] || eckey "$name"
	ossl req -new -key "$dir/$name.key" -subj "/CN=$cn" -config "$work/ca.cnf" -out "$work/$name.csr"
	ossl ca -batch -notext -config "$work/ca.cnf" -extensions "$ext" \
		-cert "$dir/$signer.pem" -keyfile "$dir/$signer.key" \
		-in "$work/$name.csr" -out "$work/$name.crt" "$@"
}

# chain NAME: the server certificate first, then its CA.
chain() {
	cat "$work/$1.crt" "$dir/ca.pem" >"$dir/$1.pem"
}

rm -f "$dir"/rsa.key
ca ca "submitd test CA"
ca other-ca "submitd other test CA"
leaf server localhost server ca -days 825
chain server
leaf server2 localhost server ca -days 825
chain server2
leaf expired localhost server ca -startdate 20200101000000Z -enddate 20210101000000Z
chain expired
leaf soon localhost server ca -enddate "$(date -u -d '+10 days' +%Y%m%d%H%M%SZ)"
chain soon
leaf client "submitd test client" client ca -days 825
cp "$work/client.crt" "$dir/client.pem"
leaf expired-client "submitd expired client" client ca -startdate 20200101000000Z -enddate 20210101000000Z
cp "$work/expired-client.crt" "$dir/expired-client.pem"
leaf device device-7.example device ca -days 825
cp "$work/device.crt" "$dir/device.pem"
leaf badclient "submitd bad client" client other-ca -days 825
cp "$work/badclient.crt" "$dir/badclient.pem"
ossl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$dir/rsa.key"
leaf rsa localhost server ca -days 825
chain rsa
chmod 600 "$dir"/*.key
cat "$dir/server.pem" "$dir/server.key" >"$dir/haproxy.pem"
chmod 600 "$dir/haproxy.pem"
