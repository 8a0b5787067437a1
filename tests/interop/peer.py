"""An independent DIDComm v2 peer agent for interoperability tests.

Written only against the public APIs of SICPA's `didcomm` (pack_encrypted,
unpack, SecretsResolver, DIDResolver) and `peerdid` (create/resolve
did:peer:2) libraries, plus `cryptography` for JWT signatures. It shares no
code or logic with agentd.

Protocols: Out-of-Band 2.0, Trust Ping 2.0, Discover Features 2.0, Report
Problem 2.0 and Issue Credential 3.0 with JWT credentials in the Hyperledger
Identus style (attachment format `prism/jwt`), as issuer and as holder, with
EdDSA (Ed25519 did:key) or ES256K (secp256k1 did:key) keys.

HTTP: `POST /didcomm` (application/didcomm-encrypted+json) answers 202 once the
message is unpacked; a worker thread handles it and sends any reply by HTTP
POST to the endpoint of the sender's did:peer:2 service.
"""
from __future__ import annotations

import asyncio
import base64
import fnmatch
import json
import queue
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Dict, List, Optional

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from didcomm.common.resolvers import ResolversConfig
from didcomm.did_doc.did_doc import DIDDoc
from didcomm.did_doc.did_resolver import DIDResolver
from didcomm.pack_encrypted import PackEncryptedConfig, pack_encrypted
from didcomm.secrets.secrets_resolver import SecretsResolver
from didcomm.secrets.secrets_util import (
    generate_ed25519_keys_as_jwk_dict,
    generate_x25519_keys_as_jwk_dict,
    jwk_to_secret,
)
from didcomm.unpack import unpack
from peerdid.dids import create_peer_did_numalgo_2, resolve_peer_did
from peerdid.keys import Ed25519VerificationKey, KeyFormat, X25519KeyAgreementKey

OOB_INVITATION = "https://didcomm.org/out-of-band/2.0/invitation"
PING = "https://didcomm.org/trust-ping/2.0/ping"
PING_RESPONSE = "https://didcomm.org/trust-ping/2.0/ping-response"
DF_QUERIES = "https://didcomm.org/discover-features/2.0/queries"
DF_DISCLOSE = "https://didcomm.org/discover-features/2.0/disclose"
PROBLEM_REPORT = "https://didcomm.org/report-problem/2.0/problem-report"
IC = "https://didcomm.org/issue-credential/3.0/"
IC_OFFER, IC_REQUEST, IC_ISSUE, IC_ACK = (IC + t for t in ("offer-credential", "request-credential", "issue-credential", "ack"))
IC_PREVIEW = IC + "credential-preview"
JWT_FORMAT = "prism/jwt"
ENCRYPTED_MT = "application/didcomm-encrypted+json"
PROTOCOLS = {  # what this peer discloses, with its roles
    "https://didcomm.org/out-of-band/2.0": ["sender", "receiver"],
    "https://didcomm.org/trust-ping/2.0": ["sender", "receiver"],
    "https://didcomm.org/discover-features/2.0": ["requester", "responder"],
    "https://didcomm.org/report-problem/2.0": ["notifier", "notified"],
    "https://didcomm.org/issue-credential/3.0": ["issuer", "holder"],
}
VC_CONTEXTS = ("https://www.w3.org/2018/credentials/v1", "https://www.w3.org/ns/credentials/v2")


# ---------------------------------------------------------------- encodings

def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def json_value(text: str):
    """An application/json attribute value: base64url of JSON (the convention), else JSON text."""
    try:
        return json.loads(b64u_decode(text))
    except ValueError:
        return json.loads(text)


