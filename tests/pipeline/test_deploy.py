"""The deployment recipes in deploy/: Kubernetes manifests, container recipe, HPC scripts.

Nothing here needs a cluster. Kubernetes manifests are checked offline against the
Kubernetes resource schemas (kubernetes-validate, strict: unknown fields fail) and the
Dask operator's custom resources against their CRD structure; every command line the
recipes run through ``python -m pipeline`` is parsed with the real argument parser.
"""

from __future__ import annotations

import copy
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from pipeline.cli.parser import build_parser as _parser

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "kubernetes"
#: Oldest and newest Kubernetes versions whose schemas the manifests must satisfy.
K8S_VERSIONS = ("1.28", kubernetes_validate.utils.major_minor(kubernetes_validate.utils.latest_version()))
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
#: Where every pod mounts the cluster's TLS credentials (the secret morpheus-dask-tls).
TLS_MOUNT = "/etc/dask-tls"


def _manifests() -> dict[str, list[dict]]:
    """Every Kubernetes document in deploy/kubernetes, by file (kustomization excluded)."""
    out = {}
    for path in sorted(K8S.rglob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        out[str(path.relative_to(K8S))] = [d for d in yaml.safe_load_all(path.read_text()) if d]
    return out


MANIFESTS = _manifests()
DOCS = [(name, doc) for name, docs in MANIFESTS.items() for doc in docs]

# The custom resources of the Dask Kubernetes operator (kubernetes.dask.org/v1), as
# defined in dask-kubernetes' dask_kubernetes/operator/customresources/templates.yaml
# and daskworkergroup.yaml (BSD-3-Clause); PodSpec and ServiceSpec are checked
# separately with the Kubernetes schemas.
_META = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}
_WORKER = {
    "type": "object",
    "required": ["spec"],
    "additionalProperties": False,
    "properties": {"replicas": {"type": "integer", "minimum": 0}, "metadata": _META, "spec": {"type": "object"}},
}
_SCHEDULER = {
    "type": "object",
    "required": ["spec", "service"],
    "additionalProperties": False,
    "properties": {"metadata": _META, "spec": {"type": "object"}, "service": {"type": "object"}},
}
_OBJECT_META = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
CRD_SCHEMAS = {
    "DaskCluster": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "kubernetes.dask.org/v1"},
            "kind": {"const": "DaskCluster"},
            "metadata": _OBJECT_META,
            "spec": {
                "type": "object",
                "required": ["scheduler", "worker"],
                "additionalProperties": False,
                "properties": {"idleTimeout": {"type": "integer"}, "scheduler": _SCHEDULER, "worker": _WORKER},
            },
        },
    },
    "DaskWorkerGroup": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "kubernetes.dask.org/v1"},
            "kind": {"const": "DaskWorkerGroup"},
            "metadata": _OBJECT_META,
            "spec": {
                "type": "object",
                "required": ["cluster", "worker"],
                "additionalProperties": False,
                "properties": {"cluster": {"type": "string"}, "worker": _WORKER},
            },
        },
    },
}


def _pod_specs(doc: dict) -> list[tuple[str, dict]]:
    """(role, PodSpec) pairs inside a document."""
    kind = doc["kind"]
    if kind == "DaskCluster":
        return [("scheduler", doc["spec"]["scheduler"]["spec"]), ("worker", doc["spec"]["worker"]["spec"])]
    if kind == "DaskWorkerGroup":
        return [("worker", doc["spec"]["worker"]["spec"])]
    if kind == "Job":
        return [("driver", doc["spec"]["template"]["spec"])]
    return []


def _containers(doc: dict) -> list[dict]:
    return [c for _, spec in _pod_specs(doc) for c in spec["containers"]]


def _image_name() -> str:
    match = re.search(r'^IMAGE="\$\{IMAGE:-([^}]+)\}"', (DEPLOY / "container" / "build.sh").read_text(), re.M)
    assert match, 'build.sh must define IMAGE="${IMAGE:-name:tag}"'
    return match.group(1)


def _doc(kind: str, name: str | None = None, file: str | None = None) -> dict:
    found = [
        d
        for f, d in DOCS
        if d["kind"] == kind and (name is None or d["metadata"]["name"] == name) and (file is None or f == file)
    ]
    assert len(found) == 1, (kind, name, file, len(found))
    return found[0]


