#!/usr/bin/env python3
"""Consistency of deploy/compose (no container runtime needed):

    scripts/check_compose.py DRAWBRIDGE_BINARY

nginx's upstream lists exactly the drawbridge services; only nginx's fixed address is a trusted
proxy and it is inside the network's subnet; every drawbridge service is locked down, waits for
Redis, has its own instance id prefix, and its environment passes `drawbridge check-config` with
no variable that names no setting; files the compose file mounts exist; and, where nginx is
installed, `nginx -t` accepts nginx.conf.
"""

import ipaddress
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

COMPOSE = Path(__file__).resolve().parent.parent / "deploy" / "compose"
errors = []


def check(ok, message):
    if not ok:
        errors.append(message)


def main(binary):
    compose = yaml.safe_load((COMPOSE / "compose.yaml").read_text())
    services = compose["services"]
    gateways = sorted(name for name in services if name.startswith("drawbridge-"))
    check(len(gateways) == 3, f"three drawbridge services, found {gateways}")
    check({"redis", "nginx"} <= set(services), "redis and nginx services")

    nginx_conf = (COMPOSE / "nginx.conf").read_text()
    upstream = re.search(r"upstream drawbridge \{(.*?)\}", nginx_conf, re.S)
    servers = sorted(re.findall(r"server ([\w.-]+):8080;", upstream.group(1) if upstream else ""))
    check(servers == gateways, f"nginx upstream {servers} lists the drawbridge services {gateways}")
    check("$request " not in nginx_conf and "$request_uri" not in nginx_conf, "nginx never logs query strings")

    if shutil.which("nginx"):
        # Syntax, with the service names (resolved only inside compose's network) on loopback.
        with tempfile.TemporaryDirectory() as prefix:
            conf = Path(prefix) / "nginx.conf"
            conf.write_text(re.sub(r"server drawbridge-\d+:", "server 127.0.0.1:", nginx_conf))
            result = subprocess.run(
                ["nginx", "-t", "-q", "-p", prefix, "-c", str(conf), "-e", "stderr", "-g", f"pid {prefix}/nginx.pid;"],
                capture_output=True,
                text=True,
            )
            check(result.returncode == 0, f"nginx -t: {result.stderr.strip()}")

    nginx_ip = services["nginx"]["networks"]["default"]["ipv4_address"]
    subnet = compose["networks"]["default"]["ipam"]["config"][0]["subnet"]
    check(ipaddress.ip_address(nginx_ip) in ipaddress.ip_network(subnet), "nginx's address is in the subnet")
    for volume in services["nginx"].get("volumes", []):
        source = volume.split(":")[0]
        if source.startswith("./"):
            check((COMPOSE / source).exists(), f"mounted file {source} exists")

    prefixes = set()
    for name in gateways:
        svc = services[name]
        env = {k: str(v) for k, v in svc["environment"].items()}
        prefixes.add(env.get("DRAWBRIDGE_INSTANCE_ID"))
        check(env.get("DRAWBRIDGE_TRUSTED_PROXIES") == nginx_ip, f"{name}: trusts nginx only")
        check(svc.get("read_only") is True, f"{name}: read-only root")
        check(svc.get("cap_drop") == ["ALL"], f"{name}: drops every capability")
        check("no-new-privileges:true" in svc.get("security_opt", []), f"{name}: no-new-privileges")
        check(svc.get("depends_on", {}).get("redis", {}).get("condition") == "service_healthy", f"{name}: waits for Redis")
        # `${VAR:?message}` is compose's: stand in a value.
        env = {k: re.sub(r"\$\{[^}]*\}", "0123456789abcdef0123456789abcdef", v) for k, v in env.items()}
        result = subprocess.run(
            [binary, "check-config"],
            env={"PATH": os.environ.get("PATH", ""), **env},
            capture_output=True,
            text=True,
        )
        check(result.returncode == 0, f"{name}: check-config fails: {result.stderr.strip()}")
        check("names no setting" not in result.stderr, f"{name}: unknown setting: {result.stderr.strip()}")
    check(len(prefixes) == len(gateways), "every instance has its own id prefix")

    if errors:
        for e in errors:
            print(f"check_compose: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"check_compose: nginx -> {', '.join(gateways)} -> redis agree")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
