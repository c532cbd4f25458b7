#!/bin/bash
# Test certificates for the TLS benchmarks and tests (bench/tls.sh,
# test/bench-tls.bats): a private CA, an intermediate CA and a server
# certificate signed by it (the chain a real server sends), and a client
# certificate signed by the CA; all ECDSA P-256, valid for DAYS days
# (default 30) from now.
#
#   bench/tls-certs.sh DIR [NAME]     or, sourced:  tls_certs DIR [NAME]
#
# writes into DIR (created if missing):
#   ca.pem, ca.key          the CA (NAME, default "submitd test", goes into
#                           its subject: two calls with different names give
#                           two CAs that do not trust each other)
#   server.pem, server.key  the server's chain (its certificate, then the
#                           intermediate's) and its key; SANs IP:127.0.0.1, DNS:localhost
#   int.pem, int.key        the intermediate CA
#   client.pem, client.key  a client certificate (extendedKeyUsage clientAuth)
#   haproxy.pem             server.pem and server.key in one file, for haproxy's crt
# Needs the openssl CLI. Exit status 1, with openssl's output, on a failure.

tls_certs() {
	local dir=$1 name=${2:-submitd test} days=${DAYS:-30} log
	[ -n "$dir" ] || {
		echo "usage: tls_certs DIR [NAME]" >&2
		return 2
	}
	mkdir -p "$dir" || return 1
	log=$dir/openssl.log
	: >"$log"
	# The CA: self-signed, CA:true.
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$days" \
		-subj "/CN=$name CA" -keyout "$dir/ca.key" -out "$dir/ca.pem" \
		-addext basicConstraints=critical,CA:true \
		-addext keyUsage=critical,keyCertSign,cRLSign >>"$log" 2>&1 &&
		_tls_certs_sign "$dir" ca int "/CN=$name intermediate CA" \
			"basicConstraints=critical,CA:true,pathlen:0
keyUsage=critical,keyCertSign,cRLSign" &&
		_tls_certs_sign "$dir" int server "/CN=localhost" \
			"basicConstraints=critical,CA:false
keyUsage=critical,digitalSignature
subjectAltName=IP:127.0.0.1,DNS:localhost
extendedKeyUsage=serverAuth" &&
		_tls_certs_sign "$dir" ca client "/CN=$name client" "basicConstraints=critical,CA:false
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth" &&
		cat "$dir/int.pem" >>"$dir/server.pem" &&
		cat "$dir/server.pem" "$dir/server.key" >"$dir/haproxy.pem" || {
		echo "tls_certs: openssl failed:" >&2
		cat "$log" >&2
		return 1
	}
	chmod 600 "$dir"/*.key "$dir/haproxy.pem"
}

# _tls_certs_sign DIR ISSUER NAME SUBJECT EXTENSIONS: DIR/NAME.key and
# DIR/NAME.pem, signed by DIR/ISSUER.{pem,key}.
_tls_certs_sign() {
	local dir=$1 ca=$2 n=$3
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "$4" \
		-keyout "$dir/$n.key" -out "$dir/$n.csr" >>"$log" 2>&1 &&
		printf '%s\n' "$5" >"$dir/$n.ext" &&
		openssl x509 -req -in "$dir/$n.csr" -CA "$dir/$ca.pem" -CAkey "$dir/$ca.key" \
			-CAcreateserial -days "${DAYS:-30}" -sha256 -extfile "$dir/$n.ext" \
			-out "$dir/$n.pem" >>"$log" 2>&1 &&
		rm -f "$dir/$n.csr" "$dir/$n.ext" "$dir/$ca.srl"
}

# Run as a script: the same as the function.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	tls_certs "$@"
fi
