"""Kubernetes checks of validate.py: renders each kustomization in
docker/k8s (kustomize.py; also real kustomize through `kubectl kustomize`
where kubectl is installed, and the two must agree), validates every object
against the strict Kubernetes JSON schemas bundled in PyPI's
`kubernetes-validate`, and reads what the manifests ask of ragd."""

import os
import re
import shutil
import subprocess
import sys

import kubernetes_validate
import yaml

import kustomize

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
K8S = os.path.join(ROOT, "docker", "k8s")
KUBERNETES = ["1.30.0", "1.37.0"]


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
        "pod_env": pod_env(c, by_kind),
        "mounts": mounts(pod, c, by_kind),
    }


def secret_data(by_kind, name):
    (secret,) = [s for s in by_kind["Secret"] if s["metadata"]["name"] == name]
    return secret["stringData"]


def pod_env(c, by_kind):
    """The container's environment as the kubelet would set it (values
    from ConfigMaps, Secrets and the container's CPU limit)."""
    maps = {m["metadata"]["name"]: m["data"] for m in by_kind["ConfigMap"]}
    env = {}
    for source in c.get("envFrom", []):
        env.update(maps[source["configMapRef"]["name"]])
    for e in c.get("env", []):
        ref = e.get("valueFrom", {})
        if "value" in e:
            env[e["name"]] = e["value"]
        elif "secretKeyRef" in ref:
            env[e["name"]] = secret_data(by_kind, ref["secretKeyRef"]["name"])[ref["secretKeyRef"]["key"]]
        elif "configMapKeyRef" in ref:
            env[e["name"]] = maps[ref["configMapKeyRef"]["name"]][ref["configMapKeyRef"]["key"]]
        elif "resourceFieldRef" in ref:
            kind, _, resource = ref["resourceFieldRef"]["resource"].partition(".")
            value = c.get("resources", {}).get(kind, {}).get(resource)
            if value is not None:
                env[e["name"]] = str(value)
    return env


def mounts(pod, c, by_kind):
    """The container's volume mounts: kind (secret, pvc, emptyDir) and,
    for a Secret, the files it holds."""
    volumes = {v["name"]: v for v in pod["volumes"]}
    out = []
    for m in c["volumeMounts"]:
        v = volumes[m["name"]]
        mount = {"path": m["mountPath"], "read_only": m.get("readOnly", False)}
        if "secret" in v:
            data = secret_data(by_kind, v["secret"]["secretName"])
            items = v["secret"].get("items") or [{"key": k, "path": k} for k in data]
            mount.update(kind="secret", files={i["path"]: data[i["key"]] for i in items})
        elif "persistentVolumeClaim" in v:
            mount.update(kind="pvc", claim=v["persistentVolumeClaim"]["claimName"])
        elif "emptyDir" in v:
            mount.update(kind="emptyDir")
        else:
            raise ValueError(f"volume {m['name']}: a kind this check does not know")
        out.append(mount)
    return out


def adapter_metrics(objects):
    names = []
    for obj in objects:
        rules = yaml.safe_load(obj["data"]["config.yaml"])["rules"]
        for rule in rules:
            names.append(re.match(r"(\w+)", rule["seriesQuery"]).group(1))
    return names
