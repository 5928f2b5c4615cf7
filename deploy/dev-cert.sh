#!/bin/sh
# A self-signed certificate for the compose set-up's proxy; never committed.
set -eu
dir="$(dirname "$0")/certs"
mkdir -p "$dir"
openssl req -x509 -newkey rsa:3072 -sha256 -days 30 -nodes \
    -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$dir/dev.key" -out "$dir/dev.crt"
cat "$dir/dev.crt" "$dir/dev.key" > "$dir/dev.pem"
chmod 600 "$dir/dev.key" "$dir/dev.pem"
echo "wrote $dir/dev.pem"
