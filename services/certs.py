"""Certificates for gridmesh's mTLS: a CA in a folder, node certificates for sites, server
certificates, and the site identity a server reads back from a verified client certificate.

Layout of a certs folder (default `certs/`):

    ca.pem, ca.key                     the CA (key 0600)
    sites/<site_id>.pem, .key          a site node's client certificate: CN = site id,
                                       SAN URI spiffe://gridmesh/site/<site_id>, clientAuth
    servers/<name>.pem, .key           a server certificate: DNS/IP SANs, serverAuth

Keys are ECDSA P-256. A site's identity is its SAN URI, never its CN: the server trusts it only
because grpc verified the chain against the CA (`require_client_auth=True`).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sitenode.errors import FailedPrecondition, InvalidInput
from sitenode.model.validation import ID_PATTERN

SITE_URI_PREFIX = "spiffe://gridmesh/site/"
DEFAULT_DIR = "certs"
EXIT_BAD_INPUT = 2
MAX_ID_LENGTH = 64  # the model's Id (sitenode.model.site) and X.509's upper bound for a CN
# grpc's auth_context keys (grpcio 1.85, verified by tests/services/test_certs.py): the peer certificate's URI SANs,
# one bytes value each, under "peer_uri"; every SAN (DNS, URI, email, IP) under "x509_subject_alternative_name"
URI_KEY = "peer_uri"
SAN_KEY = "x509_subject_alternative_name"
TRANSPORT_KEY = "transport_security_type"
_BACKDATE = timedelta(minutes=5)  # tolerate clock skew between the issuer and the peers
_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


@dataclass(frozen=True)
class CaFiles:
    cert: Path
    key: Path


@dataclass(frozen=True)
class IssuedFiles:
    cert: Path
    key: Path
    ca: Path


# ---- files


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write `data` to a temporary file with `mode` and rename it over `path`: no window with looser permissions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write_pair(cert_path: Path, key_path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    _write_atomic(key_path, _key_pem(key), 0o600)
    _write_atomic(cert_path, _cert_pem(cert), 0o644)


def ca_files(folder: Path) -> CaFiles:
    folder = Path(folder)
    return CaFiles(folder / "ca.pem", folder / "ca.key")


# ---- validation


def _check_id(field: str, value: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInput.one(field, "must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidInput.one(field, f"must be at most {MAX_ID_LENGTH} characters, got {len(value)}")
    if not re.fullmatch(ID_PATTERN, value):
        raise InvalidInput.one(
            field, f"must start with a letter or digit and use only letters, digits, '_', '.', ':', '-', got {value!r}"
        )
    return value


def _check_days(days: int) -> int:
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise InvalidInput.one("days", f"must be a whole number of days >= 1, got {days!r}")
    return days


def _host_name(field: str, host: str) -> x509.GeneralName:
    text = host.strip().strip("[]") if isinstance(host, str) else ""
    try:
        return x509.IPAddress(ipaddress.ip_address(text))
    except ValueError:
        pass
    name = text[:-1] if text.endswith(".") else text
    labels = name.split(".")
    if labels and labels[0] == "*" and len(labels) > 2:  # a wildcard covers one leftmost label only
        labels = labels[1:]
    if not name or len(name) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        raise InvalidInput.one(field, f"must be an IP address or a DNS name, got {host!r}")
    return x509.DNSName(name.lower())


# ---- building


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _load_ca(folder: Path) -> tuple[CaFiles, x509.Certificate, ec.EllipticCurvePrivateKey]:
    files = ca_files(folder)
    if not (files.cert.exists() and files.key.exists()):
        raise FailedPrecondition(
            f"no CA in {folder} (want ca.pem and ca.key): run `gridmesh certs init --dir {folder}` first"
        )
    try:
        cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
        key = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise FailedPrecondition(f"cannot read the CA in {folder}: {exc}") from exc
    ca_public = cert.public_key()
    # the CA signs with ECDSA (as `certs init` makes it): any other kind of key cannot be ours
    if not (isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(ca_public, ec.EllipticCurvePublicKey)):
        raise FailedPrecondition(f"the CA in {folder} is not an ECDSA CA (want the P-256 key `certs init` makes)")
    if ca_public.public_numbers() != key.public_key().public_numbers():
        raise FailedPrecondition(f"{files.key} is not the key of {files.cert}")
    if cert.not_valid_after_utc <= datetime.now(UTC):
        raise FailedPrecondition(f"the CA in {folder} expired on {cert.not_valid_after_utc.isoformat()}")
    return files, cert, key


def _issue(
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    cn: str,
    sans: list[x509.GeneralName],
    usage: x509.ObjectIdentifier,
    days: int,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    now = datetime.now(UTC)
    not_after = min(now + timedelta(days=days), ca.not_valid_after_utc)  # nothing outlives its issuer
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def init_ca(folder: Path, *, name: str = "gridmesh CA", days: int = 3650, force: bool = False) -> CaFiles:
    """Create a CA in `folder`: `ca.pem` and `ca.key` (0600). Refuses to replace an existing one unless `force`."""
    folder = Path(folder)
    _check_days(days)
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_ID_LENGTH:
        raise InvalidInput.one("name", f"must be 1 to {MAX_ID_LENGTH} characters, got {name!r}")
    files = ca_files(folder)
    existing = [p.name for p in (files.cert, files.key) if p.exists()]
    if existing and not force:
        raise FailedPrecondition(
            f"a CA already exists in {folder} ({', '.join(existing)}); "
            "replacing it invalidates every certificate it issued: use force"
        )
    now = datetime.now(UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_pair(files.cert, files.key, cert, key)
    return files


def site_uri(site_id: str) -> str:
    return SITE_URI_PREFIX + _check_id("site_id", site_id)


def issue_site(folder: Path, site_id: str, *, days: int = 825) -> IssuedFiles:
    """A site node's client certificate, signed by the CA in `folder`: `sites/<site_id>.pem` and `.key` (0600).

    Issuing again for the same site replaces its certificate and key (renewal)."""
    folder = Path(folder)
    uri = site_uri(site_id)
    _check_days(days)
    ca_paths, ca, ca_key = _load_ca(folder)
    cert, key = _issue(
        ca, ca_key, site_id, [x509.UniformResourceIdentifier(uri)], ExtendedKeyUsageOID.CLIENT_AUTH, days
    )
    out = IssuedFiles(folder / "sites" / f"{site_id}.pem", folder / "sites" / f"{site_id}.key", ca_paths.cert)
    _write_pair(out.cert, out.key, cert, key)
    return out


OPERATOR_URI_PREFIX = "spiffe://gridmesh/operator/"


def issue_operator(folder: Path, name: str, *, days: int = 825) -> IssuedFiles:
    """An operator tool's client certificate (CLI, dashboard): `operators/<name>.pem` and `.key`.

    With mTLS every client of the portfolio shows a certificate of its CA; an operator's
    names no site (`spiffe://gridmesh/operator/<name>`), so it can never speak for one, and
    its calls still need a token with a role."""
    folder = Path(folder)
    _check_id("name", name)
    _check_days(days)
    ca_paths, ca, ca_key = _load_ca(folder)
    cert, key = _issue(
        ca,
        ca_key,
        name,
        [x509.UniformResourceIdentifier(OPERATOR_URI_PREFIX + name)],
        ExtendedKeyUsageOID.CLIENT_AUTH,
        days,
    )
    out = IssuedFiles(folder / "operators" / f"{name}.pem", folder / "operators" / f"{name}.key", ca_paths.cert)
    _write_pair(out.cert, out.key, cert, key)
    return out


def issue_server(folder: Path, name: str, hosts: Sequence[str], *, days: int = 825) -> IssuedFiles:
    """A server certificate for `hosts` (IP addresses and DNS names), signed by the CA in `folder`:
    `servers/<name>.pem` and `.key` (0600)."""
    folder = Path(folder)
    _check_id("name", name)
    if isinstance(hosts, str):
        hosts = [hosts]
    if not hosts:
        raise InvalidInput.one("hosts", "give at least one host (an IP address or a DNS name)")
    sans: list[x509.GeneralName] = []
    for i, host in enumerate(hosts):
        san = _host_name(f"hosts[{i}]", host)
        if san not in sans:
            sans.append(san)
    _check_days(days)
    ca_paths, ca, ca_key = _load_ca(folder)
    cert, key = _issue(ca, ca_key, name, sans, ExtendedKeyUsageOID.SERVER_AUTH, days)
    out = IssuedFiles(folder / "servers" / f"{name}.pem", folder / "servers" / f"{name}.key", ca_paths.cert)
    _write_pair(out.cert, out.key, cert, key)
    return out


# ---- identity from grpc


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes | bytearray) else str(value)


def site_id_from_auth_context(auth_context: Mapping[str, Sequence[bytes]]) -> str | None:
    """The site id of a peer that presented a verified site certificate, else None.

    `auth_context` is grpc's `context.auth_context()`: over TLS it holds `transport_security_type:
    [b"ssl"]`, the URI SANs as plain text under `peer_uri` ([b"spiffe://gridmesh/site/depot-north"]),
    the same text among all SANs under `x509_subject_alternative_name`, and (one spiffe URI only)
    `peer_spiffe_id`. None when the transport is not TLS, there is no site URI, or the certificate
    names more than one site. Only meaningful when the server requires client certificates."""
    if not auth_context:
        return None
    if [_text(v) for v in auth_context.get(TRANSPORT_KEY, ())] != ["ssl"]:
        return None
    uris = auth_context[URI_KEY] if URI_KEY in auth_context else auth_context.get(SAN_KEY, ())
    sites = {_text(v)[len(SITE_URI_PREFIX) :] for v in uris if _text(v).startswith(SITE_URI_PREFIX)}
    if len(sites) != 1:
        return None
    (site,) = sites
    if len(site) > MAX_ID_LENGTH or not re.fullmatch(ID_PATTERN, site):
        return None
    return site


# ---- grpc credentials


def server_credentials(cert: Path, key: Path, ca: Path | None, *, require_client_auth: bool) -> grpc.ServerCredentials:
    """TLS for a server; with `require_client_auth`, clients must present a certificate from `ca` (mTLS)."""
    if require_client_auth and ca is None:
        raise InvalidInput.one("ca", "requiring client certificates needs the CA that issues them")
    return grpc.ssl_server_credentials(
        [(Path(key).read_bytes(), Path(cert).read_bytes())],
        root_certificates=Path(ca).read_bytes() if ca is not None else None,
        require_client_auth=require_client_auth,
    )


def channel_credentials(ca: Path, cert: Path | None = None, key: Path | None = None) -> grpc.ChannelCredentials:
    """TLS for a client that trusts `ca`; with `cert` and `key` it also presents its own certificate (mTLS)."""
    if (cert is None) != (key is None):
        raise InvalidInput.one(
            "key" if key is None else "cert", "give both the client certificate and its key, or neither"
        )
    return grpc.ssl_channel_credentials(
        root_certificates=Path(ca).read_bytes(),
        private_key=Path(key).read_bytes() if key is not None else None,
        certificate_chain=Path(cert).read_bytes() if cert is not None else None,
    )


# ---- command line: `gridmesh certs init | issue | server`


def _fail(exc: InvalidInput | FailedPrecondition) -> int:
    if isinstance(exc, InvalidInput):
        for v in exc.violations:
            print(f"error {v.field}: {v.description}", file=sys.stderr)
    else:
        print(f"error {exc}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _written(
    make: Callable[[argparse.Namespace], CaFiles | IssuedFiles], what: Callable[[argparse.Namespace], str]
) -> Callable[[argparse.Namespace], int]:
    """A `certs` handler: make the files, say what was written, or name the bad field (exit 2)."""

    def handler(args: argparse.Namespace) -> int:
        try:
            files = make(args)
        except (InvalidInput, FailedPrecondition) as exc:
            return _fail(exc)
        print(f"{what(args)}: wrote {files.cert} and {files.key}")
        return 0

    return handler


_cmd_init = _written(lambda a: init_ca(Path(a.dir), force=a.force), lambda a: "CA (keep its key private)")
_cmd_issue = _written(
    lambda a: issue_site(Path(a.dir), a.site, days=a.days), lambda a: f"site {a.site} ({SITE_URI_PREFIX}{a.site})"
)
_cmd_server = _written(
    lambda a: issue_server(Path(a.dir), a.name, a.host, days=a.days),
    lambda a: f"server {a.name} for {', '.join(a.host)}",
)
_cmd_operator = _written(lambda a: issue_operator(Path(a.dir), a.name, days=a.days), lambda a: f"operator {a.name}")


def add_certs_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add `certs init|issue|server` to a parser's subparsers; each sets `func=handler(args) -> int`."""
    certs = subparsers.add_parser("certs", help="a CA and certificates for mTLS between site nodes and the portfolio")
    actions = certs.add_subparsers(dest="certs_action", required=True)
    init = actions.add_parser("init", help="create a CA (ca.pem, ca.key)")
    init.add_argument("--dir", default=DEFAULT_DIR, help=f"certificates folder (default {DEFAULT_DIR})")
    init.add_argument(
        "--force", action="store_true", help="replace an existing CA (every certificate it issued stops working)"
    )
    init.set_defaults(func=_cmd_init)
    issue = actions.add_parser("issue", help="a site node's client certificate (sites/<SITE_ID>.pem, .key)")
    issue.add_argument("--site", required=True, metavar="SITE_ID")
    issue.add_argument("--dir", default=DEFAULT_DIR, help=f"certificates folder (default {DEFAULT_DIR})")
    issue.add_argument("--days", type=int, default=825)
    issue.set_defaults(func=_cmd_issue)
    server = actions.add_parser("server", help="a server certificate (servers/<NAME>.pem, .key)")
    server.add_argument("--name", required=True)
    server.add_argument("--host", required=True, action="append", help="an IP address or DNS name; repeat for more")
    server.add_argument("--dir", default=DEFAULT_DIR, help=f"certificates folder (default {DEFAULT_DIR})")
    server.add_argument("--days", type=int, default=825)
    server.set_defaults(func=_cmd_server)
    operator = actions.add_parser("operator", help="an operator tool's client certificate (operators/<NAME>.pem, .key)")
    operator.add_argument("--name", required=True)
    operator.add_argument("--dir", default=DEFAULT_DIR, help=f"certificates folder (default {DEFAULT_DIR})")
    operator.add_argument("--days", type=int, default=825)
    operator.set_defaults(func=_cmd_operator)


def certs_command(args: argparse.Namespace, out: object = None) -> int:
    """services.cli's COMMANDS shape `(args, console) -> int`: runs the handler argparse picked."""
    return args.func(args)
