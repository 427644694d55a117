"""Certificates for mTLS: a CA in a folder, site and server certificates, and the site identity a
real grpc server reads from a verified client certificate."""

import argparse
import ipaddress
import stat
from contextlib import asynccontextmanager

import grpc
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from services.certs import (
    SITE_URI_PREFIX,
    add_certs_commands,
    certs_command,
    channel_credentials,
    init_ca,
    issue_server,
    issue_site,
    server_credentials,
    site_id_from_auth_context,
)
from sitenode.errors import FailedPrecondition, InvalidInput

METHOD = "/gridmesh.test.Whoami/Ask"


def load(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_init_issue_and_server_write_verifiable_certificates(tmp_path):
    ca = init_ca(tmp_path)
    site = issue_site(tmp_path, "depot-north")
    server = issue_server(tmp_path, "portfolio", ["127.0.0.1", "localhost", "portfolio.gridmesh.svc"])

    assert (ca.cert, ca.key) == (tmp_path / "ca.pem", tmp_path / "ca.key")
    assert (site.cert, site.key) == (tmp_path / "sites" / "depot-north.pem", tmp_path / "sites" / "depot-north.key")
    assert (server.cert, server.key) == (tmp_path / "servers" / "portfolio.pem", tmp_path / "servers" / "portfolio.key")
    for key in (ca.key, site.key, server.key):
        assert mode(key) == 0o600, key
    assert not list(tmp_path.rglob(".*")), "no temporary files left behind"

    ca_cert, node, srv = load(ca.cert), load(site.cert), load(server.cert)
    assert ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    ca_cert.verify_directly_issued_by(ca_cert)
    node.verify_directly_issued_by(ca_cert)
    srv.verify_directly_issued_by(ca_cert)

    assert node.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "depot-north"
    san = node.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(san) == [x509.UniformResourceIdentifier("spiffe://gridmesh/site/depot-north")]
    assert list(node.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    assert not node.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert node.not_valid_after_utc <= ca_cert.not_valid_after_utc

    srv_san = srv.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert srv_san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert srv_san.get_values_for_type(x509.DNSName) == ["localhost", "portfolio.gridmesh.svc"]
    assert list(srv.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]


def test_an_existing_ca_is_kept_unless_forced(tmp_path):
    init_ca(tmp_path)
    before = (tmp_path / "ca.pem").read_bytes()
    with pytest.raises(FailedPrecondition, match="already exists"):
        init_ca(tmp_path)
    assert (tmp_path / "ca.pem").read_bytes() == before
    init_ca(tmp_path, force=True)
    assert (tmp_path / "ca.pem").read_bytes() != before
    assert mode(tmp_path / "ca.key") == 0o600


@pytest.mark.parametrize("site_id", ["", "-north", "depot/north", "../ca", "depot north", "d" * 65, "north\n"])
def test_a_bad_site_id_names_the_field(tmp_path, site_id):
    init_ca(tmp_path)
    with pytest.raises(InvalidInput) as exc:
        issue_site(tmp_path, site_id)
    assert [v.field for v in exc.value.violations] == ["site_id"]
    assert not (tmp_path / "sites").exists()


def test_issuing_needs_a_ca(tmp_path):
    with pytest.raises(FailedPrecondition, match="certs init"):
        issue_site(tmp_path, "depot-north")
    with pytest.raises(FailedPrecondition):
        issue_server(tmp_path, "portfolio", ["localhost"])


def test_bad_server_hosts_name_the_field(tmp_path):
    init_ca(tmp_path)
    with pytest.raises(InvalidInput) as exc:
        issue_server(tmp_path, "portfolio", ["localhost", "bad host!"])
    assert exc.value.violations[0].field == "hosts[1]"
    with pytest.raises(InvalidInput) as exc:
        issue_server(tmp_path, "portfolio", [])
    assert exc.value.violations[0].field == "hosts"


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ({}, None),
        ({"transport_security_type": [b"ssl"]}, None),
        ({"transport_security_type": [b"insecure"], "peer_uri": [b"spiffe://gridmesh/site/a"]}, None),
        ({"transport_security_type": [b"ssl"], "peer_uri": [b"spiffe://gridmesh/site/a"]}, "a"),
        (
            {
                "transport_security_type": [b"ssl"],
                "peer_uri": [b"spiffe://gridmesh/site/a", b"spiffe://gridmesh/site/a"],
            },
            "a",
        ),
        (
            {
                "transport_security_type": [b"ssl"],
                "peer_uri": [b"spiffe://gridmesh/site/a", b"spiffe://gridmesh/site/b"],
            },
            None,
        ),
        (
            {"transport_security_type": [b"ssl"], "peer_uri": [b"spiffe://gridmesh/site/a", b"https://example.org/x"]},
            "a",
        ),
        ({"transport_security_type": [b"ssl"], "peer_uri": [b"spiffe://gridmesh/site/"]}, None),
        ({"transport_security_type": [b"ssl"], "peer_uri": [b"spiffe://gridmesh/site/a/b"]}, None),
        ({"transport_security_type": [b"ssl"], "peer_uri": [b"spiffe://other/site/a"]}, None),
        (
            {
                "transport_security_type": [b"ssl"],
                "x509_subject_alternative_name": [b"localhost", b"spiffe://gridmesh/site/a"],
            },
            "a",
        ),
    ],
)
def test_site_id_from_auth_context(context, expected):
    assert site_id_from_auth_context(context) == expected


