#!/bin/sh
# Make one random cookie per node for docker/compose.yaml, owned by the image's uid
# (10001) and chmod 600: OTP and distproxy both refuse a cookie file others can read.
# Run once, as root (or with sudo), before `docker compose up`.
set -eu
cd "$(dirname "$0")"
mkdir -p cookies
for node in my_desktop ec2_node bob_colo; do
    if [ ! -s "cookies/$node.cookie" ]; then
        # 32 characters from [A-Za-z0-9]: printable, no spaces, as an atom must be
        LC_ALL=C tr -dc 'A-Za-z0-9' </dev/urandom | head -c 32 >"cookies/$node.cookie"
    fi
    chmod 600 "cookies/$node.cookie"
    chown "${DISTPROXY_UID:-10001}:${DISTPROXY_UID:-10001}" "cookies/$node.cookie"
done
echo "cookies in $(pwd)/cookies (owner ${DISTPROXY_UID:-10001}, mode 600)"
