"""Local clusters listen on loopback only; TLS schedulers work; plain tcp to
a remote host warns."""

import datetime as dt
import warnings

import psutil
import pytest

import scaler
from scaler.cluster import _warn_if_insecure, connect, security_from
from scaler.config import ClusterConfig
from scaler.errors import ConfigError

from .conftest import base_config
from .processes import DaskProcesses


def listening(pids):
    out = []
    for pid in pids:
        try:
            conns = psutil.Process(pid).net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        out += [c.laddr for c in conns if c.status == psutil.CONN_LISTEN]
    return out


def test_local_cluster_listens_on_loopback_only():
    me = psutil.Process()
    before = set(listening([me.pid]))  # e.g. the S3 test endpoint in this process
    with connect(config=ClusterConfig(n_workers=2, dashboard=True)) as client:
        client.wait_for_workers(2)
        pids = [me.pid] + [p.pid for p in me.children(recursive=True)]
        addrs = [a for a in listening(pids) if a not in before]
        assert len(addrs) >= 3  # scheduler, 2 workers (+ nannies, dashboard)
        assert {a.ip for a in addrs} == {"127.0.0.1"}, addrs
        assert client.dashboard_link.startswith("http://127.0.0.1:")
        assert all("127.0.0.1" in w for w in client.scheduler_info()["workers"])
        import os

        worker_pids = list(client.run(os.getpid).values())
        cluster, kids = client.cluster, [psutil.Process(p) for p in worker_pids]
    # leaving the block stops the LocalCluster connect() started, processes included
    assert cluster.status.name == "closed"
    gone, alive = psutil.wait_procs(kids, timeout=20)
    assert not alive, alive


def test_threads_only_cluster_listens_on_loopback_only():
    me = psutil.Process()
    before = set(listening([me.pid]))
    with connect(config=ClusterConfig(n_workers=1, processes=False)):
        addrs = [a for a in listening([me.pid]) if a not in before]
        assert addrs, "the scheduler's HTTP server listens"
        assert {a.ip for a in addrs} == {"127.0.0.1"}, addrs


def test_plain_tcp_to_a_remote_host_warns_without_connecting():
    with pytest.warns(UserWarning, match="neither authenticated nor encrypted"):
        _warn_if_insecure("tcp://10.1.2.3:8786")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _warn_if_insecure("tcp://127.0.0.1:8786")
        _warn_if_insecure("tls://10.1.2.3:8786")
        _warn_if_insecure("localhost:8786")


def test_tls_address_without_certificates_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="tls_ca_file"):
        security_from(ClusterConfig(), "tls://127.0.0.1:8786")
    cfg = ClusterConfig(tls_ca_file=str(tmp_path / "nope.pem"), tls_cert_file="a", tls_key_file="b")
    with pytest.raises(ConfigError, match="nope.pem"):
        security_from(cfg)


def make_certs(folder):
    """A CA and one certificate for 127.0.0.1 signed by it (PEM files)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("scaler-test-ca"))
        .issuer_name(name("scaler-test-ca"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = {k: folder / f"{k}.pem" for k in ("ca", "cert", "key")}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return {k: str(v) for k, v in paths.items()}


class TLSProcesses(DaskProcesses):
    def __init__(self, certs, **kw):
        tls = ["--tls-ca-file", certs["ca"], "--tls-cert", certs["cert"], "--tls-key", certs["key"]]
        super().__init__(
            extra_scheduler=["--protocol", "tls", *tls], extra_worker=tls, protocol="tls", **kw
        )
        self.certs = certs

    def client_kwargs(self):
        from distributed import Security

        c = self.certs
        return {
            "security": Security(
                tls_ca_file=c["ca"],
                tls_client_cert=c["cert"],
                tls_client_key=c["key"],
                require_encryption=True,
            )
        }


@pytest.mark.slow
def test_pipeline_on_a_tls_scheduler(tmp_path, clean_data):
    certs = make_certs(tmp_path)
    with TLSProcesses(certs, n_workers=1) as procs:
        assert procs.address.startswith("tls://127.0.0.1:")
        cluster = {
            "address": procs.address,
            "tls_ca_file": certs["ca"],
            "tls_cert_file": certs["cert"],
            "tls_key_file": certs["key"],
        }
        cfg = base_config(clean_data, str(tmp_path / "out"), cluster=cluster, model={"rounds": 5})
        result = scaler.run(cfg)
        assert result.metrics["auc"] > 0.6
