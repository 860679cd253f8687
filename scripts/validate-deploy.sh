#!/usr/bin/env bash
# Checks deploy/ offline: the Kubernetes manifests (every Kustomize overlay rendered and validated
# against the schemas kubernetes-validate ships, plus probe/port/reference checks) and the systemd
# units (structure, and `systemd-analyze verify` where it exists). Then proves the check can fail:
# deliberately broken copies of deploy/ in a temporary directory must each be refused.
#
#   bash scripts/validate-deploy.sh            # what `make test` runs
#   bash scripts/validate-deploy.sh --no-tools # as on a machine without kubectl/systemd-analyze
#
# Needs the venv scripts/setup.sh makes (deploy/.venv, kubernetes-validate pinned there).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PY=deploy/.venv/bin/python
if [[ ! -x $PY ]] || ! "$PY" -c 'import kubernetes_validate' 2>/dev/null; then
    echo "validate-deploy: $PY with kubernetes-validate is missing: run bash scripts/setup.sh" >&2
    exit 2
fi

extra=("$@")
"$PY" scripts/validate_deploy.py deploy "${extra[@]}"

# --- Negative tests: each broken copy must be refused, for the reason it was broken for. ---------
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0

# expect_refused NAME EXPECTED-TEXT [validator args...]; the copy is "$tmp/NAME/deploy".
expect_refused() {
    local name=$1 expected=$2
    shift 2
    local out status=0
    out=$("$PY" scripts/validate_deploy.py "$tmp/$name/deploy" "$@" 2>/dev/null) || status=$?
    if [[ $status -eq 0 ]]; then
        echo "validate-deploy: NEGATIVE TEST FAILED: broken copy '$name' was accepted" >&2
        failures=$((failures + 1))
    elif ! grep -qF -- "$expected" <<<"$out"; then
        echo "validate-deploy: NEGATIVE TEST FAILED: '$name' was refused, but not for '$expected':" >&2
        echo "$out" >&2
        failures=$((failures + 1))
    else
        echo "validate-deploy: negative test '$name' refused as expected ($*)" >&2
    fi
}

broken_copy() {
    mkdir -p "$tmp/$1/deploy"
    cp -r deploy/k8s deploy/systemd "$tmp/$1/deploy/"
}

# 1. A misspelt field: only the strict schema sees it.
broken_copy schema
sed -i 's/readOnlyRootFilesystem: true/readOnlyRootFilesystm: true/' "$tmp/schema/deploy/k8s/base/portal.yaml"
expect_refused schema "readOnlyRootFilesystm" --no-tools
# 2. The configuration moves the ops port: the probes on 9100 now point at nothing.
broken_copy probe-port
sed -i 's/listen = "0.0.0.0:9100"/listen = "0.0.0.0:9200"/' "$tmp/probe-port/deploy/k8s/base/configmap.yaml"
expect_refused probe-port "readinessProbe port 'ops' is not a port \`offsite ingest\` opens" --no-tools
# 3. A Service whose target port no pod declares.
broken_copy service-port
sed -i 's/targetPort: mqtt-internal/targetPort: mqtt-internl/' "$tmp/service-port/deploy/k8s/base/broker.yaml"
expect_refused service-port "targetPort 'mqtt-internl'" --no-tools
# 4. An overlay patch for a resource that does not exist.
broken_copy patch-target
sed -i 's/name: offsite-analytics$/name: offsite-analytix/' "$tmp/patch-target/deploy/k8s/overlays/dev/one-replica.yaml"
expect_refused patch-target "matches no resource" --no-tools
# 5. A unit without its sandbox.
broken_copy unit-sandbox
sed -i '/^NoNewPrivileges=yes$/d' "$tmp/unit-sandbox/deploy/systemd/offsite-broker.service"
expect_refused unit-sandbox "needs NoNewPrivileges=yes" --no-tools
# 6. The same copies through the tools, where this machine has them.
if command -v systemd-analyze >/dev/null 2>&1 && [[ " ${extra[*]} " != *" --no-tools "* ]]; then
    broken_copy unit-key
    sed -i 's/^RestartSec=2s$/RestartSecs=2s/' "$tmp/unit-key/deploy/systemd/offsite-ingest@.service"
    expect_refused unit-key "Unknown key"
fi
if command -v kubectl >/dev/null 2>&1 && [[ " ${extra[*]} " != *" --no-tools "* ]]; then
    expect_refused schema "readOnlyRootFilesystm"
fi

if ((failures)); then
    echo "validate-deploy: $failures negative test(s) failed: the check does not catch what it should" >&2
    exit 1
fi
echo "validate-deploy: ok (deploy/ valid; every broken copy refused)"
