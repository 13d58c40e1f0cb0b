"""The Kubernetes manifests, checked offline.

Why: nothing here runs on the reference machine, so a manifest that names a port, a path or a
flag the code does not have would only fail on the cluster. Core kinds are validated against the
Kubernetes API schemas that kubernetes-validate bundles (strict: an unknown field fails); what no
schema knows is checked against the code, the config and the other manifests.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
from typing import Any, Dict, List

import kubernetes_validate
import pytest
import yaml

from configs import REPO_ROOT, load_config
from pipeline_components.orchestration import airflow_local
from tests.deploy import sources

K8S_VERSION = "1.37.0"
# Kinds of operators, not of Kubernetes: no schema is bundled for them.
CRD_KINDS = {("kubeflow.org/v1", "TFJob")}
TFJOB_REPLICA_TYPES = {"Chief", "Master", "Worker", "PS", "Evaluator"}
TFJOB_RESTART_POLICIES = {"Always", "OnFailure", "Never", "ExitCode"}
CLUSTER_SCOPED = {"Namespace", "PersistentVolume", "StorageClass", "ClusterRole", "ClusterRoleBinding"}
PG_URL = {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql+psycopg2://airflow@db/airflow"}

DOCS = sources.all_documents()


def _id(item) -> str:
    name, doc = item
    return f"{name}:{doc['kind']}/{doc['metadata']['name']}"


def _containers(template: Dict[str, Any]) -> List[Dict[str, Any]]:
    return template["spec"]["containers"]


def _workloads():
    return [(name, doc) for name, doc in DOCS if list(sources.pod_templates(doc))]


def _beam_args() -> Dict[str, str]:
    path = os.path.join(REPO_ROOT, "deploy", "beam", "flink.yaml")
    args = sources.yaml_file(path)["beam_pipeline_args"]
    return dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)


def _namespace() -> str:
    """The namespace deploy/beam/flink.yaml reaches the job manager in (<service>.<namespace>.svc)."""
    return _beam_args()["flink_master"].split(":")[0].split(".")[1]


@pytest.fixture(scope="module")
def worker_parser() -> argparse.ArgumentParser:
    """trainer.worker's own argument parser, taken from its main() before it trains anything."""
    from trainer import worker

    class Captured(Exception):
        pass

    seen = {}

    def capture(self, args=None, namespace=None):
        seen["parser"] = self
        raise Captured

    original = argparse.ArgumentParser.parse_args
    argparse.ArgumentParser.parse_args = capture
    try:
        with pytest.raises(Captured):
            worker.main([])
    finally:
        argparse.ArgumentParser.parse_args = original
    return seen["parser"]


def _parse_worker_args(parser: argparse.ArgumentParser, args: List[str]) -> argparse.Namespace:
    """Parses like the worker would; argparse's exit on a bad flag becomes a test failure."""
    try:
        return parser.parse_args(args)
    except SystemExit:
        pytest.fail(f"trainer.worker rejects {args}")


def _cluster_config(tmp_path):
    return load_config(sources.CLUSTER_CONFIG, str(tmp_path / "home"))


def _task_pod_mounts() -> Dict[str, Dict[str, Any]]:
    """mountPath -> {claim, readOnly} of the Airflow task pods (the chart's workers.*)."""
    workers = sources.values()["workers"]
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in workers["extraVolumes"]}
    return {m["mountPath"]: {"claim": claims[m["name"]], "readOnly": bool(m.get("readOnly"))}
            for m in workers["extraVolumeMounts"]}


def _defined(kind: str) -> set:
    return {d["metadata"]["name"] for _, d in DOCS if d["kind"] == kind}


# --- schemas ------------------------------------------------------------------------------------

@pytest.mark.parametrize("item", DOCS, ids=_id)
def test_every_document_validates_against_the_bundled_schemas_or_is_a_known_crd(item):
    _, doc = item
    if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
        # When a schema for it appears, this fails: then validate it like the rest.
        with pytest.raises(kubernetes_validate.SchemaNotFoundError):
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    else:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize("item", [i for i in DOCS if (i[1]["apiVersion"], i[1]["kind"]) in CRD_KINDS], ids=_id)
def test_the_pod_templates_of_crds_are_valid_core_pods(item):
    _, doc = item
    for template in sources.pod_templates(doc):
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "t", **template.get("metadata", {})},
               "spec": template["spec"]}
        kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


