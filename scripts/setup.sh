#!/usr/bin/env bash
# Prepares a Debian 12 machine to build, test and run offsite.
#
# Idempotent and fast when nothing is missing (it runs before every make target): each system
# package is checked with dpkg first, and apt-get runs only when something must be installed.
# Also fetches the ONNX Runtime shared library into third_party/onnxruntime/ (optional for now).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

ORT_VERSION=1.32.0
ORT_LIB=third_party/onnxruntime/libonnxruntime.so

done_steps=()

say() { printf 'setup: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# --- Rust toolchain: comes with the machine, never installed here --------------------------------
if ! command -v cargo >/dev/null 2>&1; then
    die "cargo not found on PATH. Install the Rust toolchain (rustup, stable) and make sure \
~/.cargo/bin is on PATH, then run this again."
fi

# --- System packages ------------------------------------------------------------------------------
installed() {
    dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed$'
}

have_pg_server() {
    local f
    for f in /usr/lib/postgresql/15/bin/initdb /usr/lib/postgresql/*/bin/initdb; do
        [[ -x "$f" ]] && return 0
    done
    return 1
}

missing=()
# chromium drives the browser tests (playwright-core, tests/tests/browser.rs); fonts-noto-cjk makes
# Chinese readable in it and in its screenshots.
for pkg in pkg-config mosquitto mosquitto-clients postgresql-15-partman sudo ca-certificates chromium fonts-noto-cjk; do
    installed "$pkg" || missing+=("$pkg")
done
# GStreamer for the edge agent's camera mode (feature `camera`): the development files it links
# against, and the plugins its pipelines use (RTSP client and server, H.264/H.265/MJPEG decoders).
for pkg in libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstrtspserver-1.0-dev \
    gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
    gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-rtsp; do
    installed "$pkg" || missing+=("$pkg")
done
if ! installed postgresql-15 && ! have_pg_server; then
    missing+=(postgresql-15)
fi

if ((${#missing[@]})); then
    if ! command -v apt-get >/dev/null 2>&1; then
        die "missing packages: ${missing[*]}; this script expects Debian 12 (apt-get not found). \
Install the equivalents by hand."
    fi
    if [[ $(id -u) -eq 0 ]]; then
        as_root=()
    elif command -v sudo >/dev/null 2>&1; then
        as_root=(sudo)
    else
        die "missing packages: ${missing[*]}. Not root and sudo is not available; as root run:
    apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
    fi

    say "installing: ${missing[*]}"
    # Keep the packages' maintainer scripts from starting mosquitto or PostgreSQL daemons: a
    # policy-rc.d that exits 101 forbids it. Any policy-rc.d already present is put back after.
    policy=/usr/sbin/policy-rc.d
    policy_backup=""
    if [[ -e $policy ]]; then
        policy_backup=$(mktemp)
        cp -p "$policy" "$policy_backup"
    fi
    restore_policy() {
        if [[ -n $policy_backup ]]; then
            "${as_root[@]}" cp -p "$policy_backup" "$policy" || true
            rm -f "$policy_backup"
        else
            "${as_root[@]}" rm -f "$policy" || true
        fi
    }
    trap restore_policy EXIT
    printf '#!/bin/sh\nexit 101\n' | "${as_root[@]}" tee "$policy" >/dev/null
    "${as_root[@]}" chmod 0755 "$policy"

    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}"

    restore_policy
    trap - EXIT
    done_steps+=("installed ${missing[*]}")
else
    done_steps+=("system packages present")
fi

# --- ONNX Runtime shared library (optional at this stage) -----------------------------------------
if [[ -f $ORT_LIB ]]; then
    done_steps+=("onnxruntime present")
else
    say "fetching ONNX Runtime ${ORT_VERSION} (Python wheel) for ${ORT_LIB}"
    tmp=$(mktemp -d)
    ort_ok=0
    if python3 -m pip download "onnxruntime==${ORT_VERSION}" --no-deps --only-binary=:all: \
        -d "$tmp" -q --disable-pip-version-check >&2; then
        mkdir -p "$(dirname "$ORT_LIB")"
        if python3 - "$tmp" "$ORT_LIB" "$ORT_VERSION" <<'PY'
import glob, os, sys, zipfile

tmp, dest, version = sys.argv[1:4]
wheels = glob.glob(os.path.join(tmp, "onnxruntime-*.whl"))
if not wheels:
    sys.exit("no onnxruntime wheel was downloaded")
member = "onnxruntime/capi/libonnxruntime.so." + version
with zipfile.ZipFile(wheels[0]) as z:
    try:
        data = z.read(member)
    except KeyError:
        sys.exit(f"{member} not found in {os.path.basename(wheels[0])}")
part = dest + ".part"
with open(part, "wb") as f:
    f.write(data)
os.chmod(part, 0o755)
os.replace(part, dest)
PY
        then
            ort_ok=1
        fi
    fi
    rm -rf "$tmp"
    if ((ort_ok)); then
        done_steps+=("fetched onnxruntime ${ORT_VERSION}")
    else
        say "WARNING: could not fetch ONNX Runtime ${ORT_VERSION}; ${ORT_LIB} is missing."
        say "WARNING: features that use ONNX Runtime will not work until it is there; rerun this script when the Python package index is reachable."
        done_steps+=("onnxruntime MISSING (download failed)")
    fi
fi

# --- YOLOX-Nano person detector for camera mode (models/yolox-nano/, git-ignored) ------------------
# The model comes from another project and is never committed: taken from ../shared when it is
# there (development and CI); README says where else to get it. Checked by its sha256.
YOLOX_MODEL=models/yolox-nano/yolox_nano.onnx
YOLOX_SHA256=695e750a5d5754bb5a8d5325643b59282191a7e7a564e435a415fd3c578eab14
yolox_ok() { [[ -f $1 ]] && [[ $(sha256sum "$1" | cut -d' ' -f1) == "$YOLOX_SHA256" ]]; }
if yolox_ok "$YOLOX_MODEL"; then
    done_steps+=("yolox-nano present")
elif yolox_ok "../shared/$YOLOX_MODEL"; then
    mkdir -p "$(dirname "$YOLOX_MODEL")"
    cp "../shared/$YOLOX_MODEL" "$YOLOX_MODEL.part" && mv "$YOLOX_MODEL.part" "$YOLOX_MODEL"
    for f in ../shared/models/yolox-nano/*.txt; do [[ -f $f ]] && cp "$f" "$(dirname "$YOLOX_MODEL")/"; done
    done_steps+=("yolox-nano copied")
else
    say "WARNING: ${YOLOX_MODEL} is missing (or its sha256 is not ${YOLOX_SHA256:0:8}…): cameras run without person detection; README says where to get it."
    done_steps+=("yolox-nano MISSING (person detection off)")
fi

# --- Demo media for `offsite demo`'s cameras (demo-media/, git-ignored) -----------------------------
# vtest.avi (pedestrians) ships in Debian's opencv-doc package: download the .deb (no install) and
# extract that one file. The shared indoor clip is copied when ../shared is there. The demo runs
# without cameras, and says so, when neither clip is present.
DEMO_MEDIA=demo-media
VTEST=$DEMO_MEDIA/vtest.avi
VTEST_IN_DEB=./usr/share/doc/opencv-doc/examples/data/vtest.avi
if [[ -s $VTEST ]]; then
    done_steps+=("vtest.avi present")
else
    say "fetching vtest.avi from Debian's opencv-doc package"
    tmp=$(mktemp -d)
    # apt-get download needs package lists; a fresh machine may have none yet.
    if ! (cd "$tmp" && apt-get download -q opencv-doc >&2) && [[ ${#missing[@]} -eq 0 ]]; then
        if [[ $(id -u) -eq 0 ]]; then
            env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || true
        elif command -v sudo >/dev/null 2>&1; then
            sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || true
        fi
        (cd "$tmp" && apt-get download -q opencv-doc >&2) || true
    fi
    deb=$(find "$tmp" -maxdepth 1 -name 'opencv-doc_*.deb' | head -n1)
    mkdir -p "$DEMO_MEDIA"
    if [[ -n $deb ]] && dpkg-deb --fsys-tarfile "$deb" | tar -xO "$VTEST_IN_DEB" >"$VTEST.part" && [[ -s $VTEST.part ]]; then
        mv "$VTEST.part" "$VTEST"
        done_steps+=("vtest.avi extracted")
    else
        rm -f "$VTEST.part"
        say "WARNING: could not get vtest.avi from opencv-doc; the demo's pedestrian camera is off."
        done_steps+=("vtest.avi MISSING")
    fi
    rm -rf "$tmp"
fi
SHARED_CLIP=../shared/data/video/one-by-one-person-detection.mp4
if [[ -s $DEMO_MEDIA/${SHARED_CLIP##*/} ]]; then
    done_steps+=("indoor clip present")
