#!/usr/bin/env bash
# `make test-matrix`: the whole test suite on every QGIS we support, each in a Debian root file
# system built once with mmdebstrap and cached (a second run reuses it):
#   qgis-3.22  bookworm (Debian's own QGIS 3.22, qgisMinimumVersion)
#   qgis-3.40  trixie   (QGIS 3.40 LTR)
#   qgis-3.44  sid      (QGIS 3.44)
# In each root the checkout (tracked and new files, no .venv) is copied to /srv/seg_explainer and
# `make test` runs there exactly as on a new machine. Prints one table at the end.
#   SEGX_ROOTS_DIR  where roots are cached (default /var/cache/seg-explainer/roots as root)
#   SEGX_MATRIX     which targets to run (default "3.22 3.40 3.44")
#   SEGX_MATRIX_JOBS  how many roots are tested at once (default: the number of cores)
# Needs root (mmdebstrap --mode=root and chroot).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" -eq 0 ] || { echo "test-matrix: run as root (mmdebstrap and chroot need it)" >&2; exit 2; }
CACHE=${SEGX_ROOTS_DIR:-/var/cache/seg-explainer/roots}
TARGETS=${SEGX_MATRIX:-3.22 3.40 3.44}
MIRROR=http://deb.debian.org/debian
# The packages setup.sh would install, plus what a minimal root lacks for `make test`.
PACKAGES=qgis,qgis-providers,python3-qgis,python3-gdal,gdal-bin,python3-numpy,python3-scipy,python3-matplotlib,python3-venv,python3-pip,xvfb,xauth,imagemagick,ca-certificates,make,git,procps,sudo,locales,fontconfig,fonts-dejavu-core
mkdir -p "$CACHE"
exec 9> "$CACHE/.lock"
flock -n 9 || { echo "test-matrix: another run holds $CACHE/.lock" >&2; exit 2; }

if ! command -v mmdebstrap > /dev/null; then
    echo "test-matrix: installing mmdebstrap"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap
fi

suite_of() { case "$1" in 3.22) echo bookworm ;; 3.40) echo trixie ;; 3.44) echo sid ;; *) return 1 ;; esac; }

unmount_under() {  # unmount_under DIR: whatever is still mounted below DIR (a run killed before its
    # trap left /dev bound there; `rm -rf` of the root would then delete the host's /dev), deepest first
    local m
    awk -v d="$1/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null
    done
}

build_root() {  # build_root VERSION: the cached root for that QGIS, built if missing or outdated
    local version=$1 suite dir stamp want
    suite=$(suite_of "$version") || { echo "test-matrix: unknown target $version" >&2; return 1; }
    dir="$CACHE/qgis-$version"
    want=$(printf '%s\n' "$suite" "$PACKAGES" "$MIRROR" | sha256sum | cut -d' ' -f1)
    if [ -f "$dir/.segx-root" ] && [ "$(cat "$dir/.segx-root")" = "$want" ]; then
        echo "test-matrix: reusing the cached $suite root for QGIS $version ($dir)"
        return 0
    fi
    echo "test-matrix: building a $suite root for QGIS $version with mmdebstrap (several minutes)"
    unmount_under "$dir.partial"
    unmount_under "$dir"
    rm -rf "$dir.partial"
    local extra=()
    # sid's Release file on the mirror may be past its Valid-Until date.
    [ "$suite" = sid ] && extra+=(--aptopt='Acquire::Check-Valid-Until "false"')
    if ! mmdebstrap --mode=root --variant=apt --quiet "${extra[@]}" \
            --include="$PACKAGES" "$suite" "$dir.partial" "$MIRROR" > "$CACHE/build-$version.log" 2>&1; then
        tail -n 20 "$CACHE/build-$version.log" >&2
        echo "test-matrix: building the $suite root failed (log: $CACHE/build-$version.log)" >&2
        rm -rf "$dir.partial"
        return 1
    fi
    # pip inside the root goes through the same TLS interception as the host: trust its CAs.
    if compgen -G "/usr/local/share/ca-certificates/*.crt" > /dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$dir.partial/usr/local/share/ca-certificates/"
        chroot "$dir.partial" update-ca-certificates > /dev/null 2>&1
    fi
    echo "$want" > "$dir.partial/.segx-root"
    rm -rf "$dir" && mv "$dir.partial" "$dir"
}

mount_root() {  # mount_root DIR: the kernel file systems a chroot needs, recorded in MOUNTED
    local dir=$1
    mount -t proc proc "$dir/proc" && MOUNTED+=("$dir/proc")
    mount -t sysfs sysfs "$dir/sys" && MOUNTED+=("$dir/sys")
    mount --bind /dev "$dir/dev" && MOUNTED+=("$dir/dev")
    mount --bind /dev/pts "$dir/dev/pts" && MOUNTED+=("$dir/dev/pts")
    mount -t tmpfs -o mode=1777 tmpfs "$dir/dev/shm" && MOUNTED+=("$dir/dev/shm")
    cp -L /etc/resolv.conf "$dir/etc/resolv.conf" 2>/dev/null || true
}
unmount_all() {
    local i
    for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do umount -l "${MOUNTED[i]}" 2>/dev/null; done
    MOUNTED=()
}

