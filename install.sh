#!/bin/sh
# Installs byteback on Debian 12 or 13: the system packages it runs with, a
# Rust toolchain if none new enough is present, and both binaries into
# /usr/local/bin. Run as root from a checkout: ./install.sh
set -eu
cd "$(dirname "$0")"

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq rsync openssh-server openssh-client btrfs-progs ca-certificates curl gcc

# byteback needs Rust 1.85 or newer: Debian 13's own cargo is new enough,
# Debian 12's is not, so there rustup's toolchain is used instead.
rust_ok() {
    command -v cargo >/dev/null 2>&1 || return 1
    v=$(rustc --version | cut -d' ' -f2)
    [ "$(printf '%s\n1.85.0\n' "$v" | sort -V | head -n1)" = "1.85.0" ]
}
if ! rust_ok && [ -x "$HOME/.cargo/bin/cargo" ]; then
    PATH="$HOME/.cargo/bin:$PATH"
fi
if ! rust_ok; then
    if apt-cache policy cargo | grep -q 'Candidate: 1\.\(8[5-9]\|9[0-9]\)'; then
        apt-get install -y -qq cargo
    else
        curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
        PATH="$HOME/.cargo/bin:$PATH"
    fi
fi

cargo install --locked --path . --root /usr/local
echo "Installed: $(command -v byteback) and $(command -v byteback-server)"