# --- Kubernetes ----------------------------------------------------------------------


def test_manifests_present():
    kinds = sorted(d["kind"] for _, d in DOCS)
    assert kinds == [
        "DaskCluster",
        "DaskCluster",
        "DaskWorkerGroup",
        "Job",
        "Job",
        "PersistentVolumeClaim",
        "PersistentVolumeClaim",
        "Secret",
    ]


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize(("name", "doc"), DOCS, ids=[f"{n}:{d['kind']}" for n, d in DOCS])
def test_manifest_satisfies_kubernetes_schemas(name, doc, version):
    if doc["apiVersion"].startswith("kubernetes.dask.org/"):
        jsonschema.validate(doc, CRD_SCHEMAS[doc["kind"]])
        for role, spec in _pod_specs(doc):
            pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": role}, "spec": spec}
            kubernetes_validate.validate(pod, version, strict=True)
        if doc["kind"] == "DaskCluster":
            service = {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "s"},
                "spec": doc["spec"]["scheduler"]["service"],
            }
            kubernetes_validate.validate(service, version, strict=True)
    else:
        kubernetes_validate.validate(doc, version, strict=True)


def test_schema_checks_catch_mistakes():
    """The checks above fail on a misspelt field, in the CRD and inside a PodSpec."""
    cluster = copy.deepcopy(_doc("DaskCluster", file="daskcluster.yaml"))
    cluster["spec"]["workers"] = cluster["spec"].pop("worker")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(cluster, CRD_SCHEMAS["DaskCluster"])
    spec = copy.deepcopy(_doc("DaskCluster", file="daskcluster.yaml")["spec"]["worker"]["spec"])
    spec["containers"][0]["resource"] = spec["containers"][0].pop("resources")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "w"}, "spec": spec}, K8S_VERSIONS[-1], strict=True
        )


def test_every_container_runs_the_recipe_image():
    image = _image_name()
    assert image.split(":")[0] == "morpheus-survey"
    assert image.split(":")[1].startswith(VERSION), f"image tag {image} does not follow version {VERSION}"
    containers = [c for _, d in DOCS for c in _containers(d)]
    assert len(containers) == 7
    assert {c["image"] for c in containers} == {image}
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["images"] == [{"name": "morpheus-survey", "newTag": image.split(":")[1]}]
    assert sorted(kustomization["resources"]) == sorted(n for n in MANIFESTS if "/" not in n)


