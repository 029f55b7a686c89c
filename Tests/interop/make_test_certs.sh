#!/usr/bin/env bash
# Makes a throwaway CA and two server certificates signed by it, for the HTTPS tests:
#   DIR/ca.pem                      the CA (what a client is told to trust: caFile)
#   DIR/server.pem, DIR/server.key  for localhost and 127.0.0.1
#   DIR/other.pem,  DIR/other.key   for elsewhere.example only (a name the client does not ask for)
#   DIR/renewed.pem, DIR/renewed.key for localhost and 127.0.0.1 too: a renewal of server.pem
#   DIR/client.pem, DIR/client.key  a client's certificate (mutual TLS), CN mcpopt-client
# usage: make_test_certs.sh DIR     (needs the openssl program; scripts/setup installs it)
set -euo pipefail
dir=$1
mkdir -p "$dir"
cd "$dir"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
key ca.key
openssl req -x509 -new -key ca.key -out ca.pem -days 2 -subj "/CN=mcpopt test CA" 2>/dev/null
for name in server other renewed client; do
  key "$name.key"
  openssl req -new -key "$name.key" -out "$name.csr" -subj "/CN=${name/client/mcpopt-client}" 2>/dev/null
  case $name in
    other) extensions="subjectAltName=DNS:elsewhere.example\nextendedKeyUsage=serverAuth" ;;
    client) extensions="extendedKeyUsage=clientAuth" ;;
    *) extensions="subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth" ;;
  esac
  printf "$extensions\nbasicConstraints=CA:FALSE\n" > "$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$name.pem" -days 2 -extfile "$name.ext" 2>/dev/null
done
rm -f ./*.csr ./*.ext ca.srl
