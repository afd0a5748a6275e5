#!/usr/bin/env python3
"""What a schema validator cannot see in deploy/k8s: that the pieces agree with each other and
with drawbridge's own settings.

    scripts/check_k8s.py DRAWBRIDGE_BINARY

Checks: the pod's lock-down (non-root numeric user, read-only root, no privilege escalation,
seccomp RuntimeDefault, all capabilities dropped); the grace period covers preStop + drain; probes
have time-outs; max_connections fits the memory limit at the measured cost of a connection; the
HPA's connection target is below max_connections; Services, the Ingress and the ServiceMonitor
point at ports and labels that exist; the NetworkPolicy admits the ports the pods serve; and the
ConfigMap's drawbridge.toml passes `drawbridge check-config`.
"""

import os
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import yaml

K8S = Path(__file__).resolve().parent.parent / "deploy" / "k8s"
# docs/BENCHMARKS.md: 14.8 KiB of RSS per idle joined connection; rounded up.
KIB_PER_CONNECTION = 15
# The process before any connection (15.4 MiB measured), rounded up.
BASE_MIB = 32
# Share of the memory limit idle connections may take; the rest is for busy rooms.
IDLE_SHARE = 0.6
# The server's own grace past drain_secs (src/app.rs SHUTDOWN_GRACE).
SHUTDOWN_GRACE_SECS = 3

errors = []


def check(ok, message):
    if not ok:
        errors.append(message)


def quantity_mib(q):
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "Ti": 1024 * 1024}
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti)", str(q))
    if not m:
        raise ValueError(f"unsupported memory quantity {q!r}")
    return int(m.group(1)) * units[m.group(2)]


def load():
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append(doc)
    return docs


def one(docs, kind, name):
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    check(len(found) == 1, f"expected one {kind}/{name}, found {len(found)}")
    return found[0] if found else {}


