#!/usr/bin/env bash
# Checks the image scripts/build-image.sh wrote (an OCI layout), without running a container
# (no container runtime works in CI's sandbox): its config, its layer, and its binary run from
# the unpacked root fs, read-only, as uid 65532.
#
#   scripts/check-image.sh [OCI_LAYOUT[:TAG]]   # default ${CARGO_TARGET_DIR:-target}/image/oci:dev
#
# Needs root (chroot, mounts, a DNS stand-in on 127.0.0.1:53) and umoci (installed if missing).
# Exits non-zero on the first failed check; prints every check it makes.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2
    echo "!!! IMAGE CHECK FAILED: $*" >&2
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2
    exit 1
}
ok() { echo "check-image: ok: $*"; }

# Second stage: inside a private mount namespace (see the end of this file), with the root fs
# bind-mounted read-only over itself. Arguments: ROOTFS WORKDIR.
if [ "${1:-}" = --inside ]; then
    rootfs=$2
    work=$3
    mkdir "$rootfs/check"   # a mount point, as a container runtime makes for a volume
    mount --bind "$rootfs" "$rootfs"
    mount -o remount,bind,ro "$rootfs"
    mount --bind "$work/volume" "$rootfs/check"
    mount -o remount,bind,ro "$rootfs/check"
    if touch "$rootfs/write-test" 2>/dev/null; then fail "the root fs is writable"; fi
    run() { chroot --userspec=65532:65532 "$rootfs" /hatrack "$@"; }

    out=$(run --version) || fail "/hatrack --version exited $?"
    [[ $out =~ ^hatrack\ [0-9]+\.[0-9]+\.[0-9]+ ]] || fail "/hatrack --version printed '$out'"
    ok "chroot --userspec=65532:65532 ROOTFS /hatrack --version: $out (read-only root fs)"

    # README's first command, on the examples (from stdin: the image holds no examples).
    plan_args=(plan --cluster-name demo --cluster-region eu-west-1 --account-id 111122223333
        --oidc-issuer https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE)
    for f in examples/*.yaml; do
        cat "$f"
        printf '\n---\n'
    done >"$work/examples.yaml"
    run "${plan_args[@]}" - <"$work/examples.yaml" >"$work/plan.json" || fail "/hatrack plan exited $?"
    "$rootfs/hatrack" "${plan_args[@]}" examples/ >"$work/plan-host.json" \
        || fail "the image's binary, run outside the chroot, failed on examples/"
    cmp -s "$work/plan.json" "$work/plan-host.json" \
        || fail "plan in the image differs from the same binary's plan of examples/ outside it"
    roles=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert all(r["arn"].startswith("arn:aws:iam::111122223333:role/") for r in d); print(len(d))' "$work/plan.json") \
        || fail "plan did not print a JSON array of roles"
    [ "$roles" -gt 0 ] || fail "plan printed no role"
    ok "/hatrack plan ... - < examples/*.yaml as 65532: $roles roles, identical to \`hatrack plan ... examples/\` outside the image"

    # DNS: the controller resolves its API server's name with getaddrinfo, as the AWS SDK
    # resolves AWS endpoints (both through hyper-util's GaiResolver). The stand-in answers DNS
    # on 127.0.0.1:53 (glibc's nameserver when /etc/resolv.conf is absent, as in the image)
    # and HTTP on its own port, and logs what reached it.
    python3 "$work/standin.py" "$work/standin.port" "$work/standin.log" &
    standin=$!
    trap 'kill $standin 2>/dev/null || true' EXIT
    for _ in $(seq 100); do [ -s "$work/standin.port" ] && break; sleep 0.1; done
    [ -s "$work/standin.port" ] || fail "the DNS/HTTP stand-in did not start (is 127.0.0.1:53 taken?)"
    port=$(cat "$work/standin.port")
    controller() { # HOST -> runs the controller against http://HOST:port, sets rc, stderr in $work/err
        sed "s|SERVER|http://$1:$port|" "$work/kubeconfig.in" >"$work/volume/kubeconfig"
        : >"$work/standin.log"
        rc=0
        KUBECONFIG=/check/kubeconfig timeout 60 chroot --userspec=65532:65532 "$rootfs" /hatrack \
            controller --cluster-name demo --cluster-region eu-west-1 --account-id 111122223333 \
            --oidc-issuer https://oidc.example --metrics-listen 127.0.0.1:0 2>"$work/err" || rc=$?
    }
    controller localhost
    [ "$rc" = 1 ] || fail "controller via localhost exited $rc (want 1 after the API's 404): $(cat "$work/err")"
    grep -q '^http GET /apis/hatrack.dev/' "$work/standin.log" \
        || fail "localhost did not resolve inside the image (nothing reached 127.0.0.1:$port): $(cat "$work/err")"
    if grep -q '^dns' "$work/standin.log"; then fail "localhost was looked up over DNS, not in /etc/hosts"; fi
    ok "localhost resolved from the image's /etc/hosts (nsswitch files): $(grep -m1 '^http' "$work/standin.log")"
    controller iam.amazonaws.com
    [ "$rc" = 1 ] || fail "controller via iam.amazonaws.com exited $rc: $(cat "$work/err")"
    grep -q '^dns A iam.amazonaws.com' "$work/standin.log" || fail "no DNS query for iam.amazonaws.com: $(cat "$work/err")"
    grep -q '^http GET /apis/hatrack.dev/' "$work/standin.log" \
        || fail "iam.amazonaws.com resolved but nothing connected: $(cat "$work/err")"
    ok "iam.amazonaws.com resolved over DNS (nsswitch dns, libc.so.6 only, no libnss_*.so) and connected"
    controller hatrack-check.invalid
    [ "$rc" = 1 ] || fail "controller with an unresolvable name exited $rc (want 1, not a crash): $(cat "$work/err")"
    grep -q '^dns A hatrack-check.invalid' "$work/standin.log" || fail "no DNS query for hatrack-check.invalid"
    ok "an unresolvable name (NXDOMAIN) is an error, exit 1, no crash: $(tail -1 "$work/err")"
    exit 0
fi

target_dir=${CARGO_TARGET_DIR:-target}
image=${IMAGE:-localhost/hatrack:dev}
ref=${1:-$target_dir/image/oci:${image##*:}}
if [[ ${ref##*/} == *:* ]]; then
    layout=${ref%:*}
    tag=${ref##*:}
else
    layout=$ref
    tag=${image##*:}
fi
[ -f "$layout/index.json" ] || fail "no OCI layout at $layout (scripts/build-image.sh first)"
[ "$(id -u)" = 0 ] || fail "needs root (chroot, mounts)"
scripts/install-image-tools.sh
start=$(date +%s)
echo "check-image: $layout:$tag"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# 1. Config and layers, read from the OCI layout as a registry would serve them.
python3 - "$layout" "$tag" "$work/ca-certificates.crt" "$work/image.json" <<'PY' || fail "config or layer check (above)"
import json, os, ssl, stat, sys, tarfile

layout, tag, ca_out, image_out = sys.argv[1:]
def blob(digest):
    return os.path.join(layout, "blobs", *digest.split(":", 1))
def bad(msg):
    print("check-image: FAILED:", msg); sys.exit(1)

index = json.load(open(os.path.join(layout, "index.json")))
manifests = [m for m in index["manifests"]
             if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag]
if len(manifests) != 1:
    bad(f"{len(manifests)} manifests tagged {tag}")
manifest = json.load(open(blob(manifests[0]["digest"])))
image = json.load(open(blob(manifest["config"]["digest"])))
json.dump(image, open(image_out, "w"))
config = image.get("config", {})
print(f"check-image: config: {json.dumps(config, sort_keys=True)}")
if config.get("User") != "65532:65532":
    bad(f"User is {config.get('User')!r}, want '65532:65532'")
if config.get("Entrypoint") != ["/hatrack"]:
    bad(f"Entrypoint is {config.get('Entrypoint')!r}, want ['/hatrack']")
if config.get("Cmd"):
    bad(f"Cmd is {config['Cmd']!r}, want none")
if (image.get("os"), image.get("architecture")) != ("linux", "amd64"):
    bad(f"platform {image.get('os')}/{image.get('architecture')}")
print("check-image: ok: User 65532:65532, Entrypoint [\"/hatrack\"], no Cmd, linux/amd64")

shells = {"sh", "bash", "dash", "ash", "zsh", "ksh", "busybox", "toybox"}
entries = {}
for layer in manifest["layers"]:
    with tarfile.open(blob(layer["digest"]), "r:*") as tar:
        for m in tar:
            name = m.name.lstrip("./").rstrip("/")
            entries[name] = m
            if os.path.basename(name).startswith(".wh."):
                bad(f"whiteout {name}: one layer expected")
            if os.path.basename(name) in shells:
                bad(f"shell in the image: /{name}")
            if m.uid != 0 or m.gid != 0:
                bad(f"/{name} owned by {m.uid}:{m.gid}, want 0:0")
            if m.mode & (stat.S_ISUID | stat.S_ISGID):
                bad(f"/{name} is setuid/setgid")
            if not m.issym() and m.mode & 0o022:
                bad(f"/{name} is writable by group or others ({oct(m.mode)})")
            if m.isdir() or m.isfile():
                continue
            bad(f"/{name}: unexpected entry type (links and devices are not expected)")
for name in sorted(entries):
    m = entries[name]
    print(f"check-image:   {oct(m.mode & 0o7777)} {m.uid}:{m.gid} {m.size:>10} /{name}")
need = ["hatrack", "etc/ssl/certs/ca-certificates.crt", "etc/passwd", "etc/group",
        "etc/nsswitch.conf", "etc/hosts"]
for name in need:
    if name not in entries or not entries[name].isfile():
        bad(f"/{name} missing")
if not entries["hatrack"].mode & 0o111:
    bad("/hatrack is not executable")
allowed = ("hatrack", "etc", "lib", "lib64", "usr")
extra = [n for n in entries if n.split("/")[0] not in allowed]
if extra:
    bad(f"unexpected files: {extra}")
if any(n in entries for n in ("bin", "sbin", "usr/bin", "usr/sbin")):
    bad("a bin/sbin directory in the image")
print("check-image: ok: one layer, no shell (no /bin/sh, no bin/sbin dirs), all root-owned, "
      "nothing setuid or group/other-writable, only /hatrack, /etc and the loader's libraries")

with tarfile.open(blob(manifest["layers"][-1]["digest"]), "r:*") as tar:
    ca = tar.extractfile("etc/ssl/certs/ca-certificates.crt").read()
open(ca_out, "wb").write(ca)
ctx = ssl.create_default_context(cafile=ca_out)
count = ctx.cert_store_stats()["x509_ca"]
if count < 100:
    bad(f"/etc/ssl/certs/ca-certificates.crt holds {count} CA certificates")
print(f"check-image: ok: /etc/ssl/certs/ca-certificates.crt loads {count} CA roots "
      "(rustls-native-certs reads that path)")
PY

# 2. umoci's unpack: the runtime bundle a container engine would make from the image.
umoci unpack --image "$layout:$tag" "$work/bundle" >/dev/null || fail "umoci unpack failed"
python3 - "$work/bundle/config.json" <<'PY' || fail "runtime config (above)"
import json, sys
process = json.load(open(sys.argv[1]))["process"]
user = (process["user"]["uid"], process["user"]["gid"])
if user != (65532, 65532) or process["args"] != ["/hatrack"]:
    print(f"check-image: FAILED: umoci's runtime config runs {process['args']} as {user}")
    sys.exit(1)
print("check-image: ok: umoci unpack: runtime config runs [\"/hatrack\"] as uid 65532 gid 65532")
PY
[ ! -e "$work/bundle/rootfs/bin/sh" ] || fail "/bin/sh in the unpacked root fs"

# 3. The Dockerfile's last stage, built by buildah from this root fs, must give this image: the
# same layer (diff_id) and the same User, Entrypoint and Cmd. (Its build stage needs a Docker
# daemon or a container runtime, which CI lacks: cargo and image-rootfs.sh are checked above.)
awk '/^FROM /{stage=""} {stage=stage $0 "\n"} END{printf "%s", stage}' Dockerfile >"$work/final.in"
head -1 "$work/final.in" | grep -qx 'FROM scratch' || fail "the Dockerfile's last stage is not FROM scratch"
[ "$(grep -cx 'COPY --from=build /rootfs/ /' "$work/final.in")" = 1 ] \
    || fail "the Dockerfile's last stage does not copy the root fs with 'COPY --from=build /rootfs/ /'"
sed 's|^COPY --from=build /rootfs/ /$|COPY rootfs/ /|' "$work/final.in" >"$work/bundle/Dockerfile"
dockerfile_image=localhost/hatrack-dockerfile-check:$tag
buildah bud --quiet --format oci --timestamp "${SOURCE_DATE_EPOCH:-0}" -f "$work/bundle/Dockerfile" \
    -t "$dockerfile_image" "$work/bundle" >/dev/null || fail "buildah bud of the Dockerfile's last stage failed"
buildah inspect --type image "$dockerfile_image" >"$work/dockerfile-image.json"
buildah rmi "$dockerfile_image" >/dev/null
python3 - "$work/image.json" "$work/dockerfile-image.json" <<'PY' || fail "the Dockerfile's image differs (above)"
import json, sys
image = json.load(open(sys.argv[1]))
built = json.load(open(sys.argv[2]))["OCIv1"]
keys = ("User", "Entrypoint", "Cmd")
a = {k: image["config"].get(k) for k in keys}
b = {k: built["config"].get(k) for k in keys}
if a != b or image["rootfs"]["diff_ids"] != built["rootfs"]["diff_ids"]:
    print(f"check-image: FAILED: image {a} {image['rootfs']['diff_ids']}")
    print(f"check-image:   Dockerfile {b} {built['rootfs']['diff_ids']}")
    sys.exit(1)
print(f"check-image: ok: the Dockerfile's last stage on this root fs: same layer "
      f"{built['rootfs']['diff_ids'][0][:19]}..., User, Entrypoint and Cmd")
PY

# 4. The binary, run from the unpacked root fs (stage 2 above).
mkdir "$work/volume"
chmod 0755 "$work" "$work/volume"
cat >"$work/kubeconfig.in" <<'EOF'
apiVersion: v1
kind: Config
clusters:
- name: check
  cluster: {server: "SERVER"}
users:
- name: check
  user: {token: check}
contexts:
- name: check
  context: {cluster: check, user: check}
current-context: check
EOF
cat >"$work/standin.py" <<'PY'
# DNS on 127.0.0.1:53/udp (A: *.amazonaws.com -> 127.0.0.1, AAAA: no answer, any other name:
# NXDOMAIN, so localhost only resolves from /etc/hosts) and a minimal HTTP API server answering 404 on an ephemeral port.
import socket, struct, sys, threading
port_file, log_file = sys.argv[1:]
def log(line):
    with open(log_file, "a") as f:
        f.write(line + "\n")
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 53))
def dns():
    while True:
        q, addr = s.recvfrom(512)
        ident, flags = struct.unpack(">HH", q[:4])
        i, labels = 12, []
        while q[i]:
            labels.append(q[i + 1:i + 1 + q[i]].decode()); i += 1 + q[i]
        qtype = struct.unpack(">H", q[i + 1:i + 3])[0]
        question = q[12:i + 5]
        name = ".".join(labels).lower()
        log(f"dns {dict([(1, 'A'), (28, 'AAAA')]).get(qtype, qtype)} {name}")
        known = name.endswith(".amazonaws.com")
        answer = b""
        if known and qtype == 1:
            answer = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_aton("127.0.0.1")
        rcode = 0 if known else 3
        header = struct.pack(">HHHHHH", ident, 0x8180 | rcode, 1, 1 if answer else 0, 0, 0)
        s.sendto(header + question + answer, addr)
def http(listener):
    while True:
        c, _ = listener.accept()
        line = c.recv(4096).split(b"\r\n")[0].decode(errors="replace")
        log("http " + line)
        body = b'{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}'
        c.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nConnection: close\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        c.close()
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(16)
threading.Thread(target=dns, daemon=True).start()
threading.Thread(target=http, args=(listener,), daemon=True).start()
open(port_file, "w").write(str(listener.getsockname()[1]))
threading.Event().wait()
PY
unshare --mount --propagation private -- "$PWD/scripts/check-image.sh" --inside "$work/bundle/rootfs" "$work" \
    || fail "running the image's binary (above)"
echo "check-image: all checks passed ($(($(date +%s) - start)) s)"