def test_strict_validation_rejects_a_misspelt_field():
    deployment = copy.deepcopy(sources.find("Deployment", "tf-serving"))
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_every_namespaced_document_is_in_the_namespace_flink_yaml_reaches():
    namespace = _namespace()
    assert namespace in _defined("Namespace")
    for name, doc in DOCS:
        if doc["kind"] not in CLUSTER_SCOPED:
            assert doc["metadata"].get("namespace") == namespace, f"{name}: {doc['kind']} {doc['metadata']['name']}"


# --- wiring between documents ---------------------------------------------------------------------

def test_every_service_selects_pods_and_targets_their_ports():
    for name, svc in [(n, d) for n, d in DOCS if d["kind"] == "Service"]:
        selector = svc["spec"]["selector"]
        pods = [t for n, d in _workloads() if n == name for t in sources.pod_templates(d)
                if selector.items() <= t["metadata"]["labels"].items()]
        assert pods, f"Service {svc['metadata']['name']} selects no pod template in {name}"
        ports = [p for t in pods for c in _containers(t) for p in c.get("ports", [])]
        for port in svc["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            key = "name" if isinstance(target, str) else "containerPort"
            assert any(p.get(key) == target for p in ports), f"{svc['metadata']['name']}: no container port {target}"


def test_deployments_select_their_own_pods():
    for _, doc in DOCS:
        if doc["kind"] == "Deployment":
            labels = doc["spec"]["template"]["metadata"]["labels"]
            assert doc["spec"]["selector"]["matchLabels"].items() <= labels.items(), doc["metadata"]["name"]


def test_claims_service_accounts_and_secrets_named_anywhere_are_defined():
    claims, accounts = _defined("PersistentVolumeClaim"), _defined("ServiceAccount")
    for _, doc in _workloads():
        for template in sources.pod_templates(doc):
            spec = template["spec"]
            for volume in spec.get("volumes", []):
                if "persistentVolumeClaim" in volume:
                    assert volume["persistentVolumeClaim"]["claimName"] in claims
            if "serviceAccountName" in spec:
                assert spec["serviceAccountName"] in accounts
    values = sources.values()
    assert {m["claim"] for m in _task_pod_mounts().values()} <= claims
    assert values["logs"]["persistence"]["existingClaim"] in claims


def test_every_image_is_pinned_to_a_tag():
    for _, doc in _workloads():
        for template in sources.pod_templates(doc):
            for c in _containers(template) + template["spec"].get("initContainers", []):
                _, tag = sources.split_image(c["image"])
                assert tag and tag != "latest", c["image"]


def test_the_project_image_is_the_one_the_dockerfile_builds():
    documented = sources.documented_images()
    repo = {sources.split_image(i)[0] for i in documented}
    assert len(repo) == 1, documented
    repo = repo.pop()
    used = [c["image"] for _, d in _workloads() for t in sources.pod_templates(d) for c in _containers(t)
            if sources.split_image(c["image"])[0] == repo]
    assert used, "no manifest runs the project image"
    assert set(used) <= set(documented)


def test_the_secret_template_holds_every_secret_and_key_and_no_value():
    secrets = {d["metadata"]["name"]: d["stringData"] for _, d in DOCS if d["kind"] == "Secret"}
    values = sources.values()
    needed = {(values["data"]["metadataSecretName"], "connection"),
              (values["fernetKeySecretName"], "fernet-key"),
              (values["webserverSecretKeySecretName"], "webserver-secret-key")}
    needed |= {(s["secretName"], s["secretKey"]) for s in values["secret"]}
    for _, doc in _workloads():
        for template in sources.pod_templates(doc):
            for c in _containers(template):
                for env in c.get("env", []):
                    ref = env.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        needed.add((ref["name"], ref["key"]))
    for name, key in needed:
        assert key in secrets.get(name, {}), f"Secret {name} with key {key} is not in secrets.example.yaml"
    for name, data in secrets.items():
        assert all("REPLACE_ME" in v for v in data.values()), f"{name} holds a real value"


# --- the cluster config and the Helm values ---------------------------------------------------------

def test_the_cluster_config_passes_the_pipelines_own_checks_with_the_charts_database(tmp_path):
    config = _cluster_config(tmp_path)
    assert airflow_local.settings(config, PG_URL)["executor"] == "KubernetesExecutor"
    with pytest.raises(ValueError, match="SQLite"):  # without the chart's Secret, no database
        airflow_local.settings(config, {})
    production = load_config(os.path.join(REPO_ROOT, "configs", "production.yaml"), str(tmp_path))
    assert config.metadata["mysql"]["password_env"] == production.metadata["mysql"]["password_env"]


def test_helm_values_run_the_kubernetes_executor_from_the_project_image(tmp_path):
    values = sources.values()
    config = _cluster_config(tmp_path)
    assert values["executor"] == config.airflow["executor"] == "KubernetesExecutor"
    assert values["airflowVersion"] == sources.locked_version("apache-airflow")
    cpu_image = sources.documented_images()[0]
    repo, tag = sources.split_image(cpu_image)
    assert (values["defaultAirflowRepository"], values["defaultAirflowTag"]) == (repo, tag)
    for key in ("airflow", "podTemplate"):
        assert (values["images"][key]["repository"], values["images"][key]["tag"]) == (repo, tag)
    assert str(values["uid"]) == sources.runtime_user()
    assert values["dags"]["persistence"]["enabled"] is False
    assert values["dags"]["gitSync"]["enabled"] is False
    assert int(values["config"]["core"]["parallelism"]) == int(config.airflow["parallelism"])


def test_helm_values_set_what_the_code_reads_to_the_images_values(tmp_path, monkeypatch):
    """The names come from the code: airflow_env() is what rankpipe gives a local scheduler, and
    load_config() / mlmd_password() read them; the values must be the image's (the compiled
    pipeline in it is keyed to RANKPIPE_HOME and RANKPIPE_CONFIG)."""
    values = sources.values()
    env = {e["name"]: e["value"] for e in values["env"]}
    local = airflow_local.airflow_env(_cluster_config(tmp_path), base=dict(PG_URL))
    needed = sorted(n for n in local if n.startswith("RANKPIPE_")) + ["AIRFLOW__CORE__DAGS_FOLDER"]
    assert {"RANKPIPE_HOME", "RANKPIPE_CONFIG"} <= set(needed)
    image = sources.runtime_env()
    for name in needed:
        assert env.get(name) == image[name], name
    assert values["config"]["core"]["dags_folder"] == image["AIRFLOW__CORE__DAGS_FOLDER"]

    monkeypatch.setenv("RANKPIPE_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("RANKPIPE_CONFIG", sources.CLUSTER_CONFIG)
    config = load_config()
    assert (config.home, config.path) == (str(tmp_path / "h"), sources.CLUSTER_CONFIG)
    password = config.metadata["mysql"]["password_env"]
    assert [s["envName"] for s in values["secret"]] == [password]
    monkeypatch.setenv(password, "from-the-secret")
    assert config.mlmd_password() == "from-the-secret"


def test_task_pods_mount_every_config_path_and_may_write_where_the_pipeline_writes(tmp_path):
    config = _cluster_config(tmp_path)
    mounts = _task_pod_mounts()
    for path, writes in ((config.logs_root, False), (config.pipeline_root, True),
                         (os.path.dirname(config.serving_dir), True), (config.evidence_root, True)):
        assert path in mounts, f"no volume at {path} in the task pods"
        if writes:
            assert not mounts[path]["readOnly"], path


def test_log_groomers_are_off_since_the_image_has_no_clean_logs():
    with open(sources.DOCKERFILE) as fh:
        assert "clean-logs" not in fh.read()
    values = sources.values()
    assert values["scheduler"]["logGroomerSidecar"]["enabled"] is False
    assert values["triggerer"].get("enabled") is False or \
        values["triggerer"]["logGroomerSidecar"]["enabled"] is False


# --- TF Serving -------------------------------------------------------------------------------------

def _flags(args: List[str]) -> Dict[str, str]:
    return dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)


def test_tf_serving_serves_the_push_location_of_the_model(tmp_path):
    config = _cluster_config(tmp_path)
    deployment = sources.find("Deployment", "tf-serving")
    spec = deployment["spec"]["template"]["spec"]
    (container,) = _containers(deployment["spec"]["template"])
    flags = _flags(container["args"])
    assert flags["model_name"] == load_config().model_name == config.model_name
    (mount,) = [m for m in container["volumeMounts"]]
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    assert mount["readOnly"] and volume["persistentVolumeClaim"]["readOnly"]
    # The claim the tasks push to (paths.serving) is the one TF Serving reads, and the model
    # directory on it is <serving>/<model>.
    pushed_to = _task_pod_mounts()[os.path.dirname(config.serving_dir)]["claim"]
    assert volume["persistentVolumeClaim"]["claimName"] == pushed_to
    assert flags["model_base_path"] == os.path.join(mount["mountPath"], config.model_name)


def test_tf_serving_ports_probes_and_autoscaler_agree(tmp_path):
    model = load_config().model_name
    deployment = sources.find("Deployment", "tf-serving")
    (container,) = _containers(deployment["spec"]["template"])
    flags = _flags(container["args"])
    rest, grpc = int(flags["rest_api_port"]), int(flags["port"])
    assert rest == 8501 == int(load_config().raw["model_server"]["port"])  # clients of rankpipe serve keep theirs
    assert {p["containerPort"] for p in container["ports"]} == {rest, grpc}
    for probe in ("livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert (get["path"], get["port"]) == (f"/v1/models/{model}", rest), probe
    service = sources.find("Service", "tf-serving")
    assert {p["port"] for p in service["spec"]["ports"]} == {rest, grpc}
    assert container["resources"]["requests"]["cpu"]
    hpa = sources.find("HorizontalPodAutoscaler", "tf-serving")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == ("apps/v1", "Deployment",
                                                                     deployment["metadata"]["name"])
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]


# --- training ---------------------------------------------------------------------------------------

def _trainer_container(template: Dict[str, Any]) -> Dict[str, Any]:
    (container,) = [c for c in _containers(template) if c["name"] == "tensorflow"]
    return container


def _assert_gpu_worker(container: Dict[str, Any]) -> None:
    assert int(container["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    assert [(p["name"], p["containerPort"]) for p in container["ports"]] == [("tfjob-port", 2222)]
    assert container["image"] == sources.documented_images()[1]  # the -gpu build of the Dockerfile


def _assert_reads_the_pipeline_root(template, parsed, tmp_path) -> None:
    root = _cluster_config(tmp_path).pipeline_root
    mounts = {m["mountPath"]: m["name"] for m in _trainer_container(template)["volumeMounts"]}
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in template["spec"]["volumes"]}
    assert claims[mounts[root]] == _task_pod_mounts()[root]["claim"]
    for path in parsed.examples + [parsed.transform_output, parsed.serving_model_dir]:
        assert path.startswith(root + "/"), path


def test_tfjob_replicas_are_what_the_operator_and_the_worker_expect(worker_parser, tmp_path):
    tfjob = sources.find("TFJob", "ranking-train")
    specs = tfjob["spec"]["tfReplicaSpecs"]
    assert specs and set(specs) <= TFJOB_REPLICA_TYPES
    assert "PS" not in specs  # MultiWorkerMirroredStrategy: all-reduce, no parameter servers
    for spec in specs.values():
        assert int(spec["replicas"]) >= 1 and spec["restartPolicy"] in TFJOB_RESTART_POLICIES
        container = _trainer_container(spec["template"])
        _assert_gpu_worker(container)
        assert container["command"] == ["python", "-m", "trainer.worker"]
        parsed = _parse_worker_args(worker_parser, container["args"])
        _assert_reads_the_pipeline_root(spec["template"], parsed, tmp_path)


def test_the_worker_parser_fixture_rejects_an_unknown_flag(worker_parser):
    with pytest.raises(SystemExit):
        worker_parser.parse_args(["--examples", "a", "--transform-output", "t", "--serving-model-dir", "m",
                                  "--batch-size", "8"])


def test_the_indexed_job_gives_each_worker_a_tf_config_naming_every_worker(worker_parser, tmp_path):
    job = sources.find("Job", "ranking-train")
    service = sources.find("Service", job["spec"]["template"]["spec"]["subdomain"])
    assert service["spec"]["clusterIP"] == "None"
    template = job["spec"]["template"]
    container = _trainer_container(template)
    _assert_gpu_worker(container)
    env = {e["name"]: e["value"] for e in container["env"]}
    workers = int(env["WORKERS"])
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == workers >= 2
    assert env["JOB_NAME"] == job["metadata"]["name"] and env["WORKER_SERVICE"] == service["metadata"]["name"]
    assert [p["port"] for p in service["spec"]["ports"]] == [int(env["WORKER_PORT"])] == [2222]

    # Run the pod's script with a `python` that reports what it was started with.
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python").write_text('#!/bin/sh\nprintf "%s\\n" "$TF_CONFIG"; printf "%s\\n" "$@"\n')
    (fake / "python").chmod(0o755)
    for index in range(workers):
        out = subprocess.run(container["command"] + container["args"], capture_output=True, text=True, check=True,
                             env={**env, "PATH": f"{fake}:/usr/bin:/bin", "JOB_COMPLETION_INDEX": str(index)})
        tf_config, *argv = out.stdout.splitlines()
        tf_config = json.loads(tf_config)
        assert tf_config == {"cluster": {"worker": [f"{env['JOB_NAME']}-{i}.{env['WORKER_SERVICE']}:2222"
                                                    for i in range(workers)]},
                             "task": {"type": "worker", "index": index}}
        assert argv[:2] == ["-m", "trainer.worker"]
        parsed = _parse_worker_args(worker_parser, argv[2:])
    _assert_reads_the_pipeline_root(template, parsed, tmp_path)


# --- Flink ------------------------------------------------------------------------------------------

def test_flink_yaml_reaches_the_job_manager_service():
    host, port = _beam_args()["flink_master"].rsplit(":", 1)
    name, namespace, suffix = host.split(".")
    assert suffix == "svc"
    service = sources.find("Service", name)
    assert service["metadata"]["namespace"] == namespace
    assert int(port) in [p["port"] for p in service["spec"]["ports"]]
    jobmanager = sources.find("Deployment", "flink-jobmanager")
    labels = jobmanager["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    (container,) = _containers(jobmanager["spec"]["template"])
    props = yaml.safe_load({e["name"]: e["value"] for e in container["env"]}["FLINK_PROPERTIES"])
    assert props["jobmanager.rpc.address"] == name
    assert {props["jobmanager.rpc.port"], props["blob.server.port"], props["rest.port"]} == \
        {p["port"] for p in service["spec"]["ports"]}


def test_flink_versions_images_and_slots_match_flink_yaml():
    args = _beam_args()
    taskmanagers = sources.find("Deployment", "flink-taskmanager")
    flink, pool = _containers(taskmanagers["spec"]["template"])
    for deployment in (taskmanagers, sources.find("Deployment", "flink-jobmanager")):
        image = _containers(deployment["spec"]["template"])[0]["image"]
        assert sources.split_image(image)[1].startswith(args["flink_version"] + "."), image
    jobserver = _containers(sources.find("Deployment", "beam-flink-jobserver")["spec"]["template"])[0]
    assert jobserver["image"] == (f"apache/beam_flink{args['flink_version']}_job_server:"
                                  f"{sources.locked_version('apache-beam')}")
    assert sources.split_image(pool["image"])[0] == sources.split_image(args["sdk_container_image"])[0]
    props = yaml.safe_load({e["name"]: e["value"] for e in flink["env"]}["FLINK_PROPERTIES"])
    assert props["taskmanager.numberOfTaskSlots"] * taskmanagers["spec"]["replicas"] >= int(args["parallelism"])


def test_flink_yaml_runs_its_workers_in_the_pool_and_submits_through_the_job_server():
    """flink.yaml names the EXTERNAL environment (the sidecar pool) and the job server's Service;
    a failure says which flags the manifests expect (deploy/kubernetes/README.md, "Beam on Flink")."""
    args = _beam_args()
    taskmanagers = sources.find("Deployment", "flink-taskmanager")
    pool = _containers(taskmanagers["spec"]["template"])[1]
    jobserver = sources.find("Service", "beam-flink-jobserver")
    missing = []
    if args.get("environment_type", "").upper() == "EXTERNAL":
        host, port = args["environment_config"].rsplit(":", 1)
        assert host == "localhost" and int(port) in [p["containerPort"] for p in pool["ports"]]
    else:
        port = pool["ports"][0]["containerPort"]
        missing += ["--environment_type=EXTERNAL", f"--environment_config=localhost:{port}"]
    if "job_endpoint" in args:
        host, port = args["job_endpoint"].rsplit(":", 1)
        assert host.split(".")[:2] == [jobserver["metadata"]["name"], jobserver["metadata"]["namespace"]]
        assert int(port) == [p["port"] for p in jobserver["spec"]["ports"] if p["name"] == "job"][0]
    else:
        port = [p["port"] for p in jobserver["spec"]["ports"] if p["name"] == "job"][0]
        missing.append(f"--job_endpoint={jobserver['metadata']['name']}.{jobserver['metadata']['namespace']}"
                       f".svc:{port}")
    assert not missing, f"deploy/beam/flink.yaml does not use the Kubernetes layout: it needs {' '.join(missing)}"
