"""Checks ragd's deployment files without a cluster or a Docker engine.

- Kubernetes: renders each kustomization (kustomize.py; also real kustomize
  through `kubectl kustomize` where kubectl is installed, and the two must
  agree), then validates every object against the Kubernetes JSON schemas
  bundled in PyPI's `kubernetes-validate`, strict (unknown fields fail), for
  the oldest and newest Kubernetes versions in KUBERNETES.
- Dockerfiles: parses docker/Dockerfile and docker/Dockerfile.cuda with
  the official Dockerfile parser (PyPI's `dockerfile`, Go bindings) and
  checks their stages, the baked-in models folder and the entry point.
- Compose: validates docker/compose.yaml against the compose-spec JSON
  schema (compose/config/compose_spec.json of PyPI's docker-compose 1.29.2,
  installed without its dependencies) with `jsonschema`, and checks that
  the files it mounts exist and that nginx.conf and prometheus.yml name its
  replicas.

Prints one line per check, then `DEPLOY-SUMMARY {json}`: what the
manifests and the compose file ask of ragd (probe paths, metric names,
RAGD_* variables, grace periods), which tests/deploy_manifests.rs holds
against a live ragd.
"""

import json
import os
import re
import shutil
import subprocess
import sys

import dockerfile
import jsonschema
import kubernetes_validate
import yaml

import kustomize

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
K8S = os.path.join(ROOT, "docker", "k8s")
KUSTOMIZATIONS = ["overlays/cpu", "overlays/nvidia-gpu", "prometheus-adapter"]
KUBERNETES = ["1.30.0", "1.37.0"]
COMPOSE = os.path.join(ROOT, "docker", "compose.yaml")


def key(obj):
    return (obj["kind"], obj["metadata"]["name"])


def render(folder):
    objects = kustomize.build(os.path.join(K8S, folder))
    if shutil.which("kubectl"):
        out = subprocess.run(["kubectl", "kustomize", os.path.join(K8S, folder)],
                             check=True, capture_output=True, text=True).stdout
        real = {key(d): d for d in yaml.safe_load_all(out) if d}
        mine = {key(d): d for d in objects}
        if real != mine:
            diff = [k for k in set(real) | set(mine) if real.get(k) != mine.get(k)]
            sys.exit(f"{folder}: kustomize.py and `kubectl kustomize` differ on {diff}")
        print(f"ok   {folder}: kustomize.py renders what `kubectl kustomize` renders")
    return objects


def validate_k8s(folder, objects):
    for version in KUBERNETES:
        for obj in objects:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                sys.exit(f"{folder}: {key(obj)} invalid for Kubernetes {version}: "
                         f"{'/'.join(map(str, e.path))}: {e.message}")
    print(f"ok   {folder}: {len(objects)} objects valid for Kubernetes "
          f"{' and '.join(KUBERNETES)} (strict schemas)")


def deployment_facts(objects):
    by_kind = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], []).append(obj)
    (deploy,) = by_kind["Deployment"]
    pod = deploy["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    (flags,) = [m for m in by_kind["ConfigMap"] if m["metadata"]["name"] == "ragd-flags"]
    env = set(flags["data"]) | {e["name"] for e in c.get("env", [])}
    pre_stop = c["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep", pre_stop
    hpa_metrics = [m["pods"]["metric"]["name"] for hpa in by_kind["HorizontalPodAutoscaler"]
                   for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    return {
        "probes": sorted({c[p]["httpGet"]["path"] for p in
                          ("startupProbe", "readinessProbe", "livenessProbe")}),
        "readiness": c["readinessProbe"]["httpGet"]["path"],
        "liveness": c["livenessProbe"]["httpGet"]["path"],
        "port": c["ports"][0]["containerPort"],
        "port_flag": int(flags["data"]["RAGD_PORT"]),
        "termination_grace_seconds": pod["terminationGracePeriodSeconds"],
        "pre_stop_seconds": int(pre_stop[1]),
        "shutdown_grace_seconds": int(flags["data"]["RAGD_SHUTDOWN_GRACE_SECONDS"]),
        "hpa_metrics": hpa_metrics,
        "env": sorted(e for e in env if e.startswith("RAGD_")),
        "gpus": c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu"),
    }


def adapter_metrics(objects):
    names = []
    for obj in objects:
        rules = yaml.safe_load(obj["data"]["config.yaml"])["rules"]
        for rule in rules:
            names.append(re.match(r"(\w+)", rule["seriesQuery"]).group(1))
    return names


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
    env = set()
    for name in replicas:
        env |= {k for k in doc["services"][name].get("environment", {}) if k.startswith("RAGD_")}
    return {"replicas": replicas, "env": sorted(env)}


def check_dockerfile(name, build_flag):
    """Every `COPY --from` names an earlier stage; the binary is built with
    `build_flag`; the last stage serves with the models in /models."""
    cmds = dockerfile.parse_file(os.path.join(ROOT, "docker", name))
    stages, env = [], {}
    for c in cmds:
        if c.cmd == "FROM":
            stages.append(c.value[2] if len(c.value) > 2 else None)
            env = {}
        elif c.cmd == "COPY":
            for flag in c.flags:
                if flag.startswith("--from="):
                    assert flag[7:] in stages[:-1], f"{name}: COPY {flag} of no earlier stage"
        elif c.cmd == "ENV":
            env.update(zip(c.value[::2], c.value[1::2]))
    builds = [c.value[0] for c in cmds if c.cmd == "RUN" and "cargo build" in c.value[0]]
    assert builds and all(build_flag in b for b in builds), f"{name}: {builds}"
    assert env.get("RAGD_MODELS_DIR") == "/models", f"{name}: models not in /models: {env}"
    assert env.get("RAGD_HOST") == "0.0.0.0", f"{name}: binds loopback only"
    (entry,) = [c.value for c in cmds if c.cmd == "ENTRYPOINT"]
    assert list(entry) == ["ragd", "serve"], f"{name}: {entry}"
    print(f"ok   docker/{name}: {len(stages)} stages, models in /models, `ragd serve`")


def main():
    summary = {"overlays": {}}
    check_dockerfile("Dockerfile", "--release")
    check_dockerfile("Dockerfile.cuda", "--features cuda")
    for folder in KUSTOMIZATIONS:
        objects = render(folder)
        validate_k8s(folder, objects)
        if folder.startswith("overlays/"):
            summary["overlays"][folder] = deployment_facts(objects)
        else:
            summary["adapter_metrics"] = adapter_metrics(objects)
    summary["compose"] = check_compose()
    print("DEPLOY-SUMMARY " + json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    main()