def matches(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def lockdown(kind, pod):
    spec = pod["spec"]
    sc = spec.get("securityContext", {})
    check(sc.get("runAsNonRoot") is True, f"{kind}: runAsNonRoot")
    check(isinstance(sc.get("runAsUser"), int) and sc["runAsUser"] > 0, f"{kind}: numeric non-root runAsUser")
    check(sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{kind}: seccomp RuntimeDefault")
    check(spec.get("automountServiceAccountToken") is False, f"{kind}: no service account token")
    for c in spec["containers"]:
        csc = c.get("securityContext", {})
        check(csc.get("allowPrivilegeEscalation") is False, f"{kind}/{c['name']}: allowPrivilegeEscalation false")
        check(csc.get("readOnlyRootFilesystem") is True, f"{kind}/{c['name']}: readOnlyRootFilesystem")
        check(csc.get("capabilities", {}).get("drop") == ["ALL"], f"{kind}/{c['name']}: drop ALL capabilities")
        limits = c.get("resources", {}).get("limits", {})
        check("memory" in limits and "cpu" in limits, f"{kind}/{c['name']}: cpu and memory limits")
        for probe in ("readinessProbe", "livenessProbe"):
            check(probe in c, f"{kind}/{c['name']}: {probe}")
            if probe in c:
                check("timeoutSeconds" in c[probe], f"{kind}/{c['name']}: {probe} timeoutSeconds")


def main(binary):
    docs = load()
    deployment = one(docs, "Deployment", "drawbridge")
    pod = deployment["spec"]["template"]
    lockdown("Deployment/drawbridge", pod)
    lockdown("StatefulSet/redis", one(docs, "StatefulSet", "redis")["spec"]["template"])
    container = next(c for c in pod["spec"]["containers"] if c["name"] == "drawbridge")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = {e["name"]: e for e in container.get("env", [])}
    check(
        env.get("DRAWBRIDGE_INSTANCE_ID", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        == "metadata.name",
        "the instance id prefix is the pod name",
    )

    config_map = one(docs, "ConfigMap", "drawbridge")
    toml_text = config_map["data"]["drawbridge.toml"]
    config = tomllib.loads(toml_text)
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(toml_text)
    try:
        run_env = {
            "PATH": os.environ.get("PATH", ""),
            "DRAWBRIDGE_REDIS_URL": "redis://:x@redis:6379",
            "DRAWBRIDGE_JWT_SECRET": "0123456789abcdef0123456789abcdef",
        }
        result = subprocess.run(
            [binary, "check-config", "--config", f.name], env=run_env, capture_output=True, text=True
        )
        check(result.returncode == 0, f"configmap.yaml's drawbridge.toml fails check-config: {result.stderr.strip()}")
    finally:
        os.unlink(f.name)
    listen_port = int(config["listen"].rsplit(":", 1)[1])
    admin_port = int(config["admin_listen"].rsplit(":", 1)[1])
    check(ports.get("http") == listen_port, "container port http matches listen")
    check(ports.get("admin") == admin_port, "container port admin matches admin_listen")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        check(container.get(probe, {}).get("httpGet", {}).get("port") == "http", f"{probe} on the http port")

    memory_mib = quantity_mib(container["resources"]["limits"]["memory"])
    check(
        quantity_mib(container["resources"]["requests"]["memory"]) == memory_mib,
        "memory request equals the limit the connection budget is sized to",
    )
    max_connections = config["max_connections"]
    idle_mib = BASE_MIB + max_connections * KIB_PER_CONNECTION / 1024
    check(
        idle_mib <= IDLE_SHARE * memory_mib,
        f"max_connections {max_connections} needs ~{idle_mib:.0f} MiB idle: more than "
        f"{IDLE_SHARE:.0%} of the {memory_mib:.0f} MiB limit",
    )

    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
    needed = pre_stop + config.get("drain_secs", 10) + SHUTDOWN_GRACE_SECS
    check(grace > needed, f"terminationGracePeriodSeconds {grace} must exceed preStop + drain + grace = {needed}")

    hpa = one(docs, "HorizontalPodAutoscaler", "drawbridge")
    targets = [
        m["pods"]["target"]["averageValue"]
        for m in hpa["spec"]["metrics"]
        if m["type"] == "Pods" and m["pods"]["metric"]["name"] == "drawbridge_connections"
    ]
    check(len(targets) == 1, "the HPA scales on drawbridge_connections")
    for t in targets:
        check(int(t) < max_connections, f"HPA connection target {t} must be below max_connections")
    check(any(m["type"] == "Resource" for m in hpa["spec"]["metrics"]), "the HPA scales on CPU")

    pod_labels = pod["metadata"]["labels"]
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    for name in ("drawbridge", "drawbridge-admin"):
        svc = services.get(name, {})
        check(matches(svc.get("spec", {}).get("selector", {}), pod_labels), f"Service/{name} selects the pods")
        for p in svc.get("spec", {}).get("ports", []):
            check(p["targetPort"] in ports, f"Service/{name} targets a port the pod has: {p['targetPort']}")
    check(
        all(p["targetPort"] != "admin" for p in services["drawbridge"]["spec"]["ports"]),
        "the public Service does not expose the admin port",
    )

    ingress = one(docs, "Ingress", "drawbridge")
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            check(backend["name"] == "drawbridge", "the Ingress routes to the public Service")
            names = [p["name"] for p in services.get(backend["name"], {}).get("spec", {}).get("ports", [])]
            check(backend["port"].get("name") in names, "the Ingress names a port of the Service")
    annotations = ingress["metadata"].get("annotations", {})
    check(
        int(annotations.get("nginx.ingress.kubernetes.io/proxy-read-timeout", "60")) >= 600,
        "the Ingress keeps idle WebSockets open (proxy-read-timeout)",
    )

    monitor = one(docs, "ServiceMonitor", "drawbridge")
    selected = [
        s for s in services.values() if matches(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])
    ]
    check([s["metadata"]["name"] for s in selected] == ["drawbridge-admin"], "the ServiceMonitor selects only the admin Service")
    for ep in monitor["spec"]["endpoints"]:
        check(ep["port"] == "admin" and ep.get("path") == "/metrics", "the ServiceMonitor scrapes admin /metrics")

    policy = one(docs, "NetworkPolicy", "drawbridge")
    check(matches(policy["spec"]["podSelector"]["matchLabels"], pod_labels), "the NetworkPolicy selects the pods")
    allowed = {p["port"] for rule in policy["spec"].get("ingress", []) for p in rule.get("ports", [])}
    check({listen_port, admin_port} <= allowed, "the NetworkPolicy admits the http and admin ports")

    pdb = one(docs, "PodDisruptionBudget", "drawbridge")
    check(matches(pdb["spec"]["selector"]["matchLabels"], pod_labels), "the PDB selects the pods")

    for d in docs:
        check("app.kubernetes.io/name" in d["metadata"].get("labels", {}), f"{d['kind']}/{d['metadata']['name']}: labelled")

    if errors:
        for e in errors:
            print(f"check_k8s: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"check_k8s: {len(docs)} resources agree (max_connections {max_connections}, ~{idle_mib:.0f} MiB idle of {memory_mib:.0f} MiB)")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
