"""The subset of kustomize that docker/k8s uses, in Python: `resources`
(files and folders with a kustomization.yaml), `namespace`, `labels`
(without selectors), `images` and `patches` holding JSON patches (RFC 6902,
in YAML) with a kind/name target. Anything else in a kustomization.yaml is
an error, so the manifests cannot drift into what this does not render.
`validate.py` compares its output with real kustomize (`kubectl kustomize`)
wherever kubectl is installed."""

import copy
import os

import yaml

KNOWN = {"apiVersion", "kind", "resources", "namespace", "labels", "images", "patches"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume",
                  "StorageClass", "CustomResourceDefinition", "APIService"}


def build(folder):
    """The objects of the kustomization in `folder`, as dicts."""
    with open(os.path.join(folder, "kustomization.yaml")) as f:
        k = yaml.safe_load(f)
    unknown = set(k) - KNOWN
    if unknown:
        raise ValueError(f"{folder}: kustomization fields not supported here: {sorted(unknown)}")
    objects = []
    for res in k.get("resources", []):
        path = os.path.join(folder, res)
        if os.path.isdir(path):
            objects += build(path)
        else:
            with open(path) as f:
                objects += [d for d in yaml.safe_load_all(f) if d]
    for label in k.get("labels", []):
        if label.get("includeSelectors") or label.get("includeTemplates"):
            raise ValueError(f"{folder}: labels only on metadata here")
        for obj in objects:
            obj.setdefault("metadata", {}).setdefault("labels", {}).update(label["pairs"])
    if "namespace" in k:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = k["namespace"]
    for image in k.get("images", []):
        for obj in objects:
            for c in containers(obj):
                set_image(c, image)
    for patch in k.get("patches", []):
        with open(os.path.join(folder, patch["path"])) as f:
            ops = yaml.safe_load(f)
        target = patch["target"]
        hits = [o for o in objects
                if o["kind"] == target["kind"] and o["metadata"]["name"] == target["name"]]
        if not hits:
            raise ValueError(f"{folder}: patch {patch['path']} matches nothing")
        for obj in hits:
            for op in ops:
                apply_op(obj, op)
    return objects


def containers(obj):
    spec = obj.get("spec", {}).get("template", {}).get("spec", {})
    return spec.get("containers", []) + spec.get("initContainers", [])


def set_image(container, image):
    name, _, _ = container["image"].partition(":")
    if name != image["name"]:
        return
    name = image.get("newName", name)
    tag = image.get("newTag")
    container["image"] = f"{name}:{tag}" if tag else name


def pointer(path):
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def apply_op(obj, op):
    *parents, last = pointer(op["path"])
    node = obj
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    kind = op["op"]
    if kind in ("add", "replace"):
        value = copy.deepcopy(op["value"])
        if isinstance(node, list):
            if last == "-":
                node.append(value)
            elif kind == "add":
                node.insert(int(last), value)
            else:
                node[int(last)] = value
        else:
            if kind == "replace" and last not in node:
                raise KeyError(f"replace of a missing {op['path']}")
            node[last] = value
    elif kind == "remove":
        if isinstance(node, list):
            del node[int(last)]
        else:
            del node[last]
    else:
        raise ValueError(f"JSON patch op {kind!r} not supported here")
