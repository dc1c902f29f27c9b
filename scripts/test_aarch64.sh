#!/usr/bin/env bash
# Lints the workspace for aarch64 (clippy -D warnings: the aarch64-only code paths) and runs the kernels crate's
# tests there (the NEON kernels against the scalar references) under qemu-user. The rustup toolchains here carry
# only the x86-64 standard library, so the build runs in a Debian sid chroot, whose packaged rustc is new enough
# for the workspace and ships an arm64 std.
#
# Needs root (debootstrap, chroot, bind mounts). The chroot is built once (about two minutes) and kept in
# $VPTQ_AARCH64_ROOT (default /var/cache/vptq/aarch64-sid), with its build cache.
#
# qemu emulates floating point in software, so the kernel tests run about 60× slower than natively (the default
# selection: 5.6 s native, 324–360 s under qemu). By default the property test runs VPTQ_PROPTEST_CASES=8 cases
# and `published_shapes_and_threads` (thread splits, the same code on every instruction set) is skipped.
# Arguments (cargo test's) replace that default test selection.
#
# Exit status: 0 passed; 77 the chroot could not be set up (no network, no mount permission): nothing was tested;
# anything else: the build, the lints or a test failed.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
root=${VPTQ_AARCH64_ROOT:-/var/cache/vptq/aarch64-sid}
mirror=http://deb.debian.org/debian
# The mirror may serve a snapshot whose Release file is past its Valid-Until date.
apt_opts=(-o Acquire::Check-Valid-Until=false -q)
registry=${CARGO_HOME:-$HOME/.cargo}/registry

[ "$(id -u)" -eq 0 ] || { echo "test_aarch64: needs root (debootstrap, chroot, mount)" >&2; exit 77; }

# Unmounts everything below $root (a run killed before its cleanup leaves the repository bind-mounted there).
unmount_all() {
    local m below='index($2, r) == 1'
    while read -r m; do
        umount -l "$m" || true
    done < <(awk -v r="$root/" "$below { print \$2 }" /proc/mounts | sort -r)
    ! awk -v r="$root/" "$below { found = 1 } END { exit !found }" /proc/mounts
}

setup() {
    echo "test_aarch64: building the sid chroot in $root"
    if ! command -v debootstrap >/dev/null; then
        apt-get "${apt_opts[@]}" update && apt-get "${apt_opts[@]}" install -y debootstrap
    fi
    unmount_all || { echo "test_aarch64: cannot unmount below $root; not deleting it" >&2; return 1; }
    rm -rf --one-file-system "$root" && mkdir -p "$root"
    debootstrap --variant=minbase --include=ca-certificates sid "$root" "$mirror" >"$root.debootstrap.log"
    rm -f "$root/etc/apt/sources.list"
    printf 'Types: deb\nURIs: %s\nSuites: sid\nComponents: main\nSigned-By: %s\n' "$mirror" \
        /usr/share/keyrings/debian-archive-keyring.gpg >"$root/etc/apt/sources.list.d/debian.sources"
    chroot "$root" dpkg --add-architecture arm64
    chroot "$root" apt-get "${apt_opts[@]}" update
    DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get "${apt_opts[@]}" install -y --no-install-recommends \
        rustc cargo rust-clippy libstd-rust-dev:arm64 gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
}

mounted=()
cleanup() { for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount "${mounted[i]}" || true; done; }
trap cleanup EXIT
bind() { mount --bind "$1" "$2" && mounted+=("$2"); }

mount_all() {
    unmount_all || return 1
    # The host's CA bundle (registry access may go through a proxy with its own CA) and the host's crate cache.
    cp "${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}" "$root/root/ca.crt" || return 1
    cp /etc/resolv.conf "$root/etc/resolv.conf" || return 1
    mkdir -p "$root/src" "$root/proc" "$root/root/.cargo/registry" "$registry" || return 1
    bind "$repo" "$root/src" || return 1
    bind "$registry" "$root/root/.cargo/registry" || return 1
    mount -t proc proc "$root/proc" && mounted+=("$root/proc")
}

if [ ! -x "$root/usr/bin/qemu-aarch64" ] || [ ! -x "$root/usr/bin/cargo-clippy" ] ||
    [ ! -d "$root/usr/lib/rustlib/aarch64-unknown-linux-gnu" ]; then
    # A subshell of its own, so that errexit holds inside `setup` and its first failure ends it.
    set +e
    (set -e; setup)
    ok=$?
    set -e
    [ "$ok" -eq 0 ] || { echo "test_aarch64: SKIPPED: the sid chroot could not be set up (see above)" >&2; exit 77; }
fi
mount_all || { echo "test_aarch64: SKIPPED: the chroot's mounts failed (see above)" >&2; exit 77; }

[ $# -gt 0 ] || set -- -- --skip published_shapes_and_threads
echo "test_aarch64: $(chroot "$root" rustc --version), tests under $(chroot "$root" qemu-aarch64 --version | head -1)"
chroot "$root" env -i PATH=/usr/bin:/bin HOME=/root SSL_CERT_FILE=/root/ca.crt CARGO_HTTP_CAINFO=/root/ca.crt \
    CARGO_TARGET_DIR=/root/target-aarch64 \
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu" \
    VPTQ_PROPTEST_CASES="${VPTQ_PROPTEST_CASES:-8}" \
    bash -c 'set -e; cd /src; t=(--locked --release --target aarch64-unknown-linux-gnu)
        cargo clippy "${t[@]}" --workspace --all-targets -- -D warnings
        cargo test "${t[@]}" -p vptq-kernels "$@"' _ "$@"