elif [[ -f $SHARED_CLIP ]]; then
    mkdir -p "$DEMO_MEDIA"
    cp "$SHARED_CLIP" "$DEMO_MEDIA/${SHARED_CLIP##*/}.part" && chmod u+w "$DEMO_MEDIA/${SHARED_CLIP##*/}.part" && mv "$DEMO_MEDIA/${SHARED_CLIP##*/}.part" "$DEMO_MEDIA/${SHARED_CLIP##*/}"
    cp ../shared/data/video/*LICENSE* "$DEMO_MEDIA/" 2>/dev/null || true
    done_steps+=("indoor clip copied")
else
    done_steps+=("indoor clip absent (no ../shared; the demo's hall window camera is off)")
fi

# --- Python venvs, each from its pinned requirements (remade when the pins change) -----------------
# python_venv LABEL DIR REQUIREMENTS PROGRAM WHO-NEEDS-IT
python_venv() {
    local label=$1 venv=$2 req=$3 prog=$4 needed_by=$5
    if [[ -x $venv/bin/$prog ]] && cmp -s "$req" "$venv/requirements.txt"; then
        done_steps+=("$label venv present")
    elif command -v python3 >/dev/null 2>&1 && python3 -m venv --help >/dev/null 2>&1; then
        say "creating ${venv} ($(grep -v '^#' "$req" | tr '\n' ' '))"
        if python3 -m venv "$venv" &&
            "$venv/bin/pip" install -q --disable-pip-version-check -r "$req" >&2; then
            cp "$req" "$venv/requirements.txt"
            done_steps+=("$label venv made")
        else
            say "WARNING: could not make ${venv}; ${needed_by} will fail until it exists."
            done_steps+=("$label venv MISSING (pip failed)")
        fi
    else
        say "WARNING: python3 with venv not found; ${needed_by} needs it (apt-get install python3-venv)."
        done_steps+=("$label venv MISSING (no python3 venv)")
    fi
}
# The pinned Python onnxruntime: the vision tests compare the Rust detector's boxes with it.
python_venv "vision reference" vision/reference/.venv vision/reference/requirements.txt python "the vision reference test"
# The pinned kubernetes-validate, which ships the Kubernetes schemas (scripts/validate-deploy.sh).
python_venv "deploy check" deploy/.venv deploy/requirements.txt python "scripts/validate-deploy.sh"
# moto_server, the S3-compatible object store of the file-store tests (store/src/moto.rs starts it).
python_venv "moto" tests/moto/.venv tests/moto/requirements.txt moto_server "the S3 file-store tests"

# --- Node.js for the web UI (portal/web; `make web`) ----------------------------------------------
# Not installed here: Debian 12's nodejs (18) is too old for Vite 7, which needs Node 20.19 or newer.
# Without it `make web` (and so `make build` and `make test`, whose browser tests drive the UI) fails.
node_ok() {
    command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 &&
        node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'
}
if node_ok; then
    done_steps+=("node $(node --version) present")
else
    say "WARNING: Node.js 20.19+ with npm not found; install it (e.g. from nodejs.org) to build the web UI and run its tests (make web, make test)."
    done_steps+=("node MISSING (web UI cannot be built)")
fi

summary=$(IFS=';'; printf '%s' "${done_steps[*]}")
printf 'setup: %s\n' "${summary//;/; }"