def b64u_decode(text: str) -> bytes:
    """Base64 or base64url, padded or not (peers differ)."""
    text = text.strip().replace("+", "-").replace("/", "_").rstrip("=")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jdump(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def b58encode(data: bytes) -> str:
    n, out = int.from_bytes(data, "big"), ""
    while n:
        n, r = divmod(n, 58)
        out = B58[r] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def b58decode(text: str) -> bytes:
    n = 0
    for c in text:
        n = n * 58 + B58.index(c)
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * (len(text) - len(text.lstrip("1"))) + body


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def read_varint(data: bytes):
    n = shift = 0
    for i, byte in enumerate(data):
        n |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return n, data[i + 1:]
    raise ValueError("truncated varint")


# ------------------------------------------------------ did:key and JWS (JWT)

ED25519_PUB, SECP256K1_PUB = 0xED, 0xE7  # multicodec codes
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


class KeyDid:
    """A did:key with its private key: Ed25519 (EdDSA, z6Mk…) or secp256k1 (ES256K, zQ3s…)."""

    def __init__(self, alg: str = "EdDSA"):
        self.alg = alg
        if alg == "EdDSA":
            self.private = ed25519.Ed25519PrivateKey.generate()
            raw = self.private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            codec = ED25519_PUB
        elif alg == "ES256K":
            self.private = ec.generate_private_key(ec.SECP256K1())
            raw = self.private.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
            codec = SECP256K1_PUB
        else:
            raise ValueError(f"unsupported alg {alg}")
        self.fragment = "z" + b58encode(varint(codec) + raw)
        self.did = "did:key:" + self.fragment
        self.kid = self.did + "#" + self.fragment

    def sign_jwt(self, payload: dict, typ: str = "JWT") -> str:
        header = {"alg": self.alg, "typ": typ, "kid": self.kid}
        signing_input = (b64u(jdump(header)) + "." + b64u(jdump(payload))).encode()
        if self.alg == "EdDSA":
            sig = self.private.sign(signing_input)
        else:  # JWS ES256K: raw r||s (RFC 8812), s normalised to the low half
            r, s = decode_dss_signature(self.private.sign(signing_input, ec.ECDSA(hashes.SHA256())))
            s = min(s, SECP256K1_N - s)
            sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return signing_input.decode() + "." + b64u(sig)


def did_key_public_key(did: str):
    """(alg, public key) of a did:key (a DID URL's fragment is ignored)."""
    did = did.split("#")[0]
    if not did.startswith("did:key:z"):
        raise ValueError(f"not a base58btc did:key: {did}")
    codec, raw = read_varint(b58decode(did[len("did:key:z"):]))
    if codec == ED25519_PUB and len(raw) == 32:
        return "EdDSA", ed25519.Ed25519PublicKey.from_public_bytes(raw)
    if codec == SECP256K1_PUB and len(raw) == 33:
        return "ES256K", ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), raw)
    raise ValueError(f"unsupported did:key multicodec 0x{codec:x} ({len(raw)} bytes)")


def decode_jwt(token: str):
    head, body, sig = token.split(".")
    return json.loads(b64u_decode(head)), json.loads(b64u_decode(body)), b64u_decode(sig), (head + "." + body).encode()


def verify_jwt(token: str, signer_did: str):
    """Checks a compact JWS against a did:key; returns (header, payload) or raises ValueError."""
    header, payload, sig, signing_input = decode_jwt(token)
    alg, key = did_key_public_key(signer_did)
    if header.get("alg") != alg:
        raise ValueError(f"JWT alg {header.get('alg')!r} does not fit the {alg} key of {signer_did}")
    if header.get("kid") and header["kid"].split("#")[0] != signer_did:
        raise ValueError(f"JWT kid {header['kid']} is not a key of {signer_did}")
    try:
        if alg == "EdDSA":
            key.verify(sig, signing_input)
        else:
            if len(sig) != 64:
                raise ValueError(f"ES256K signature of {len(sig)} bytes, expected 64 (r||s)")
            der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
            key.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise ValueError(f"bad {alg} signature by {signer_did}") from None
    return header, payload


# --------------------------------------------- resolvers for the didcomm library

class Secrets(SecretsResolver):
    def __init__(self):
        self.keys = {}

    def add(self, jwk: dict, kid: str):
        self.keys[kid] = jwk_to_secret({**jwk, "kid": kid})

    async def get_key(self, kid):
        return self.keys.get(str(kid))

    async def get_keys(self, kids):
        return [k for k in kids if str(k) in self.keys]


def peer_did_doc(did: str, kid_style: str = "peerdid") -> dict:
    """The did:peer:2 document from peerdid, with JWK keys and absolute key ids
    (the didcomm library wants `did#…`; peerdid 0.5 gives relative ones).
    kid_style "peerdid": peerdid 0.5's own ids, `#` + the first 8 characters of
    the key's multibase after `z` (e.g. `#6LSbysY2`); "spec": `#key-1`,
    `#key-2`… in the order the keys appear in the DID (current peer DID spec)."""
    doc = resolve_peer_did(did, KeyFormat.JWK).serialize()
    rename = {}
    for i, vm in enumerate(doc.get("verificationMethod", [])):
        rename[vm["id"]] = did + (f"#key-{i + 1}" if kid_style == "spec" else vm["id"])
        vm["id"] = rename[vm["id"]]
    for rel in ("authentication", "assertionMethod", "keyAgreement", "capabilityInvocation", "capabilityDelegation"):
        if rel in doc:
            doc[rel] = [rename.get(r, r) for r in doc[rel]]
    return doc