# ---- a real grpc server with mTLS


@asynccontextmanager
async def whoami_server(folder, seen):
    """A grpc.aio server that requires client certificates and answers with the caller's site id."""

    async def ask(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        auth = context.auth_context()
        seen.append(auth)
        return (site_id_from_auth_context(auth) or "").encode()

    server_files = issue_server(folder, "portfolio", ["127.0.0.1", "localhost"])
    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(ask, request_deserializer=None, response_serializer=None)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("gridmesh.test.Whoami", {"Ask": handler})])
    port = server.add_secure_port(
        "127.0.0.1:0",
        server_credentials(server_files.cert, server_files.key, folder / "ca.pem", require_client_auth=True),
    )
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


async def ask(target, creds):
    async with grpc.aio.secure_channel(target, creds) as channel:
        return (await channel.unary_unary(METHOD)(b"", timeout=5)).decode()


async def test_the_server_reads_the_site_id_from_the_client_certificate(tmp_path):
    init_ca(tmp_path)
    site = issue_site(tmp_path, "depot-north")
    seen = []
    async with whoami_server(tmp_path, seen) as target:
        assert await ask(target, channel_credentials(tmp_path / "ca.pem", site.cert, site.key)) == "depot-north"
    # what grpc puts in the auth context for a URI SAN: its plain text, as bytes
    auth = seen[0]
    assert auth["transport_security_type"] == [b"ssl"]
    assert auth["peer_uri"] == [b"spiffe://gridmesh/site/depot-north"]
    assert auth["x509_subject_alternative_name"] == [b"spiffe://gridmesh/site/depot-north"]
    assert auth["x509_common_name"] == [b"depot-north"]
    assert SITE_URI_PREFIX == "spiffe://gridmesh/site/"


async def test_clients_without_a_good_certificate_are_refused(tmp_path):
    init_ca(tmp_path)
    other = tmp_path / "other"
    init_ca(other)
    stranger = issue_site(other, "depot-north")  # same site id, wrong CA
    seen = []
    async with whoami_server(tmp_path, seen) as target:
        server_cert = tmp_path / "servers" / "portfolio"
        attempts = {
            "no client certificate": channel_credentials(tmp_path / "ca.pem"),
            "another CA": channel_credentials(tmp_path / "ca.pem", stranger.cert, stranger.key),
            "a server certificate (no clientAuth)": channel_credentials(
                tmp_path / "ca.pem", server_cert.with_suffix(".pem"), server_cert.with_suffix(".key")
            ),
        }
        for what, creds in attempts.items():
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await ask(target, creds)
            assert exc.value.code() == grpc.StatusCode.UNAVAILABLE, what
    assert seen == [], "no refused client reached the handler"


def test_channel_credentials_want_both_cert_and_key(tmp_path):
    init_ca(tmp_path)
    site = issue_site(tmp_path, "depot-north")
    with pytest.raises(InvalidInput) as exc:
        channel_credentials(tmp_path / "ca.pem", site.cert)
    assert exc.value.violations[0].field == "key"
    with pytest.raises(InvalidInput) as exc:
        server_credentials(site.cert, site.key, None, require_client_auth=True)
    assert exc.value.violations[0].field == "ca"


# ---- command line


def parser():
    p = argparse.ArgumentParser(prog="gridmesh")
    add_certs_commands(p.add_subparsers(dest="command", required=True))
    return p


def run(capsys, *argv):
    args = parser().parse_args(argv)
    assert args.command == "certs"
    code = certs_command(args, None)
    out, err = capsys.readouterr()
    return code, out, err


def test_certs_commands_end_to_end(tmp_path, capsys):
    folder = tmp_path / "certs"
    code, out, _ = run(capsys, "certs", "init", "--dir", str(folder))
    assert code == 0 and str(folder / "ca.pem") in out
    assert (folder / "ca.pem").exists() and mode(folder / "ca.key") == 0o600

    code, _, err = run(capsys, "certs", "init", "--dir", str(folder))
    assert code == 2 and "already exists" in err

    code, out, _ = run(capsys, "certs", "issue", "--site", "depot-north", "--dir", str(folder))
    assert code == 0 and "depot-north.pem" in out
    assert mode(folder / "sites" / "depot-north.key") == 0o600

    code, out, _ = run(
        capsys,
        "certs",
        "server",
        "--name",
        "portfolio",
        "--host",
        "127.0.0.1",
        "--host",
        "portfolio.gridmesh.svc",
        "--dir",
        str(folder),
    )
    assert code == 0 and (folder / "servers" / "portfolio.pem").exists()
    san = (
        load(folder / "servers" / "portfolio.pem").extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    )
    assert san.get_values_for_type(x509.DNSName) == ["portfolio.gridmesh.svc"]

    code, out, err = run(capsys, "certs", "issue", "--site", "bad/site", "--dir", str(folder))
    assert code == 2 and "site_id" in err and out == ""
    assert not (folder / "sites" / "bad").exists()


def test_certs_issue_without_a_ca_says_so(tmp_path, capsys):
    code, _, err = run(capsys, "certs", "issue", "--site", "depot-north", "--dir", str(tmp_path / "empty"))
    assert code == 2 and "certs init" in err


def test_certs_default_dir():
    args = parser().parse_args(["certs", "server", "--name", "p", "--host", "localhost"])
    assert args.dir == "certs" and args.host == ["localhost"] and callable(args.func)
