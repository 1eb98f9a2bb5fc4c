#!/bin/sh
# Installs byteback from a checkout on Debian 12 or 13, as root:
#
#   ./install.sh                 everything: the packages byteback runs with,
#                                a Rust toolchain, the tools its tests use,
#                                then the binaries (with hardened mode's
#                                root helper, byteback-privileged), man
#                                pages (commands and both config files),
#                                completions, systemd units and the
#                                Prometheus alert rules under /usr/local
#   ./install.sh --runtime-only  the same without the test tools (databases,
#                                cargo-deb, systemd-analyze, promtool, chromium)
#   ./install.sh --deps-only     packages and tools only, no byteback (CI)
#
# Running it again upgrades the binaries, whatever installed them before.
# Afterwards `cargo` works in the same shell (it is linked into
# /usr/local/bin when rustup had to fetch it), so the README's test command
# runs next without any further step.
set -eu
cd "$(dirname "$0")"

tests=yes
build=yes
for arg in "$@"; do
    case "$arg" in
    --runtime-only) tests=no ;;
    --deps-only) build=no ;;
    *)
        echo "install.sh: unknown option $arg (use --runtime-only or --deps-only)" >&2
        exit 2
        ;;
    esac
done
if [ "$(id -u)" != 0 ]; then
    echo "install.sh: run it as root (it installs system packages and /usr/local/bin/byteback*)" >&2
    exit 2
fi

# What byteback runs with (sudo: the server's hardened mode reaches its
# privileged helper through one sudo rule), and what builds it.
runtime="rsync openssh-server openssh-client btrfs-progs sudo"
build_tools="ca-certificates curl gcc libc6-dev"
# What the end-to-end tests use: filesystems on loop devices, users, ACLs and
# xattrs, a pseudo-terminal, the database hooks' servers, man and systemd's
# unit checker for the package test, promtool (in Debian's prometheus)
# for the shipped alert rules, and a headless browser for the HTML
# report's test (tests/report.rs).
test_tools="e2fsprogs acl attr libcap2-bin util-linux bsdutils mount passwd procps man-db
    systemd mariadb-server mariadb-client postgresql prometheus chromium"
packages="$runtime $build_tools"
[ "$tests" = yes ] && packages="$packages $test_tools"

export DEBIAN_FRONTEND=noninteractive
had_prometheus=no
if dpkg-query -W -f='${Status}' prometheus 2>/dev/null | grep -q "install ok installed"; then
    had_prometheus=yes
fi
apt-get update -qq
# shellcheck disable=SC2086 # word splitting of the package lists is wanted
apt-get install -y -qq --no-install-recommends $packages >/dev/null
# Only promtool is wanted: the Prometheus server that came with it (Debian
# starts one, listening on every interface) is not left running. One that
# was installed before is left alone.
if [ "$tests" = yes ] && [ "$had_prometheus" = no ] && [ -d /run/systemd/system ]; then
    systemctl disable --now prometheus.service >/dev/null 2>&1 || true
fi
# sshd's privilege-separation directory (tests start their own sshd).
mkdir -p /run/sshd

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
        apt-get install -y -qq cargo rustfmt rust-clippy >/dev/null
    else
        curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
            sh -s -- -y --profile minimal -c rustfmt -c clippy
        PATH="$HOME/.cargo/bin:$PATH"
    fi
fi
# The calling shell's PATH cannot be changed from here: make rustup's tools
# reachable from /usr/local/bin, which every login PATH has.
if [ -x "$HOME/.cargo/bin/cargo" ]; then
    for tool in cargo rustc rustup rustdoc rustfmt cargo-fmt cargo-clippy clippy-driver; do
        if [ -e "$HOME/.cargo/bin/$tool" ] && ! [ -e "/usr/local/bin/$tool" ]; then
            ln -s "$HOME/.cargo/bin/$tool" "/usr/local/bin/$tool"
        fi
    done
fi
# cargo finds subcommands in ~/.cargo/bin by itself.
if [ "$tests" = yes ] && ! cargo deb --version >/dev/null 2>&1; then
    cargo install --locked --quiet cargo-deb
fi

[ "$build" = yes ] || exit 0

cargo build --locked --release --bins
# install(1) replaces whatever is there (cargo install would refuse
# binaries it did not put there itself).
install -m 755 target/release/byteback target/release/byteback-server \
    target/release/byteback-privileged /usr/local/bin/
for bin in byteback byteback-server; do
    if [ -x "/usr/bin/$bin" ]; then
        echo "Note: /usr/bin/$bin (the Debian package) is also installed; /usr/local/bin/$bin comes first in PATH"
    fi
done

# Man pages and completions, generated from the command definitions.
rm -rf target/assets
cargo run --locked --quiet -p xtask -- assets target/assets
install -d /usr/local/share/man/man1 /usr/local/share/man/man5 \
    /usr/local/share/bash-completion/completions \
    /usr/local/share/zsh/site-functions /usr/local/share/fish/vendor_completions.d \
    /usr/local/lib/systemd/system
install -m 644 target/assets/man/byteback/*.1 target/assets/man/byteback-server/*.1 \
    /usr/local/share/man/man1/
# byteback.toml(5) and byteback-server.toml(5), the configuration files.
install -m 644 target/assets/man/byteback/*.5 target/assets/man/byteback-server/*.5 \
    /usr/local/share/man/man5/
install -m 644 target/assets/completions/bash/* /usr/local/share/bash-completion/completions/
install -m 644 target/assets/completions/zsh/* /usr/local/share/zsh/site-functions/
install -m 644 target/assets/completions/fish/* /usr/local/share/fish/vendor_completions.d/
# The units run `byteback`/`byteback-server` from PATH; none is enabled here
# (`byteback-server setup --user NAME` enables the server's timer).
install -m 644 contrib/byteback-backup.service contrib/byteback-backup.timer \
    contrib/byteback-server-maintenance@.service contrib/byteback-server-maintenance@.timer \
    /usr/local/lib/systemd/system/
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
fi
# Prometheus alert rules over the metrics the maintenance timer writes (see
# docs/fleet-monitoring.md).
install -d /usr/local/share/byteback-server/prometheus
install -m 644 packaging/prometheus/byteback.rules.yml /usr/local/share/byteback-server/prometheus/

echo "Installed: $(command -v byteback) and $(command -v byteback-server) ($(byteback --version))"