@pytest.mark.parametrize("file", ["daskcluster.yaml", "object-store/daskcluster-s3.yaml"])
def test_gpu_workers_one_gpu_each_advertising_the_resource(file):
    cluster = _doc("DaskCluster", file=file)
    (worker,) = cluster["spec"]["worker"]["spec"]["containers"]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert worker["resources"]["requests"]["nvidia.com/gpu"] == 1
    args = worker["args"]
    assert args[:3] == ["dask", "cuda", "worker"]
    assert args[args.index("--resources") + 1] == "GPU=1"
    assert args[args.index("--nthreads") + 1] == "1"
    env = {e["name"]: e.get("value") for e in worker["env"]}
    assert env["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
    # The scheduler service exposes the Dask port and the dashboard.
    service = cluster["spec"]["scheduler"]["service"]
    assert {p["name"]: p["port"] for p in service["ports"]} == {"tcp-comm": 8786, "http-dashboard": 8787}
    assert service["selector"]["dask.org/cluster-name"] == cluster["metadata"]["name"]


def test_cpu_workers_join_the_cluster_without_gpu():
    group = _doc("DaskWorkerGroup")
    assert group["spec"]["cluster"] == _doc("DaskCluster", file="daskcluster.yaml")["metadata"]["name"]
    (worker,) = _containers(group)
    assert "nvidia.com/gpu" not in str(worker["resources"]) and "--resources" not in worker["args"]


def _claims(spec: dict) -> dict[str, str]:
    """Volume name -> claim name, for the volumes of a PodSpec that are claims."""
    return {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if "persistentVolumeClaim" in v}


def _pipeline_args(container: dict) -> list[str]:
    args = container.get("command", []) + container["args"]
    assert args[:3] == ["python", "-m", "pipeline"]
    return args[3:]


def test_driver_jobs_parse_and_point_at_the_cluster_and_storage():
    claims = {d["metadata"]["name"] for d in MANIFESTS["storage.yaml"]}
    for file, run_dir_kind in (("driver-job.yaml", "path"), ("object-store/driver-job-s3.yaml", "url")):
        job = _doc("Job", file=file)
        (driver,) = _containers(job)
        args = _parser().parse_args(_pipeline_args(driver))
        cluster = _doc(
            "DaskCluster", file="daskcluster.yaml" if run_dir_kind == "path" else "object-store/daskcluster-s3.yaml"
        )
        assert args.command == "run" and args.mosaic == "goods-s" and args.gpu == "require"
        assert args.scheduler == f"tls://{cluster['metadata']['name']}-scheduler:8786"
        assert str(args.scheduler_security) == f"{TLS_MOUNT}/dask-tls.yaml"
        spec = job["spec"]["template"]["spec"]
        volumes = _claims(spec)
        assert set(volumes.values()) <= claims
        mounts = {m["mountPath"]: volumes.get(m["name"]) for m in driver["volumeMounts"]}
        assert mounts["/data"] == "morpheus-data" and str(args.data_dir) == "/data"
        if run_dir_kind == "path":
            assert str(args.run_dir).startswith("/runs/") and mounts["/runs"] == "morpheus-runs"
            # The GPU workers see the same run directory at the same path.
            worker_spec = cluster["spec"]["worker"]["spec"]
            worker_volumes = _claims(worker_spec)
            (worker,) = worker_spec["containers"]
            assert {m["mountPath"]: worker_volumes.get(m["name"]) for m in worker["volumeMounts"]} == {
                "/runs": "morpheus-runs",
                TLS_MOUNT: None,
            }
        else:
            assert args.run_dir == "s3://morpheus-runs/goods-s"
            secret = _doc("Secret")["metadata"]["name"]
            assert driver["envFrom"] == [{"secretRef": {"name": secret}}]
            (worker,) = cluster["spec"]["worker"]["spec"]["containers"]
            assert worker["envFrom"] == [{"secretRef": {"name": secret}}]
            assert [m["mountPath"] for m in worker["volumeMounts"]] == [TLS_MOUNT]  # no run-directory volume


def _tls_files(tmp_path: Path) -> set[str]:
    """What deploy/tls/make-credentials.sh puts in the secret, seen from a pod, and the
    paths its Dask configuration names."""
    proc = subprocess.run(
        ["bash", str(DEPLOY / "tls" / "make-credentials.sh"), str(tmp_path / "tls"), TLS_MOUNT],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    made = {f"{TLS_MOUNT}/{p.name}" for p in (tmp_path / "tls").iterdir()}
    tls = yaml.safe_load((tmp_path / "tls" / "dask-tls.yaml").read_text())["distributed"]["comm"]["tls"]
    named = {tls["ca-file"]} | {
        tls[role][part] for role in ("scheduler", "worker", "client") for part in ("cert", "key")
    }
    assert named <= made
    return made


@pytest.mark.parametrize("file", ["daskcluster.yaml", "object-store/daskcluster-s3.yaml"])
def test_every_pod_speaks_tls_with_the_secret(file, tmp_path):
    """Scheduler, GPU and CPU workers and the driver use the TLS credentials of one secret,
    at paths that the credentials script writes; the workers join the scheduler by tls://."""
    made = _tls_files(tmp_path)
    cluster = _doc("DaskCluster", file=file)
    docs = [cluster, _doc("Job", file="driver-job.yaml" if "/" not in file else "object-store/driver-job-s3.yaml")]
    docs += [_doc("DaskWorkerGroup")] if "/" not in file else []
    scheduler_address = f"tls://{cluster['metadata']['name']}-scheduler:8786"
    roles = []
    for doc in docs:
        for role, spec in _pod_specs(doc):
            (container,) = spec["containers"]
            volumes = {v["name"]: v for v in spec["volumes"]}
            (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == TLS_MOUNT]
            assert mount["readOnly"] and volumes[mount["name"]]["secret"]["secretName"] == "morpheus-dask-tls"
            args = container.get("command", []) + container["args"]
            paths = {a for a in args if a.startswith(TLS_MOUNT)}
            assert paths and paths <= made, (role, paths)
            if role == "scheduler":
                assert args[:2] == ["dask", "scheduler"] and args[args.index("--protocol") + 1] == "tls"
            if role in ("scheduler", "worker"):
                flags = {args[i]: args[i + 1] for i in range(len(args) - 1) if args[i].startswith("--tls-")}
                assert flags == {
                    "--tls-ca-file": f"{TLS_MOUNT}/tls.crt",
                    "--tls-cert": f"{TLS_MOUNT}/tls.crt",
                    "--tls-key": f"{TLS_MOUNT}/tls.key",
                }
            if role == "worker":
                env = {e["name"]: e.get("value") for e in container["env"]}
                assert "$(DASK_SCHEDULER_ADDRESS)" in args and env["DASK_SCHEDULER_ADDRESS"] == scheduler_address
            roles.append(role)
    assert sorted(roles) == (
        ["driver", "scheduler", "worker", "worker"] if "/" not in file else ["driver", "scheduler", "worker"]
    )


def test_example_secret_holds_no_real_credentials():
    data = _doc("Secret")["stringData"]
    assert data["AWS_ACCESS_KEY_ID"] == data["AWS_SECRET_ACCESS_KEY"] == "REPLACE-ME"


# --- container recipe ------------------------------------------------------------------


def test_container_recipe():
    dockerfile = (DEPLOY / "container" / "Dockerfile").read_text()
    base = re.search(r"^ARG CUDA_IMAGE=(\S+)$", dockerfile, re.M).group(1)
    assert re.fullmatch(r"nvidia/cuda:12\.\d+\.\d+-[a-z-]+-ubuntu\d\d\.\d\d", base)
    assert re.search(r"^FROM \$\{CUDA_IMAGE\}$", dockerfile, re.M)
    assert 'extras="gpu,s3,hpc"' in dockerfile and 'pip install ".[${extras}]"' in dockerfile
    assert f"ARG VERSION={VERSION}" in dockerfile
    assert "TF_FORCE_GPU_ALLOW_GROWTH=true" in dockerfile
    assert re.search(r"^USER 1000$", dockerfile, re.M)  # not root
    # Everything the install needs is copied and let through the ignore file.
    ignore = (DEPLOY / "container" / "Dockerfile.dockerignore").read_text().split()
    for copied in re.findall(r"^COPY (.+) \S+$", dockerfile, re.M):
        for item in copied.split():
            assert f"!{item}" in ignore or f"!{item}/" in ignore, item
    # The extras the recipe installs exist in pyproject.toml.
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert {"gpu", "s3", "hpc"} <= set(extras)
    assert any("dask-cuda[cu12]" in dep for dep in extras["gpu"])


@pytest.mark.parametrize(
    "script", ["container/build.sh", "hpc/driver.slurm", "hpc/driver.pbs", "tls/make-credentials.sh"]
)
def test_shell_scripts_are_valid_bash(script):
    proc = subprocess.run(["bash", "-n", str(DEPLOY / script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# --- HPC driver scripts ------------------------------------------------------------------


def _driver_command(script: Path) -> list[str]:
    """The `python -m pipeline ...` command of a batch script, variables filled in."""
    text = script.read_text().replace("\\\n", " ")
    (line,) = [ln for ln in text.splitlines() if ln.strip().startswith("python -m pipeline")]
    words = shlex.split(line)[3:]
    return [re.sub(r"\$\{?(\w+)\}?", lambda m: {"WORKERS": "8"}.get(m.group(1), f"/x/{m.group(1)}"), w) for w in words]


@pytest.mark.parametrize(("script", "kind"), [("driver.slurm", "slurm"), ("driver.pbs", "pbs")])
def test_hpc_driver_script(script, kind):
    path = DEPLOY / "hpc" / script
    args = _parser().parse_args(_driver_command(path))
    assert args.command == "run" and args.cluster == kind and args.workers == 8
    assert args.gpu == "require" and not args.progress
    assert args.tls  # the worker jobs join over TLS (credentials made for the run)
    assert str(args.cluster_config).endswith("deploy/hpc/jobqueue.yaml")
    prefix = "#SBATCH" if kind == "slurm" else "#PBS"
    directives = [ln for ln in path.read_text().splitlines() if ln.startswith(prefix)]
    assert any("time" in d for d in directives)
    assert not any("gpu" in d.lower() for d in directives)  # the driver itself needs no GPU