copy_checkout() {  # the working tree as git sees it (tracked + new files), keeping the root's .venv
    local dest=$1/srv/seg_explainer
    mkdir -p "$dest"
    find "$dest" -mindepth 1 -maxdepth 1 ! -name .venv ! -name .cache -exec rm -rf {} +
    rm -rf "$dest/.cache/qgis_process"
    (cd "$ROOT" && git ls-files -co --exclude-standard -z | xargs -0 -I{} sh -c '[ -e "{}" ] && printf "%s\0" "{}"' \
        | tar --null -T - -cf -) | tar -C "$dest" -xf -
    if [ -d "$ROOT/../shared" ]; then
        rm -rf "$1/srv/shared" && cp -r "$ROOT/../shared" "$1/srv/shared"
    fi
}

kill_inside() {  # kill_inside DIR: every process whose root directory is DIR
    local p
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/root" 2>/dev/null)" = "$1" ] && kill -TERM "${p#/proc/}" 2>/dev/null
    done
}

test_root() {  # test_root VERSION: `make test` in that root; its table row in $CACHE/row-VERSION
    local v=$1 dir="$CACHE/qgis-$1" log="$CACHE/test-$1.log" status info summary result
    MOUNTED=()
    trap unmount_all EXIT
    trap 'kill_inside "$dir"; exit 143' INT TERM
    unmount_under "$dir"
    copy_checkout "$dir"
    mount_root "$dir"
    echo "test-matrix: make test in the QGIS $v root (log: $log)"
    local start=$SECONDS
    # in the background, so that a signal reaches the trap at once, not when the suite ends
    chroot "$dir" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root LANG=C.UTF-8 PIP_DEFAULT_TIMEOUT=180 SEGX_QGIS_SUITE=distro \
        bash -c 'cd /srv/seg_explainer && make test' > "$log" 2>&1 &
    wait $!
    status=$?
    info=$(chroot "$dir" /usr/bin/python3 -c 'import sys, numpy; from qgis.core import Qgis; print(Qgis.QGIS_VERSION.split("-")[0], sys.version.split()[0], numpy.__version__, sep="|")' 2>/dev/null || echo "?|?|?")
    unmount_all
    summary=$(grep -E '^=+ .*(passed|failed|error|no tests ran).* in [0-9.]+s' "$log" | tail -n 1)
    count() { echo "$summary" | grep -oE "[0-9]+ $1" | grep -oE '^[0-9]+' || echo 0; }
    if [ -z "$summary" ]; then
        result="set-up failed (exit $status)"
    else
        result="$(count passed) passed / $(count failed) failed / $(count error) errors / $(count skipped) skipped"
    fi
    echo "test-matrix: QGIS $v root done in $((SECONDS - start)) s: $result"
    printf '%s\n' "$status" "$v|$info|$result" > "$CACHE/row-$v"
}

# Build every missing root first (in parallel: mostly downloads), then test them, JOBS at a time
# (a suite runs on one core most of the time).
pids=()
for v in $TARGETS; do build_root "$v" & pids+=($!); done
for p in "${pids[@]}"; do wait "$p"; done

JOBS=${SEGX_MATRIX_JOBS:-$(nproc)}
[ "$JOBS" -ge 1 ] 2>/dev/null || JOBS=1
trap 'kill $(jobs -p) 2>/dev/null; wait; exit 143' INT TERM
for v in $TARGETS; do
    rm -f "$CACHE/row-$v"
    [ -f "$CACHE/qgis-$v/.segx-root" ] || continue
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
    test_root "$v" &
done
wait

rows=()
overall=0
for v in $TARGETS; do
    if [ ! -f "$CACHE/row-$v" ]; then
        rows+=("$v|-|-|-|root not built or its run did not finish")
        overall=1
        continue
    fi
    { read -r status; read -r row; } < "$CACHE/row-$v"
    rows+=("$row")
    if [ "$status" -ne 0 ]; then
        overall=1
        echo "test-matrix: QGIS $v failed (exit $status); the end of $CACHE/test-$v.log:"
        tail -n 40 "$CACHE/test-$v.log"
    fi
done

echo
printf '%-8s | %-10s | %-8s | %-8s | %s\n' target QGIS Python numpy "passed / failed / errors / skipped"
printf -- '---------+------------+----------+----------+-----------------------------------\n'
for row in "${rows[@]}"; do
    IFS='|' read -r t q p n r <<< "$row"
    printf '%-8s | %-10s | %-8s | %-8s | %s\n' "$t" "$q" "$p" "$n" "$r"
done
exit $overall
