#!/usr/bin/env bash
# Lays out hatrack's container root file system in a directory:
#
#   scripts/image-rootfs.sh BINARY DESTDIR
#
# Both image builds use it, so they ship the same files: scripts/build-image.sh (buildah, no
# Docker daemon; what CI builds and checks) and the Dockerfile's build stage (copied FROM scratch).
#
# What DESTDIR gets, all owned by root, nothing writable but by root, no shell, no setuid:
#   /hatrack                                  the binary (ENTRYPOINT)
#   the shared libraries `ldd BINARY` lists, at the paths it prints (for hatrack's glibc build:
#   /lib/x86_64-linux-gnu/{libc.so.6,libm.so.6,libgcc_s.so.1}), and the program interpreter
#   (/lib64/ld-linux-x86-64.so.2) — nothing else; a static binary gets none
#   /etc/ssl/certs/ca-certificates.crt        CA roots for AWS TLS (from $CA_BUNDLE, default
#                                             this machine's Debian ca-certificates bundle)
#   /etc/passwd, /etc/group                   root, nobody and nonroot (65532), as distroless has
#   /etc/nsswitch.conf                        hosts: files dns
#   /etc/hosts                                localhost (container runtimes mount their own over it)
#
# DNS: glibc 2.34 and later carry the `files` and `dns` NSS services inside libc.so.6, so
# getaddrinfo needs no libnss_*.so in the image. An older glibc would dlopen them: refused here.
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 BINARY DESTDIR" >&2
    exit 2
fi
binary=$1
dest=$2
ca_bundle=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

[ -x "$binary" ] || { echo "image-rootfs: $binary is not an executable file" >&2; exit 1; }
if [ ! -s "$ca_bundle" ]; then
    echo "image-rootfs: no CA bundle at $ca_bundle (apt-get install ca-certificates, or set CA_BUNDLE)" >&2
    exit 1
fi
if [ -e "$dest" ] && [ -n "$(ls -A "$dest")" ]; then
    echo "image-rootfs: $dest exists and is not empty" >&2
    exit 1
fi

install -d -m 0755 "$dest" "$dest/etc" "$dest/etc/ssl" "$dest/etc/ssl/certs"
install -m 0755 "$binary" "$dest/hatrack"
install -m 0644 "$ca_bundle" "$dest/etc/ssl/certs/ca-certificates.crt"

# Shared libraries: exactly what the dynamic loader resolves for this binary.
ldd_out=$(LC_ALL=C ldd "$binary" 2>&1 || true)
if grep -q -e 'not a dynamic executable' -e 'statically linked' <<<"$ldd_out"; then
    echo "image-rootfs: $binary is static: no shared libraries"
else
    if grep -q 'not found' <<<"$ldd_out"; then
        echo "image-rootfs: unresolved libraries:" >&2
        echo "$ldd_out" >&2
        exit 1
    fi
    glibc=$(getconf GNU_LIBC_VERSION | awk '{print $2}')
    if [ "$(printf '%s\n2.34\n' "$glibc" | sort -V | sed -n 1p)" != 2.34 ]; then
        echo "image-rootfs: glibc $glibc < 2.34 would need libnss_files/libnss_dns for DNS; build on a newer system" >&2
        exit 1
    fi
    # "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" and "/lib64/ld-linux-x86-64.so.2 (0x...)";
    # linux-vdso is the kernel's, not a file.
    libs=$(awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' <<<"$ldd_out" | sort -u)
    for lib in $libs; do
        install -d -m 0755 "$dest$(dirname "$lib")"
        # -L: the file a symlink (e.g. merged /usr) points to, under the path the loader asks for.
        cp -L "$lib" "$dest$lib"
        chmod 0755 "$dest$lib"
        echo "image-rootfs: $lib"
    done
fi

cat >"$dest/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
cat >"$dest/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
EOF
cat >"$dest/etc/nsswitch.conf" <<'EOF'
passwd: files
group: files
hosts: files dns
EOF
cat >"$dest/etc/hosts" <<'EOF'
127.0.0.1 localhost
::1 localhost ip6-localhost ip6-loopback
EOF
chmod 0644 "$dest/etc/passwd" "$dest/etc/group" "$dest/etc/nsswitch.conf" "$dest/etc/hosts"
# A reproducible tree: one timestamp (SOURCE_DATE_EPOCH, default 0) on every entry.
find "$dest" -exec touch -h -d "@${SOURCE_DATE_EPOCH:-0}" {} +
