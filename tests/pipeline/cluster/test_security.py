"""pipeline.cluster.security: the credentials to reach a TLS scheduler given by address.

The end-to-end test starts a scheduler and a worker as separate processes the way
deploy/README.md tells HPC users to (``dask scheduler --protocol tls --tls-...``), with
credentials from ``deploy/tls/make-credentials.sh``, and runs the pipeline against it
with ``--scheduler tls://... --scheduler-security dask-tls.yaml``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import distributed
import pytest
import yaml

from pipeline.cluster.client import close_client, make_client
from pipeline.cluster.security import check_scheduler_security, load_security
from pipeline.errors import InputError
from tests.pipeline.small_runs import REPO, cli_args, done_records, python_env, run_cli, wait_for, write_mosaic

MAKE_CREDENTIALS = REPO / "deploy" / "tls" / "make-credentials.sh"


@pytest.fixture(scope="module")
def credentials(tmp_path_factory) -> Path:
    """A folder made by deploy/tls/make-credentials.sh: tls.crt, tls.key, dask-tls.yaml."""
    folder = tmp_path_factory.mktemp("tls") / "creds"
    proc = subprocess.run(["bash", str(MAKE_CREDENTIALS), str(folder)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return folder


def test_credentials_are_private_and_name_each_role(credentials):
    assert {p.name for p in credentials.iterdir()} == {"tls.crt", "tls.key", "dask-tls.yaml"}
    for path in (credentials, *credentials.iterdir()):
        assert path.stat().st_mode & 0o077 == 0, path  # nobody else may read the key
    tls = yaml.safe_load((credentials / "dask-tls.yaml").read_text())["distributed"]["comm"]["tls"]
    assert tls["ca-file"] == str(credentials / "tls.crt")
    for role in ("scheduler", "worker", "client"):
        assert tls[role] == {"cert": str(credentials / "tls.crt"), "key": str(credentials / "tls.key")}
    security = load_security(credentials / "dask-tls.yaml")
    assert security.require_encryption
    assert security.get_tls_config_for_role("client")["key"] == str(credentials / "tls.key")


def test_the_pods_path_goes_into_the_configuration(tmp_path):
    proc = subprocess.run(
        ["bash", str(MAKE_CREDENTIALS), str(tmp_path / "c"), "/etc/dask-tls"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    tls = yaml.safe_load((tmp_path / "c" / "dask-tls.yaml").read_text())["distributed"]["comm"]["tls"]
    assert tls["ca-file"] == "/etc/dask-tls/tls.crt" and tls["worker"]["key"] == "/etc/dask-tls/tls.key"


def test_bad_security_files_are_named(tmp_path):
    with pytest.raises(InputError, match="missing.yaml: scheduler security file not found"):
        load_security(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("distributed: [unclosed")
    with pytest.raises(InputError, match="bad.yaml: not a readable YAML"):
        load_security(tmp_path / "bad.yaml")
    (tmp_path / "none.yaml").write_text("distributed:\n  comm:\n    timeouts: {connect: 30s}\n")
    with pytest.raises(InputError, match="none.yaml: no 'distributed.comm.tls' section"):
        load_security(tmp_path / "none.yaml")
    (tmp_path / "ca.pem").write_text("not checked here")
    (tmp_path / "gone.yaml").write_text("distributed: {comm: {tls: {ca-file: ca.pem, client: {cert: c.pem}}}}\n")
    with pytest.raises(InputError, match="gone.yaml: client cert 'c.pem' not found"):
        load_security(tmp_path / "gone.yaml")
    # Relative names are the file's folder's.
    (tmp_path / "c.pem").write_text("not checked here")
    security = load_security(tmp_path / "gone.yaml")
    assert security.tls_ca_file == str(tmp_path / "ca.pem") and security.tls_client_key is None


def test_scheduler_address_and_credentials_must_fit():
    with pytest.raises(InputError, match="tls://10.0.0.5:8786: no TLS credentials.*--scheduler-security"):
        check_scheduler_security("tls://10.0.0.5:8786", None)
    given = distributed.Security(require_encryption=True, tls_ca_file="ca", tls_client_cert="c")
    with pytest.raises(InputError, match="not tls://; write it tls://10.0.0.5:8786"):
        check_scheduler_security("tcp://10.0.0.5:8786", given)
    assert check_scheduler_security("tls://10.0.0.5:8786", given) is given
    assert not check_scheduler_security("tcp://10.0.0.5:8786", None).require_encryption


def test_make_client_refuses_before_connecting(tmp_path):
    with pytest.raises(InputError, match="no TLS credentials"):
        make_client(scheduler="tls://127.0.0.1:1")  # nothing listens there: refused first
    with pytest.raises(InputError, match="scheduler security file not found"):
        make_client(scheduler="tls://127.0.0.1:1", scheduler_security=tmp_path / "none.yaml")


def _spawn(module: str, *args: str, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", module, *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=python_env(),
            start_new_session=True,
            cwd=log.parent,
        )


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_run_on_a_tls_scheduler_started_by_hand(credentials, tmp_path):
    crt, key = str(credentials / "tls.crt"), str(credentials / "tls.key")
    tls_args = ["--tls-ca-file", crt, "--tls-cert", crt, "--tls-key", key]
    scheduler_file = tmp_path / "scheduler.json"
    procs = [
        _spawn(
            "distributed.cli.dask_scheduler",
            "--protocol",
            "tls",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(scheduler_file),
            *tls_args,
            log=tmp_path / "scheduler.log",
        )
    ]
    try:
        wait_for(
            lambda: scheduler_file.exists() and "address" in scheduler_file.read_text(), 60, "the scheduler address"
        )
        address = json.loads(scheduler_file.read_text())["address"]
        assert address.startswith("tls://127.0.0.1:")
        procs.append(
            _spawn(
                "distributed.cli.dask_worker",
                address,
                "--host",
                "127.0.0.1",
                "--nthreads",
                "1",
                "--memory-limit",
                "2GiB",
                "--no-dashboard",
                *tls_args,
                log=tmp_path / "worker.log",
            )
        )
        config = credentials / "dask-tls.yaml"
        client, info = make_client(scheduler=address, scheduler_security=config, wait_workers=120)
        try:
            assert info.kind == "external" and info.address == address and info.n_workers == 1
            assert client.submit(sum, [1, 2]).result() == 3
        finally:
            close_client(client)
        # Without the credentials: refused before connecting; with other ones: refused.
        with pytest.raises(InputError, match="no TLS credentials"):
            make_client(scheduler=address)
        with pytest.raises(OSError):
            distributed.Client(address, security=distributed.Security.temporary(), timeout=5)
        # The command line: --scheduler tls://... --scheduler-security FILE.
        toml = write_mosaic(tmp_path / "mosaic")
        proc = run_cli(
            *cli_args(tmp_path / "run", toml, "--scheduler", address, "--scheduler-security", str(config)), timeout=300
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"cluster: external, 1 workers (scheduler {address} given" in proc.stdout
        assert {r["worker"][:6] for r in done_records(tmp_path / "run").values()} == {"tls://"}
    finally:
        for proc in reversed(procs):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=30)
