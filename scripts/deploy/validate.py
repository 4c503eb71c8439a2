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
  replicas; `nginx -t` and `promtool check config` accept the nginx and
  Prometheus configs it mounts (both must be installed).

Prints one line per check, then `DEPLOY-SUMMARY {json}`: what the
manifests and the compose file ask of ragd (probe paths, metric names,
RAGD_* variables, grace periods), which tests/deploy_manifests.rs holds
against a live ragd.
"""

import json

import compose_checks
import dockerfile_checks
import k8s_checks

KUSTOMIZATIONS = ["overlays/cpu", "overlays/nvidia-gpu", "prometheus-adapter"]


def main():
    summary = {"overlays": {}}
    dockerfile_checks.check_dockerfile("Dockerfile", "--release")
    dockerfile_checks.check_dockerfile("Dockerfile.cuda", "--features cuda")
    for folder in KUSTOMIZATIONS:
        objects = k8s_checks.render(folder)
        k8s_checks.validate_k8s(folder, objects)
        if folder.startswith("overlays/"):
            summary["overlays"][folder] = k8s_checks.deployment_facts(objects)
        else:
            summary["adapter_metrics"] = k8s_checks.adapter_metrics(objects)
    summary["compose"] = compose_checks.check_compose()
    print("DEPLOY-SUMMARY " + json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    main()
