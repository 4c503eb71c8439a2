"""Compose checks of validate.py: docker/compose.yaml against the
compose-spec JSON schema (compose/config/compose_spec.json of PyPI's
docker-compose 1.29.2, installed without its dependencies) with
`jsonschema`; the files it mounts exist; nginx.conf and prometheus.yml name
its replicas, and `nginx -t` and `promtool check config` accept them."""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import jsonschema
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
COMPOSE = os.path.join(ROOT, "docker", "compose.yaml")


def compose_schema():
    import compose  # docker-compose 1.29.2, for its bundled schema only

    path = os.path.join(os.path.dirname(compose.__file__), "config", "compose_spec.json")
    with open(path) as f:
        return json.load(f)


def check_compose():
    with open(COMPOSE) as f:
        doc = yaml.safe_load(f)
    jsonschema.validate(doc, compose_schema())
    print("ok   docker/compose.yaml: valid against the compose-spec JSON schema")
    here = os.path.dirname(COMPOSE)
    for name, svc in doc["services"].items():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0] if isinstance(vol, str) else vol.get("source", "")
            if src.startswith("."):
                assert os.path.exists(os.path.join(here, src)), f"{name} mounts missing {src}"
        build = svc.get("build")
        if build:
            ctx = os.path.join(here, build["context"])
            assert os.path.exists(os.path.join(ctx, build["dockerfile"])), f"{name}: no Dockerfile"
    replicas = sorted(n for n, s in doc["services"].items() if s.get("image", "").startswith("ragd"))
    with open(os.path.join(here, "nginx", "nginx.conf")) as f:
        upstreams = sorted(re.findall(r"^\s*server\s+([\w-]+):8080", f.read(), re.M))
    assert upstreams == replicas, f"nginx.conf upstreams {upstreams} != ragd services {replicas}"
    with open(os.path.join(here, "compose", "prometheus.yml")) as f:
        prom = yaml.safe_load(f)
    targets = sorted(t.split(":")[0] for job in prom["scrape_configs"]
                     for sc in job["static_configs"] for t in sc["targets"])
    assert targets == replicas, f"prometheus targets {targets} != ragd services {replicas}"
    print(f"ok   docker/compose.yaml: files it mounts exist; nginx and Prometheus "
          f"name its {len(replicas)} replicas")
    check_nginx_conf(os.path.join(here, "nginx"), replicas)
    check_prometheus_conf(here)
    env = set()
    for name in replicas:
        env |= {k for k in doc["services"][name].get("environment", {}) if k.startswith("RAGD_")}
    return {"replicas": replicas, "env": sorted(env)}


def check_nginx_conf(folder, replicas):
    """`nginx -t` on the compose nginx.conf, its replicas' names mapped to
    loopback (nginx resolves them), where nginx is installed."""
    if not shutil.which("nginx"):
        sys.exit("nginx is not on PATH: `apt-get install nginx` (this check does not skip)")
    with open(os.path.join(folder, "nginx.conf")) as f:
        conf = f.read()
    for name in replicas:
        conf = conf.replace(f"{name}:8080", "127.0.0.1:8080")
    conf = conf.replace("/etc/nginx/ragd-proxy.conf", os.path.join(folder, "ragd-proxy.conf"))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "nginx.conf")
        with open(path, "w") as f:
            f.write(conf)
        out = subprocess.run(["nginx", "-t", "-p", tmp, "-c", path, "-e", os.path.join(tmp, "error.log")],
                             capture_output=True, text=True)
        assert out.returncode == 0, f"nginx -t on docker/nginx/nginx.conf:\n{out.stderr}"
    print("ok   docker/nginx/nginx.conf: `nginx -t` accepts it")


def check_prometheus_conf(docker):
    """`promtool check config` on the compose prometheus.yml beside the
    monitoring kit's rules, laid out as compose mounts them."""
    if not shutil.which("promtool"):
        sys.exit("promtool is not on PATH: `apt-get install prometheus` (this check does not skip)")
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(os.path.join(docker, "compose", "prometheus.yml"), tmp)
        shutil.copytree(os.path.join(docker, "monitoring", "rules"), os.path.join(tmp, "rules"))
        out = subprocess.run(["promtool", "check", "config", os.path.join(tmp, "prometheus.yml")],
                             capture_output=True, text=True)
        assert out.returncode == 0, f"promtool on docker/compose/prometheus.yml:\n{out.stdout}{out.stderr}"
    print("ok   docker/compose/prometheus.yml: `promtool check config` accepts it with the kit's rules")