class PeerDidResolver(DIDResolver):
    """did:peer:2 for the didcomm library (see peer_did_doc). Services are left
    out: the library's model of them (DIDComm v2.0, a flat serviceEndpoint
    string) does not fit DIDComm v2.1 `{uri, accept}` endpoints, so this peer
    reads the endpoint itself (service_endpoint) and packs without forward."""

    def __init__(self, kid_style: str = "peerdid"):
        self.kid_style = kid_style

    async def resolve(self, did):
        if not str(did).startswith("did:peer:2"):
            return None
        doc = peer_did_doc(str(did), self.kid_style)
        doc.pop("service", None)
        return DIDDoc.deserialize(doc)


def service_endpoint(did: str) -> str:
    """The URI of the first DIDCommMessaging service accepting didcomm/v2 (both
    the v2.1 object form and the older flat form, abbreviated or not)."""
    for svc in resolve_peer_did(did).serialize().get("service", []):
        if svc.get("type") not in ("DIDCommMessaging", "dm"):
            continue
        eps = svc.get("serviceEndpoint")
        for ep in eps if isinstance(eps, list) else [eps]:
            if isinstance(ep, str):
                uri, accept = ep, svc.get("accept", svc.get("a"))
            elif isinstance(ep, dict):
                uri, accept = ep.get("uri"), ep.get("accept", ep.get("a"))
            else:
                continue
            if uri and (accept is None or "didcomm/v2" in accept):
                return uri
    raise ValueError(f"no DIDCommMessaging service in {did}")


def run(coro):
    return asyncio.run(coro)


# ----------------------------------------------------------------- the agent

