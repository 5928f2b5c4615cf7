#!/bin/sh
# A self-signed certificate for the compose set-up's proxy; never committed
# (deploy/.gitignore). Usage: deploy/dev-cert.sh [DIR]   (default: deploy/certs)
set -eu
dir="${1:-$(dirname "$0")/certs}"
mkdir -p "$dir"
openssl req -x509 -newkey rsa:3072 -sha256 -days 30 -nodes \
    -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$dir/dev.key" -out "$dir/dev.crt" 2>/dev/null
cat "$dir/dev.crt" "$dir/dev.key" > "$dir/dev.pem"
chmod 600 "$dir/dev.key"
# The haproxy image runs as its own user (uid 99), which must read the bundle it is
# handed read-only; this throwaway development key is the only secret in it.
chmod 644 "$dir/dev.pem"
echo "wrote $dir/dev.pem"
