#!/usr/bin/env bash
# Installs what building and testing ragline needs, from Debian 12's own
# packages: the compiler and build tools, the three libraries ragline links
# (librdkafka, jansson, libcurl), cmocka for the unit tests, and for the
# integration tests Java and Maven (to run a real Kafka broker), kcat and
# Python's venv.  Run it as root, or as a user who may sudo.
set -euo pipefail

PACKAGES=(
    build-essential cmake ninja-build pkg-config
    librdkafka-dev libjansson-dev libcurl4-openssl-dev
    libcmocka-dev clang-format
    kcat python3 python3-venv
    openjdk-17-jre-headless maven ca-certificates
)

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