class Peer:
    """One agent: its did:peer:2 connections, its threads, its HTTP endpoint."""

    def __init__(self, name: str = "sicpa-peer", kid_style: str = "peerdid", legacy_service: bool = False):
        self.name, self.kid_style, self.legacy_service = name, kid_style, legacy_service
        self.secrets = Secrets()
        self.resolvers = ResolversConfig(secrets_resolver=self.secrets, did_resolver=PeerDidResolver(kid_style))
        self.lock = threading.Condition(threading.RLock())
        self.log: List[dict] = []  # {"dir": "in"/"out", "msg": plaintext, "skid"/"kids": …}
        self.invitations: Dict[str, str] = {}  # invitation id -> our DID
        self.connections: List[dict] = []  # {our_did, their_did, state, role, invitation_id}
        self.pings: Dict[str, Optional[float]] = {}  # ping id -> response time (None: none yet)
        self.disclosures: Dict[str, list] = {}  # query id -> disclosures
        self.problems: List[dict] = []  # problem reports received
        self.records: Dict[str, dict] = {}  # thid -> issue-credential record
        self.credentials: List[dict] = []  # verified VC-JWTs held
        self.errors: List[str] = []  # inbound messages this peer could not handle
        self.issuer_keys: Dict[str, KeyDid] = {}
        self.auto_issue = True
        self.inbox: "queue.Queue" = queue.Queue()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}/didcomm"

    # ---- lifecycle

    def start(self) -> "Peer":
        threading.Thread(target=self.server.serve_forever, name=f"{self.name}-http", daemon=True).start()
        threading.Thread(target=self._worker, name=f"{self.name}-worker", daemon=True).start()
        return self

    def stop(self):
        self.inbox.put(None)
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                if self.path.split("?")[0] != "/didcomm":
                    return self._answer(404)
                ctype = self.headers.get("Content-Type", "").split(";")[0].strip()
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if ctype not in (ENCRYPTED_MT, "didcomm-encrypted+json"):
                    peer._error(f"POST /didcomm with content type {ctype!r}")
                    return self._answer(415)
                try:
                    envelope = json.loads(body)
                    res = run(unpack(peer.resolvers, envelope))
                except Exception as e:  # noqa: BLE001 - report any unpack failure
                    peer._error(f"unpack failed: {type(e).__name__}: {e}")
                    return self._answer(400)
                self._answer(202)
                peer.inbox.put((res, envelope))

            def _answer(self, code):
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Handler

    def _error(self, text: str):
        with self.lock:
            self.errors.append(text)
            self.lock.notify_all()

    def _worker(self):
        while (item := self.inbox.get()) is not None:
            res, envelope = item
            try:
                self._receive(res, envelope)
            except Exception as e:  # noqa: BLE001 - keep serving, record the failure
                self._error(f"handling {res.message.type}: {type(e).__name__}: {e}")

    # ---- sending

    def new_did(self) -> str:
        """A fresh did:peer:2 (Ed25519 V, X25519 E, a DIDCommMessaging service)."""
        ed_priv, ed_pub = generate_ed25519_keys_as_jwk_dict()
        x_priv, x_pub = generate_x25519_keys_as_jwk_dict()
        if self.legacy_service:  # DIDComm v2.0 / peerdid README form
            service = {"type": "DIDCommMessaging", "serviceEndpoint": self.endpoint, "accept": ["didcomm/v2"], "routingKeys": []}
        else:  # DIDComm v2.1 form
            service = {"type": "DIDCommMessaging", "serviceEndpoint": {"uri": self.endpoint, "accept": ["didcomm/v2"], "routingKeys": []}}
        did = str(create_peer_did_numalgo_2([X25519KeyAgreementKey.from_jwk(dict(x_pub))],
                                            [Ed25519VerificationKey.from_jwk(dict(ed_pub))], service))
        for vm in peer_did_doc(did, self.kid_style)["verificationMethod"]:
            priv = ed_priv if vm["publicKeyJwk"]["x"] == ed_pub["x"] else x_priv
            self.secrets.add(priv, vm["id"])
        return did

    def send(self, our_did: str, their_did: str, type_: str, body: dict, **headers) -> dict:
        msg = {"id": str(uuid.uuid4()), "type": type_, "from": our_did, "to": [their_did],
               "created_time": int(time.time()), "body": body}
        msg.update({k: v for k, v in headers.items() if v is not None})
        packed = run(pack_encrypted(self.resolvers, msg, to=their_did, frm=our_did,
                                    pack_config=PackEncryptedConfig(forward=False)))
        protected = json.loads(b64u_decode(json.loads(packed.packed_msg)["protected"]))
        with self.lock:
            self.log.append({"dir": "out", "msg": msg, "skid": protected.get("skid"), "kids": [str(k) for k in packed.to_kids]})
        req = urllib.request.Request(service_endpoint(their_did), data=packed.packed_msg.encode(),
                                     headers={"Content-Type": ENCRYPTED_MT}, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                status = resp.status
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"{type_.rsplit('/', 1)[-1]}: POST {req.full_url} answered {e.code} "
                               f"{e.read()[:200].decode(errors='replace')!r}") from None
        if status // 100 != 2:
            raise RuntimeError(f"{type_.rsplit('/', 1)[-1]}: POST {req.full_url} answered {status}")
        return msg

    def _reply(self, to: dict, type_: str, body: dict, **headers) -> dict:
        ours = next(d for d in to["to"] if any(k.startswith(d + "#") for k in self.secrets.keys))
        return self.send(ours, to["from"], type_, body, **headers)

    def report_problem(self, our_did, their_did, code, comment, pthid=None, thid=None, args=None):
        return self.send(our_did, their_did, PROBLEM_REPORT, {"code": code, "comment": comment, "args": args or []},
                         pthid=pthid, thid=thid)

    # ---- waiting

    def wait(self, what: str, check: Callable[[], object], timeout: float = 10.0):
        """Waits until check() is truthy and returns it; TimeoutError names `what`."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while not (value := check()):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"peer: no {what} after {timeout:g}s")
                self.lock.wait(min(left, 0.2))
            return value

    def wait_record(self, thid: str, *states: str, timeout: float = 10.0) -> dict:
        def check():
            rec = self.records.get(thid)
            return rec if rec and rec["state"] in states else None
        try:
            return self.wait(f"record {thid} in {'/'.join(states)}", check, timeout)
        except TimeoutError as e:
            rec = self.records.get(thid)
            raise TimeoutError(f"{e} (it is {rec['state'] if rec else 'missing'}"
                               f"{'; problem: ' + str(rec.get('problem')) if rec and rec.get('problem') else ''})") from None

    # ---- Out-of-Band 2.0 and connections

    def create_invitation(self, goal_code: Optional[str] = None, goal: Optional[str] = None):
        did = self.new_did()
        inv = {"id": str(uuid.uuid4()), "type": OOB_INVITATION, "from": did,
               "body": {"goal_code": goal_code, "goal": goal, "accept": ["didcomm/v2"]}}
        inv["body"] = {k: v for k, v in inv["body"].items() if v is not None}
        with self.lock:
            self.invitations[inv["id"]] = did
        return self.endpoint + "?_oob=" + b64u(jdump(inv)), inv

    def accept_invitation(self, url: str) -> dict:
        oob = urllib.parse.parse_qs(urllib.parse.urlparse(url).query).get("_oob")
        if not oob:
            raise ValueError(f"no _oob parameter in {url}")
        inv = json.loads(b64u_decode(oob[0]))
        if inv.get("type") != OOB_INVITATION:
            raise ValueError(f"not an OOB 2.0 invitation: {inv.get('type')}")
        if "didcomm/v2" not in inv.get("body", {}).get("accept", ["didcomm/v2"]):
            raise ValueError(f"invitation does not accept didcomm/v2: {inv['body']}")
        # The ping is registered before it is sent: the response can arrive
        # (agentd answers at once) before the POST returns.
        ping_id = str(uuid.uuid4())
        conn = {"our_did": self.new_did(), "their_did": inv["from"], "state": "requested",
                "role": "invitee", "invitation_id": inv["id"], "invitation": inv, "ping_id": ping_id}
        with self.lock:
            self.connections.append(conn)
            self.pings[ping_id] = None
        self.send(conn["our_did"], conn["their_did"], PING, {"response_requested": True}, pthid=inv["id"], id=ping_id)
        return conn

    def connection(self, their_did: str = None, invitation_id: str = None, timeout: float = 10.0) -> dict:
        """Waits for an active connection with that peer DID or made from that invitation."""
        return self.wait(f"active connection ({their_did or invitation_id})", lambda: next(
            (c for c in self.connections if c["state"] == "active"
             and (their_did is None or c["their_did"] == their_did)
             and (invitation_id is None or c["invitation_id"] == invitation_id)), None), timeout)

    def _connection_for(self, msg: dict) -> Optional[dict]:
        return next((c for c in self.connections if c["our_did"] in msg.get("to", [])
                     and c["their_did"] == msg.get("from")), None)

    # ---- Trust Ping 2.0 and Discover Features 2.0

    def ping(self, conn: dict, timeout: float = 10.0) -> float:
        start = time.monotonic()
        ping_id = str(uuid.uuid4())
        with self.lock:
            self.pings[ping_id] = None
        self.send(conn["our_did"], conn["their_did"], PING, {"response_requested": True}, id=ping_id)
        self.wait(f"ping-response to {ping_id}", lambda: self.pings.get(ping_id), timeout)
        return self.pings[ping_id] - start

    def query_features(self, conn: dict, match: str = "*", timeout: float = 10.0) -> list:
        q = self.send(conn["our_did"], conn["their_did"], DF_QUERIES,
                      {"queries": [{"feature-type": "protocol", "match": match}]})
        return self.wait(f"disclose for query {q['id']}", lambda: self.disclosures.get(q["id"]), timeout)

    # ---- Issue Credential 3.0

    def issuer_key(self, alg: str) -> KeyDid:
        with self.lock:
            if alg not in self.issuer_keys:
                self.issuer_keys[alg] = KeyDid(alg)
            return self.issuer_keys[alg]

    def offer_credential(self, conn: dict, claims: dict, types=("VerifiableCredential",), alg: str = "EdDSA",
                         schema_ids=None, validity_secs: int = 3600, include_credential: bool = False,
                         comment: Optional[str] = None) -> str:
        issuer = self.issuer_key(alg)
        # A JSON value is base64url-encoded (WACI Issue Credential 3.0, Identus).
        attrs = [{"name": k, "value": v} if isinstance(v, str) else
                 {"name": k, "value": b64u(json.dumps(v).encode()), "media_type": "application/json"}
                 for k, v in claims.items()]
        preview = {"type": IC_PREVIEW, "body": {"attributes": attrs}}
        if schema_ids:
            preview["schema_ids"] = list(schema_ids)
        options = {"challenge": str(uuid.uuid4()), "domain": issuer.did}
        data = {"options": options}
        if include_credential:
            data["credential"] = {"issuer": issuer.did, "type": list(types), "claims": claims}
        body = {"goal_code": "Offer Credential", "credential_preview": preview}
        if comment:
            body["comment"] = comment
        att = {"id": str(uuid.uuid4()), "media_type": "application/json", "format": JWT_FORMAT, "data": {"json": data}}
        msg_id = str(uuid.uuid4())
        with self.lock:  # the record exists before the offer leaves, so a quick answer finds it
            self.records[msg_id] = {"thid": msg_id, "role": "issuer", "state": "OfferPending", "our_did": conn["our_did"],
                                    "their_did": conn["their_did"], "claims": claims, "types": list(types), "alg": alg,
                                    "options": options, "validity": validity_secs, "schema_ids": schema_ids}
        msg = {"id": msg_id, "type": IC_OFFER, "from": conn["our_did"], "to": [conn["their_did"]],
               "created_time": int(time.time()), "body": body, "attachments": [att]}
        self._send_raw(msg, conn["their_did"])
        self._set_state(msg_id, "OfferSent", expect=("OfferPending",))
        return msg_id

    def _send_raw(self, msg: dict, their_did: str):
        """send() for a message built here in full (id chosen beforehand)."""
        self.send(msg["from"], their_did, msg["type"], msg["body"],
                  **{k: v for k, v in msg.items() if k not in ("from", "to", "type", "body", "created_time")})

    def _set_state(self, thid: str, state: str, expect=None, **fields):
        with self.lock:
            rec = self.records[thid]
            if expect is None or rec["state"] in expect:
                rec.update(state=state, **fields)
            self.lock.notify_all()

    def accept_offer(self, thid: str, alg: str = "EdDSA") -> dict:
        rec = self.records[thid]
        if rec["role"] != "holder" or rec["state"] != "OfferReceived":
            raise ValueError(f"accept_offer: record {thid} is {rec['role']} in {rec['state']}")
        subject = KeyDid(alg)
        options = rec["options"]
        proof = subject.sign_jwt({"iss": subject.did, "aud": options["domain"], "nonce": options["challenge"],
                                  "iat": int(time.time()), "exp": int(time.time()) + 300,
                                  "vp": {"@context": [VC_CONTEXTS[0]], "type": ["VerifiablePresentation"]}})
        att = {"id": str(uuid.uuid4()), "media_type": "application/json", "format": JWT_FORMAT,
               "data": {"base64": b64u(proof.encode())}}
        with self.lock:
            rec.update(state="RequestSent", subject=subject, proof=proof)
        self._send_raw({"id": str(uuid.uuid4()), "type": IC_REQUEST, "from": rec["our_did"], "thid": thid,
                        "body": {"goal_code": "Request Credential"}, "attachments": [att]}, rec["their_did"])
        return rec

    def reject(self, thid: str, reason: str = "rejected by the peer") -> dict:
        """Rejects an offer (holder) or a request (issuer) with a problem report."""
        rec = self.records[thid]
        self.report_problem(rec["our_did"], rec["their_did"], "e.p.req.rejected", reason, pthid=thid)
        self._set_state(thid, "ProblemReportSent", problem=reason)
        return rec

    def issue(self, thid: str) -> dict:
        rec = self.records[thid]
        if rec["role"] != "issuer" or rec["state"] != "RequestReceived":
            raise ValueError(f"issue: record {thid} is {rec['role']} in {rec['state']}")
        issuer, subject, now = self.issuer_key(rec["alg"]), rec["subject_did"], int(time.time())
        vc = {"@context": [VC_CONTEXTS[0]], "type": list(dict.fromkeys(["VerifiableCredential", *rec["types"]])),
              "credentialSubject": {"id": subject, **rec["claims"]}}
        if rec.get("schema_ids"):
            vc["credentialSchema"] = [{"id": s, "type": "JsonSchemaValidator2018"} for s in rec["schema_ids"]]
        payload = {"iss": issuer.did, "sub": subject, "nbf": now, "jti": f"urn:uuid:{uuid.uuid4()}", "vc": vc}
        if rec["validity"]:
            payload["exp"] = now + rec["validity"]
        jwt = issuer.sign_jwt(payload)
        att = {"id": str(uuid.uuid4()), "media_type": "application/json", "format": JWT_FORMAT,
               "data": {"base64": b64u(jwt.encode())}}
        self._set_state(thid, "CredentialSent", credential=jwt)
        self._send_raw({"id": str(uuid.uuid4()), "type": IC_ISSUE, "from": rec["our_did"], "thid": thid,
                        "please_ack": [""], "body": {"goal_code": "Issue Credential"}, "attachments": [att]},
                       rec["their_did"])
        return rec

    # ---- inbound

    def _receive(self, res, envelope):
        msg = res.message.as_dict()
        meta = res.metadata
        protected = json.loads(b64u_decode(envelope["protected"])) if "protected" in envelope else {}
        with self.lock:
            self.log.append({"dir": "in", "msg": msg, "skid": protected.get("skid"),
                             "kids": [r.get("header", {}).get("kid") for r in envelope.get("recipients", [])],
                             "authenticated": meta.authenticated})
        if not meta.authenticated or not meta.encrypted_from:
            return self._error(f"{msg.get('type')}: not authcrypted")
        if str(meta.encrypted_from).split("#")[0] != msg.get("from"):
            return self._error(f"{msg.get('type')}: skid {meta.encrypted_from} is not a key of from={msg.get('from')}")
        handler = {PING: self._on_ping, PING_RESPONSE: self._on_ping_response, DF_QUERIES: self._on_queries,
                   DF_DISCLOSE: self._on_disclose, PROBLEM_REPORT: self._on_problem, IC_OFFER: self._on_offer,
                   IC_REQUEST: self._on_request, IC_ISSUE: self._on_issue, IC_ACK: self._on_ack}.get(msg["type"])
        conn = self._connection_for(msg)
        if handler is None:
            self._error(f"unsupported message type {msg['type']}")
            if conn:
                self._reply(msg, PROBLEM_REPORT, {"code": "e.m.msg.unsupported",
                                                  "comment": f"unsupported message type {msg['type']}"}, pthid=msg["id"])
            return
        if conn is None and msg["type"] != PING:
            return self._error(f"{msg['type']} from {msg.get('from')}: no connection")
        handler(msg, conn)
        with self.lock:
            self.lock.notify_all()

    def _on_ping(self, msg, conn):
        if conn is None:  # the first message of an invitee, bound to our invitation by pthid
            with self.lock:
                our = self.invitations.pop(msg.get("pthid"), None)
                if our is None or our not in msg.get("to", []):
                    return self._error(f"ping from unknown {msg.get('from')} (pthid={msg.get('pthid')})")
                conn = {"our_did": our, "their_did": msg["from"], "state": "active", "role": "inviter",
                        "invitation_id": msg["pthid"], "first_ping": msg}
                self.connections.append(conn)
        if msg["body"].get("response_requested", True):
            self._reply(msg, PING_RESPONSE, {}, thid=msg["id"])

    def _on_ping_response(self, msg, conn):
        with self.lock:
            if msg.get("thid") in self.pings:
                self.pings[msg["thid"]] = time.monotonic()
            if conn["state"] == "requested" and conn.get("ping_id") == msg.get("thid"):
                conn["state"] = "active"

    def _on_queries(self, msg, conn):
        found = []
        for q in msg["body"].get("queries", []):
            if q.get("feature-type") == "protocol":
                found += [{"feature-type": "protocol", "id": p, "roles": r} for p, r in PROTOCOLS.items()
                          if fnmatch.fnmatchcase(p, q.get("match", "*")) and not any(d["id"] == p for d in found)]
        self._reply(msg, DF_DISCLOSE, {"disclosures": found}, thid=msg["id"])

    def _on_disclose(self, msg, conn):
        with self.lock:
            self.disclosures[msg.get("thid")] = msg["body"].get("disclosures", []) or [{"empty": True}]

    def _on_problem(self, msg, conn):
        with self.lock:
            self.problems.append(msg)
            rec = self.records.get(msg.get("pthid")) or self.records.get(msg.get("thid"))
            if rec and rec["their_did"] == msg["from"]:
                rec.update(state="ProblemReportReceived", problem=msg["body"])

    def _thread_of(self, msg, conn, role, states) -> Optional[dict]:
        rec = self.records.get(msg.get("thid"))
        if rec is None or rec["role"] != role or rec["their_did"] != conn["their_did"] or rec["state"] not in states:
            why = "unknown thread" if rec is None else f"thread in state {rec['state']} ({rec['role']})"
            self._error(f"{msg['type']} thid={msg.get('thid')}: {why}")
            self._reply(msg, PROBLEM_REPORT, {"code": "e.m.msg.unexpected", "comment": why}, pthid=msg.get("thid"))
            return None
        return rec

    def _on_offer(self, msg, conn):
        thid = msg.get("thid") or msg["id"]
        att = next((a for a in msg.get("attachments", []) if a.get("format") == JWT_FORMAT), None)
        data = att and att.get("data", {}).get("json")
        if isinstance(data, str):
            data = json.loads(data)
        options = (data or {}).get("options") or {}
        if not (options.get("challenge") and options.get("domain")):
            self._error(f"offer {thid}: no prism/jwt attachment with options.challenge/domain")
            self.report_problem(conn["our_did"], conn["their_did"], "e.p.msg.invalid-offer",
                                "offer has no prism/jwt attachment with options {challenge, domain}", pthid=thid)
            return
        with self.lock:
            self.records[thid] = {"thid": thid, "role": "holder", "state": "OfferReceived", "our_did": conn["our_did"],
                                  "their_did": conn["their_did"], "offer": msg, "options": options,
                                  "offer_credential": (data or {}).get("credential"),
                                  "preview": msg["body"].get("credential_preview") or {}}

    def _on_request(self, msg, conn):
        rec = self._thread_of(msg, conn, "issuer", ("OfferSent",))
        if rec is None:
            return
        try:
            att = next(a for a in msg.get("attachments", []) if a.get("format") == JWT_FORMAT)
            jwt = b64u_decode(att["data"]["base64"]).decode() if "base64" in att["data"] else att["data"]["json"]
            subject = decode_jwt(jwt)[1].get("iss", "")
            _, claims = verify_jwt(jwt, subject)
            aud = claims.get("aud")
            if rec["options"]["domain"] not in (aud if isinstance(aud, list) else [aud]):
                raise ValueError(f"proof aud {aud!r} is not our domain {rec['options']['domain']}")
            if claims.get("nonce") != rec["options"]["challenge"]:
                raise ValueError(f"proof nonce {claims.get('nonce')!r} is not our challenge")
            if claims.get("exp") and claims["exp"] < time.time():
                raise ValueError("proof expired")
        except (StopIteration, KeyError, ValueError) as e:
            why = f"invalid request: {'no prism/jwt attachment' if isinstance(e, StopIteration) else e}"
            self.report_problem(rec["our_did"], rec["their_did"], "e.p.req.invalid", why, pthid=rec["thid"])
            self._set_state(rec["thid"], "ProblemReportSent", problem=why, request=msg)
            return
        self._set_state(rec["thid"], "RequestReceived", request=msg, subject_did=subject, proof=jwt)
        if self.auto_issue:
            self.issue(rec["thid"])

    def _on_issue(self, msg, conn):
        rec = self._thread_of(msg, conn, "holder", ("RequestSent",))
        if rec is None:
            return
        try:
            jwt, claims = self._verify_credential(rec, msg)
        except (StopIteration, KeyError, ValueError) as e:
            why = f"invalid credential: {'no prism/jwt attachment' if isinstance(e, StopIteration) else e}"
            self.report_problem(rec["our_did"], rec["their_did"], "e.p.credential.invalid", why, pthid=rec["thid"])
            self._set_state(rec["thid"], "ProblemReportSent", problem=why, issued=msg)
            return
        with self.lock:
            self.credentials.append({"thid": rec["thid"], "jwt": jwt, "claims": claims})
        self._set_state(rec["thid"], "CredentialReceived", credential=jwt, issued=msg)
        if msg.get("please_ack"):  # DIDComm v2.1: ack only when asked
            self._reply(msg, IC_ACK, {"status": "OK"}, thid=rec["thid"])

    def _verify_credential(self, rec, msg):
        att = next(a for a in msg.get("attachments", []) if a.get("format") == JWT_FORMAT)
        jwt = b64u_decode(att["data"]["base64"]).decode() if "base64" in att["data"] else att["data"]["json"]
        issuer = decode_jwt(jwt)[1].get("iss")
        expected = rec["options"]["domain"]
        if issuer != expected:
            raise ValueError(f"iss {issuer!r} is not the offer's domain {expected!r}")
        oc = rec.get("offer_credential") or {}
        if oc.get("issuer") and oc["issuer"] != issuer:
            raise ValueError(f"iss {issuer!r} is not the offered issuer {oc['issuer']!r}")
        header, claims = verify_jwt(jwt, issuer)
        subject = rec["subject"].did
        vc = claims.get("vc") or {}
        cs = vc.get("credentialSubject") or {}
        if claims.get("sub") != subject or cs.get("id", subject) != subject:
            raise ValueError(f"subject {claims.get('sub')!r}/{cs.get('id')!r} is not our {subject}")
        if not set(vc.get("@context", [])) & set(VC_CONTEXTS) or "VerifiableCredential" not in vc.get("type", []):
            raise ValueError(f"not a W3C VC: @context={vc.get('@context')} type={vc.get('type')}")
        now = time.time()
        if claims.get("nbf", 0) > now + 60 or claims.get("exp", now + 1) <= now:
            raise ValueError(f"not valid now (nbf={claims.get('nbf')}, exp={claims.get('exp')})")
        for a in rec["preview"].get("body", {}).get("attributes", []):
            want = json_value(a["value"]) if a.get("media_type") == "application/json" else a["value"]
            if cs.get(a["name"]) != want:
                raise ValueError(f"claim {a['name']}={cs.get(a['name'])!r}, offered {want!r}")
        return jwt, claims

    def _on_ack(self, msg, conn):
        rec = self._thread_of(msg, conn, "issuer", ("CredentialSent",))
        if rec is not None:
            self._set_state(rec["thid"], "CredentialSent", ack_received=True, ack=msg)



def self_test() -> None:
    """Two peers against each other (`python peer.py`): the peer's own flows, without agentd."""
    for kid_style in ("peerdid", "spec"):
        a, b = Peer("a", kid_style).start(), Peer("b", kid_style, legacy_service=True).start()
        try:
            url, inv = a.create_invitation()
            conn_b = b.accept_invitation(url)
            conn_a = a.connection(their_did=conn_b["our_did"])
            b.connection(their_did=inv["from"])
            a.ping(conn_a), b.ping(conn_b)
            assert {d["id"] for d in b.query_features(conn_b)} == set(PROTOCOLS)
            for alg in ("EdDSA", "ES256K"):
                thid = a.offer_credential(conn_a, {"name": "Alice", "age": 30}, types=["X"], alg=alg)
                b.wait_record(thid, "OfferReceived")
                b.accept_offer(thid, alg)
                b.wait_record(thid, "CredentialReceived")
                a.wait("ack", lambda: a.records[thid].get("ack_received"))
            thid = a.offer_credential(conn_a, {"name": "Alice"})
            b.wait_record(thid, "OfferReceived")
            b.reject(thid, "no")
            a.wait_record(thid, "ProblemReportReceived")
            assert not a.errors and not b.errors, (a.errors, b.errors)
            print(f"peer self-test ({kid_style} kids): ok")
        finally:
            a.stop()
            b.stop()


if __name__ == "__main__":
    self_test()
