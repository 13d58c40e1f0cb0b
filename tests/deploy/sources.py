"""The deploy files the tests read, loaded one way, so that the manifest and Dockerfile tests
compare the same values (the image name, the paths, the uid) instead of copies of them."""
from __future__ import annotations

import functools
import os
import re
from typing import Any, Dict, Iterator, List, Tuple

import yaml
from dockerfile_parse import DockerfileParser

from configs import REPO_ROOT

KUBE = os.path.join(REPO_ROOT, "deploy", "kubernetes")
DOCKERFILE = os.path.join(REPO_ROOT, "deploy", "Dockerfile")
VALUES = "airflow-values.yaml"
CLUSTER_CONFIG = os.path.join(KUBE, "config", "cluster.yaml")


def yaml_file(path: str) -> Any:
    with open(path) as fh:
        return yaml.safe_load(fh)


def manifest_files() -> List[str]:
    """Every Kubernetes manifest: the YAML files of deploy/kubernetes/ but the Helm values."""
    return sorted(f for f in os.listdir(KUBE) if f.endswith(".yaml") and f != VALUES)


@functools.lru_cache(maxsize=None)
def documents(name: str) -> List[Dict[str, Any]]:
    """Parsed once per run: callers that change a document change a deep copy of it."""
    with open(os.path.join(KUBE, name)) as fh:
        return [d for d in yaml.safe_load_all(fh) if d]


def all_documents() -> List[Tuple[str, Dict[str, Any]]]:
    return [(name, doc) for name in manifest_files() for doc in documents(name)]


def find(kind: str, name: str) -> Dict[str, Any]:
    hits = [d for _, d in all_documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(hits) == 1, f"expected one {kind} {name}, found {len(hits)}"
    return hits[0]


def pod_templates(doc: Dict[str, Any]) -> Iterator[Dict[str, Any]]:
    """The pod templates of a workload (a TFJob has one per replica type)."""
    if doc["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
        yield doc["spec"]["template"]
    elif doc["kind"] == "TFJob":
        for spec in doc["spec"]["tfReplicaSpecs"].values():
            yield spec["template"]


def values() -> Dict[str, Any]:
    return yaml_file(os.path.join(KUBE, VALUES))


def split_image(image: str) -> Tuple[str, str]:
    """(repository, tag); the tag is '' when the reference has none."""
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:  # no colon, or the colon of a registry port
        return image, ""
    return name, tag


@functools.lru_cache(maxsize=None)
def dockerfile() -> DockerfileParser:
    return DockerfileParser(DOCKERFILE)


def dockerfile_stages() -> List[List[Dict[str, Any]]]:
    """The instructions of each build stage, FROM first."""
    stages: List[List[Dict[str, Any]]] = []
    for ins in dockerfile().structure:
        if ins["instruction"] == "FROM":
            stages.append([])
        if stages and ins["instruction"] != "COMMENT":
            stages[-1].append(ins)
    return stages


def documented_images() -> List[str]:
    """The image references the Dockerfile's build commands tag (`docker build ... -t IMAGE`)."""
    return re.findall(r"-t\s+(\S+)", "\n".join(i["value"] for i in dockerfile().structure
                                                if i["instruction"] == "COMMENT"))


def runtime_env() -> Dict[str, str]:
    """ENV of the final stage, as the image's processes see it."""
    return dict(dockerfile().envs)


def runtime_user() -> str:
    """The user the image's processes run as: the final stage's last USER."""
    return [i["value"] for i in dockerfile_stages()[-1] if i["instruction"] == "USER"][-1]


def runtime_workdir() -> str:
    workdirs = [i["value"] for i in dockerfile_stages()[-1] if i["instruction"] == "WORKDIR"]
    return workdirs[-1]


def project_version() -> str:
    with open(os.path.join(REPO_ROOT, "pyproject.toml")) as fh:
        return re.search(r'^version\s*=\s*"([^"]+)"', fh.read(), re.M).group(1)


def locked_version(package: str) -> str:
    with open(os.path.join(REPO_ROOT, "requirements.lock")) as fh:
        return re.search(rf"^{re.escape(package)}==(\S+)", fh.read(), re.M).group(1)
