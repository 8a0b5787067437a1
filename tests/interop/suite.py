#!/usr/bin/env python3
"""Interop suite: agentd against an independent DIDComm v2 peer (peer.py, built
on SICPA's didcomm-python and peerdid).

    python tests/interop/suite.py --agentd PATH [--only NAME[,NAME]] [--expect-fail NAME,NAME]
                                  [--kid-style peerdid|spec] [--timeout SECS] [--log-dir DIR] [-v]

Each scenario starts a fresh agentd child process (temporary storage, OS-chosen
ports) and a fresh in-process peer, drives agentd over gRPC with stubs generated
at run time from ../../proto/agent/v1/*.proto, and checks both sides. Prints
`PASS name (ms)` / `FAIL name: reason` per scenario, then a markdown table, and
exits non-zero when a scenario failed (or passed while listed in --expect-fail).
"""
from __future__ import annotations

import argparse
import glob
import importlib
import importlib.metadata
import importlib.resources
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import warnings

import authlib.deprecate  # noqa: E402,F401  (it turns its warnings on; then this turns one off)

warnings.filterwarnings("ignore", message="authlib.jose module is deprecated")

sys.dont_write_bytecode = True  # no __pycache__ next to peer.py
HERE = os.path.dirname(os.path.abspath(__file__))
PROTO = os.path.normpath(os.path.join(HERE, "..", "..", "proto"))
sys.path.insert(0, HERE)

import grpc  # noqa: E402

import peer as P  # noqa: E402

# --------------------------------------------------------------- gRPC stubs


class Stubs:
    """agent.v1 modules generated with grpc_tools.protoc into a temp dir."""

    def __init__(self):
        from grpc_tools import protoc

        self.dir = tempfile.mkdtemp(prefix="agentd-interop-stubs-")
        protos = sorted(glob.glob(os.path.join(PROTO, "agent", "v1", "*.proto")))
        if not protos:
            raise SystemExit(f"no .proto files under {PROTO}/agent/v1")
        include = str(importlib.resources.files("grpc_tools") / "_proto")
        rc = protoc.main(["protoc", f"-I{PROTO}", f"-I{include}", f"--python_out={self.dir}",
                          f"--grpc_python_out={self.dir}", *protos])
        if rc != 0:
            raise SystemExit(f"protoc failed ({rc}) on {PROTO}")
        sys.path.insert(0, self.dir)
        self.modules, self.grpc_modules, self.services = {}, {}, {}
        for path in protos:
            name = os.path.splitext(os.path.basename(path))[0]
            mod = importlib.import_module(f"agent.v1.{name}_pb2")
            self.modules[mod.DESCRIPTOR.name] = mod
            self.grpc_modules[mod.DESCRIPTOR.name] = importlib.import_module(f"agent.v1.{name}_pb2_grpc")
            for svc in mod.DESCRIPTOR.services_by_name.values():
                self.services[svc.name] = svc

    def message(self, descriptor):
        return getattr(self.modules[descriptor.file.name], descriptor.name)

    def message_fields(self, name: str):
        for mod in self.modules.values():
            if name in mod.DESCRIPTOR.message_types_by_name:
                return mod.DESCRIPTOR.message_types_by_name[name].fields_by_name
        raise KeyError(name)

    def enum_values(self, name: str):
        for mod in self.modules.values():
            if name in mod.DESCRIPTOR.enum_types_by_name:
                return [v.name for v in mod.DESCRIPTOR.enum_types_by_name[name].values]
        return []

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def enum_name(msg, field: str) -> str:
    """The enum value name of msg.field without its type prefix (RECORD_STATE_OFFER_SENT -> OFFER_SENT)."""
    fd = msg.DESCRIPTOR.fields_by_name[field]
    name = fd.enum_type.values_by_number[getattr(msg, field)].name
    prefix = "".join("_" + c if c.isupper() else c for c in fd.enum_type.name).lstrip("_").upper() + "_"
    return name[len(prefix):] if name.startswith(prefix) else name


# ------------------------------------------------------------------ agentd


class Agentd:
    """One agentd child process with its temp dir, driven over gRPC."""

    def __init__(self, binary: str, stubs: Stubs, name: str = "agentd"):
        self.name, self.stubs = name, stubs
        self.dir = tempfile.mkdtemp(prefix=f"agentd-interop-{name}-")
        config = os.path.join(self.dir, "agent.toml")
        with open(config, "w") as f:
            f.write(f'[storage]\npath = "{self.dir}/agentd.sled"\n'
                    f'[keys]\nmaster_key_file = "{self.dir}/master.key"\n'
                    '[didcomm]\nlisten = "127.0.0.1:0"\n'
                    '[grpc]\nlisten = "127.0.0.1:0"\nauth = "none"\n'
                    '[outbox]\nbase_backoff_ms = 100\n')
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTD_")}
        self.stderr_path = os.path.join(self.dir, "agentd.log")
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen([binary, "run", "--config", config], stdout=subprocess.PIPE,
                                         stderr=err, stdin=subprocess.DEVNULL, env=env)
        ready = []
        reader = threading.Thread(target=self._read_stdout, args=(ready,), daemon=True)
        reader.start()
        deadline = time.monotonic() + 15
        while not ready and time.monotonic() < deadline and self.proc.poll() is None:
            time.sleep(0.02)
        if not ready:
            self.stop()
            raise RuntimeError(f"agentd did not print its ready line (exit {self.proc.poll()}): {self.log_tail()}")
        fields = dict(kv.split("=", 1) for kv in ready[0].split()[2:])
        self.didcomm, self.grpc_addr, self.endpoint = fields["didcomm"], fields["grpc"], fields["endpoint"]
        self.channel = grpc.insecure_channel(self.grpc_addr)
        grpc.channel_ready_future(self.channel).result(timeout=10)
        self._stubs = {}
        for svc in stubs.services.values():
            cls = getattr(stubs.grpc_modules[svc.file.name], svc.name + "Stub")
            self._stubs[svc.name] = cls(self.channel)

    def _read_stdout(self, ready: list):
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").strip()
            if line.startswith("agentd ready ") and not ready:
                ready.append(line)

    def call(self, method: str, timeout: float = 10.0, **fields):
        """call("IssuanceService.CreateOffer", connection_id=…): builds the request from the proto."""
        svc, rpc = method.split(".")
        descriptor = self.stubs.services[svc].methods_by_name[rpc]
        request = self.stubs.message(descriptor.input_type)(**fields)
        return getattr(self._stubs[svc], rpc)(request, timeout=timeout)

    def log_tail(self, n: int = 5) -> str:
        try:
            with open(self.stderr_path, errors="replace") as f:
                lines = [ln.strip() for ln in f if " WARN " in ln or " ERROR " in ln or "refused" in ln]
            return " | ".join(lines[-n:])
        except OSError:
            return ""

    def stop(self, kill: bool = False):
        if getattr(self, "channel", None):  # first: agentd's graceful stop waits for open gRPC connections
            self.channel.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ------------------------------------------------------------- scenario kit


class Failure(AssertionError):
    pass


def check(cond, what: str):
    if not cond:
        raise Failure(what)


def wait_for(what: str, probe, timeout: float = 10.0, interval: float = 0.05):
    """Polls probe() until it returns something truthy; Failure names what and the last value."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise Failure(f"timed out after {timeout:g}s waiting for {what}")


TERMINAL = ("PROBLEM_REPORT_SENT", "PROBLEM_REPORT_RECEIVED", "ABANDONED")


class Ctx:
    """What one scenario runs with: agentd processes, peers, the current step, notes."""

    def __init__(self, opts, stubs: Stubs):
        self.opts, self.stubs = opts, stubs
        self.agents, self.peers, self.notes, self.soft = [], [], [], []
        self.step = "starting"

    def agentd(self, name: str = "agentd") -> Agentd:
        self.step = f"starting {name}"
        a = Agentd(self.opts.agentd, self.stubs, name)
        self.agents.append(a)
        return a

    def peer(self, **kw) -> P.Peer:
        p = P.Peer(kid_style=self.opts.kid_style, **kw).start()
        self.peers.append(p)
        return p

    def note(self, text: str):
        self.notes.append(text)

    def expect(self, cond, what: str):
        """A check that fails the scenario at its end but lets the flow go on."""
        if not cond:
            self.soft.append(what)

    def close(self, failed: bool, name: str):
        if self.opts.log_dir:
            os.makedirs(self.opts.log_dir, exist_ok=True)
            for i, p in enumerate(self.peers):
                with open(os.path.join(self.opts.log_dir, f"{name}.peer{i}.json"), "w") as f:
                    json.dump({"errors": p.errors, "messages": p.log}, f, indent=1, default=str)
            for a in self.agents:
                if os.path.exists(a.stderr_path):
                    shutil.copy(a.stderr_path, os.path.join(self.opts.log_dir, f"{name}.{a.name}.log"))
        for p in self.peers:
            p.stop()
        for a in self.agents:
            a.stop(kill=failed)
            shutil.rmtree(a.dir, ignore_errors=True)


def record(ag: Agentd, record_id: str):
    return ag.call("IssuanceService.GetRecord", record_id=record_id)


def wait_record(ag: Agentd, record_id: str, state: str, timeout: float = 10.0, ack: bool = False):
    """Waits for agentd's record in `state` (short name); fails at once on another terminal state."""
    last = {}

    def probe():
        rec = record(ag, record_id)
        last["rec"] = rec
        st = enum_name(rec, "state")
        if st != state and st in TERMINAL:
            raise Failure(f"agentd record {record_id} ended {st} (waiting for {state}): {rec.problem}")
        return rec if st == state and (not ack or rec.ack_received) else None
    try:
        return wait_for(f"agentd record in {state}{' with ack_received' if ack else ''}", probe, timeout)
    except Failure as e:
        rec = last.get("rec")
        extra = f" (it is {enum_name(rec, 'state')}, ack_received={rec.ack_received}, problem={rec.problem!r}, " \
                f"last failure={rec.meta_last_failure!r})" if rec is not None and "ended" not in str(e) else ""
        raise Failure(f"{e}{extra}") from None


def peer_record(p: P.Peer, thid: str, *states: str, timeout: float = 10.0) -> dict:
    """Waits for the peer's record in one of `states`; fails at once on a problem-report state."""
    end = ("ProblemReportSent", "ProblemReportReceived")
    try:
        rec = p.wait_record(thid, *states, *[s for s in end if s not in states], timeout=timeout)
    except TimeoutError as e:
        raise Failure(f"{e}; peer errors: {p.errors[-2:]}" if p.errors else str(e)) from None
    if rec["state"] not in states:
        raise Failure(f"peer record {thid} ended {rec['state']}: {rec.get('problem')}")
    return rec


def agentd_holder_record(ag: Agentd, thid: str, state: str = "OFFER_RECEIVED", timeout: float = 10.0):
    def probe():
        recs = ag.call("IssuanceService.ListRecords", role="ROLE_HOLDER", thid=thid).records
        return recs[0] if recs else None
    rec = wait_for(f"agentd holder record for thread {thid}", probe, timeout)
    return wait_record(ag, rec.id, state, timeout)


def connect(ctx: Ctx, inviter: str = "agentd", **peer_kw):
    """A fresh agentd and peer, connected with an OOB invitation by `inviter`; (ag, peer, agentd conn, peer conn)."""
    ag, p = ctx.agentd(), ctx.peer(**peer_kw)
    ctx.step = f"connecting ({inviter} invites)"
    if inviter == "agentd":
        inv = ag.call("ConnectionService.CreateInvitation", label="interop")
        pc = p.accept_invitation(inv.invitation_url)
        conn_id = inv.connection.id
        try:
            p.connection(invitation_id=pc["invitation_id"])
        except TimeoutError as e:
            raise Failure(f"{e} (peer errors: {p.errors[-1:]}; agentd: {ag.log_tail(1)})") from None
    else:
        url, inv = p.create_invitation()
        conn_id = ag.call("ConnectionService.AcceptInvitation", invitation_url=url, label="interop").id
        try:
            pc = p.connection(invitation_id=inv["id"])
        except TimeoutError as e:
            raise Failure(f"{e} (peer errors: {p.errors[-1:]}; agentd: {ag.log_tail(1)})") from None
    conn = wait_for("agentd connection ACTIVE", lambda: (
        c if enum_name(c := ag.call("ConnectionService.GetConnection", connection_id=conn_id), "state") == "ACTIVE"
        else None))
    check(conn.their_did == pc["our_did"] and conn.our_did == pc["their_did"],
          f"connection DIDs differ: agentd ({conn.our_did}, {conn.their_did}) vs peer ({pc['their_did']}, {pc['our_did']})")
    return ag, p, conn, pc


def sent(p: P.Peer, type_: str, **match) -> list:
    return [e["msg"] for e in p.log if e["dir"] == "out" and e["msg"]["type"] == type_
            and all(e["msg"].get(k) == v for k, v in match.items())]


def received(p: P.Peer, type_: str, **match) -> list:
    return [e["msg"] for e in p.log if e["dir"] == "in" and e["msg"]["type"] == type_
            and all(e["msg"].get(k) == v for k, v in match.items())]


# --------------------------------------------------------------- scenarios

SCENARIOS = []


def scenario(fn):
    SCENARIOS.append(fn)
    return fn


@scenario
def oob_agentd_invites(ctx: Ctx):
    ag, p = ctx.agentd(), ctx.peer()
    ctx.step = "CreateInvitation"
    res = ag.call("ConnectionService.CreateInvitation", label="interop", goal_code="interop.test")
    check(res.invitation_url.startswith(ag.endpoint + "?_oob="), f"invitation URL {res.invitation_url[:80]}… "
          f"is not <endpoint>?_oob=… (endpoint {ag.endpoint})")
    inv = json.loads(P.b64u_decode(res.invitation_url.split("_oob=", 1)[1]))
    check(inv == json.loads(res.invitation_json), "invitation_json differs from the URL's invitation")
    check(inv.get("type") == P.OOB_INVITATION, f"invitation type {inv.get('type')}")
    check(inv.get("id") == res.connection.invitation_id, "invitation id is not the connection's invitation_id")
    check(inv.get("from", "").startswith("did:peer:2") and inv["from"] == res.connection.our_did,
          f"invitation from {inv.get('from')} is not the connection's did:peer:2")
    check("didcomm/v2" in inv.get("body", {}).get("accept", []), f"body.accept {inv.get('body')}")
    check(P.service_endpoint(inv["from"]) == ag.endpoint, f"inviter DID endpoint {P.service_endpoint(inv['from'])}")
    check(enum_name(res.connection, "state") == "INVITATION_SENT", f"state {enum_name(res.connection, 'state')}")
    ctx.step = "peer accepts"
    pc = p.accept_invitation(res.invitation_url)
    try:
        p.connection(invitation_id=inv["id"])
    except TimeoutError as e:
        raise Failure(f"{e} (peer errors: {p.errors[-1:]}; agentd: {ag.log_tail(1)})") from None
    resp = received(p, P.PING_RESPONSE, thid=pc["ping_id"])
    check(resp and resp[0].get("from") == inv["from"], f"ping-response {resp}")
    conn = wait_for("agentd connection ACTIVE", lambda: (c if enum_name(
        c := ag.call("ConnectionService.GetConnection", connection_id=res.connection.id), "state") == "ACTIVE" else None))
    check(conn.their_did == pc["our_did"] and enum_name(conn, "role") == "INVITER", f"agentd connection {conn}")


@scenario
def oob_peer_invites(ctx: Ctx):
    ag, p = ctx.agentd(), ctx.peer()
    url, inv = p.create_invitation(goal_code="interop.test")
    ctx.step = "AcceptInvitation"
    conn = ag.call("ConnectionService.AcceptInvitation", invitation_url=url, label="interop")
    check(conn.their_did == inv["from"], f"agentd their_did {conn.their_did} is not the invitation's from")
    check(enum_name(conn, "role") == "INVITEE", f"role {enum_name(conn, 'role')}")
    try:
        pc = p.connection(invitation_id=inv["id"])
    except TimeoutError as e:
        raise Failure(f"{e} (peer errors: {p.errors[-1:]}; agentd: {ag.log_tail(1)})") from None
    first = pc["first_ping"]
    check(first.get("pthid") == inv["id"], f"first message pthid {first.get('pthid')} is not the invitation id")
    check(first["body"].get("response_requested") is True, f"ping body {first['body']}")
    check(first["from"] == conn.our_did, "ping not from agentd's connection DID")
    wait_for("agentd connection ACTIVE", lambda: enum_name(
        ag.call("ConnectionService.GetConnection", connection_id=conn.id), "state") == "ACTIVE")


@scenario
def oob_legacy_service(ctx: Ctx):
    """Both directions with a peer whose did:peer:2 service is the DIDComm v2.0 flat form
    ({"t":"dm","s":"http://…","a":["didcomm/v2"]}, as peerdid's README builds it)."""
    connect(ctx, "agentd", legacy_service=True)
    connect(ctx, "peer", legacy_service=True)


@scenario
def ping_both_ways(ctx: Ctx):
    ag, p, conn, pc = connect(ctx)
    ctx.step = "agentd pings"
    res = ag.call("ConnectionService.Ping", connection_id=conn.id, wait_ms=5000)
    check(res.response_received, f"agentd got no ping-response to {res.ping_id}")
    ping = received(p, P.PING, id=res.ping_id)
    check(ping and ping[0]["body"].get("response_requested") is True, f"agentd's ping {ping}")
    check(sent(p, P.PING_RESPONSE, thid=res.ping_id), "peer did not answer agentd's ping")
    ctx.step = "peer pings"
    try:
        rtt = p.ping(pc)
    except TimeoutError as e:
        raise Failure(str(e)) from None
    ctx.note(f"round trips: agentd->peer {res.round_trip_ms} ms, peer->agentd {rtt * 1000:.0f} ms")


@scenario
def discover_features(ctx: Ctx):
    ag, p, conn, pc = connect(ctx)
    ctx.step = "agentd queries the peer"
    got = set(ag.call("ConnectionService.DiscoverFeatures", connection_id=conn.id, match="", wait_ms=5000).protocols)
    ctx.expect(got == set(P.PROTOCOLS), f"agentd saw {sorted(got)}, the peer disclosed {sorted(P.PROTOCOLS)}")
    got = list(ag.call("ConnectionService.DiscoverFeatures", connection_id=conn.id,
                       match="https://didcomm.org/issue-credential/*", wait_ms=5000).protocols)
    ctx.expect(got == ["https://didcomm.org/issue-credential/3.0"], f"match issue-credential/*: {got}")
    ctx.step = "the peer queries agentd"
    try:
        disclosed = p.query_features(pc, "https://didcomm.org/*")
        pings = p.query_features(pc, "https://didcomm.org/trust-ping/*")
    except TimeoutError as e:
        raise Failure(str(e)) from None
    ids = sorted(d.get("id") for d in disclosed if d.get("feature-type") == "protocol")
    want = {"https://didcomm.org/out-of-band/2.0", "https://didcomm.org/trust-ping/2.0",
            "https://didcomm.org/discover-features/2.0", "https://didcomm.org/report-problem/2.0",
            "https://didcomm.org/issue-credential/3.0"}
    ctx.expect(want <= set(ids), f"agentd does not disclose {sorted(want - set(ids))} (it disclosed {ids})")
    ping_ids = [d.get("id") for d in pings]
    check(ping_ids and all(i.startswith("https://didcomm.org/trust-ping/") for i in ping_ids),
          f"query trust-ping/* disclosed {ping_ids}")
    ctx.note("agentd discloses: " + ", ".join(f"{d.get('id')} {d.get('roles', '')}" for d in disclosed))


CLAIMS = {"name": "Alice", "degree": "BSc", "year": 2024}


def agentd_issues(ctx: Ctx, alg: str):
    """agentd offers (automatic issuance), the peer requests with an `alg` proof, verifies and acks."""
    ag, p, conn, pc = connect(ctx)
    extra = {}
    if alg == "ES256K":
        extra = es256k_choice(ctx, ag, "issuer")
    ctx.step = "CreateOffer"
    offer = ag.call("IssuanceService.CreateOffer", connection_id=conn.id, claims_json=json.dumps(CLAIMS),
                    types=["UniversityDegreeCredential"], validity_period_secs=3600, automatic_issuance=True,
                    **extra)
    ctx.step = "peer receives the offer"
    rec = peer_record(p, offer.thid, "OfferReceived")
    msg = rec["offer"]
    att = [a for a in msg.get("attachments", []) if a.get("format") == P.JWT_FORMAT]
    check(att and "json" in att[0]["data"], f"offer attachments {msg.get('attachments')}")
    preview = msg["body"].get("credential_preview", {})
    ctx.expect(preview.get("type") == P.IC_PREVIEW, f"offer's credential_preview.type is {preview.get('type')}, "
               f"not {P.IC_PREVIEW}")
    attrs = {a["name"]: (P.json_value(a["value"]) if a.get("media_type") == "application/json" else a["value"])
             for a in preview.get("body", {}).get("attributes", [])}
    ctx.expect(attrs == CLAIMS, f"preview attributes {attrs} are not the claims {CLAIMS}")
    check(rec["options"]["domain"] == offer.issuer_did, f"options.domain {rec['options']['domain']} is not the "
          f"issuer DID {offer.issuer_did}")
    ctx.step = "peer requests"
    p.accept_offer(offer.thid, alg)
    rec = peer_record(p, offer.thid, "CredentialReceived")
    header, claims = P.verify_jwt(rec["credential"], offer.issuer_did)
    check(header["alg"] == alg, f"VC-JWT alg {header['alg']}, expected {alg}")
    check("UniversityDegreeCredential" in claims["vc"]["type"], f"vc.type {claims['vc']['type']}")
    check(claims.get("jti") and claims.get("exp"), f"VC-JWT claims {sorted(claims)}: jti/exp missing")
    ctx.step = "agentd receives the ack"
    wait_record(ag, offer.id, "CREDENTIAL_SENT", ack=True)
    ctx.note(f"VC-JWT header {header}")


def peer_issues(ctx: Ctx, alg: str):
    """The peer offers (its issuer key: `alg`), agentd accepts as holder, the peer checks the proof and issues."""
    ag, p, conn, pc = connect(ctx)
    extra, missing = {}, None
    if alg == "ES256K":
        try:
            extra = es256k_choice(ctx, ag, "holder")
        except Failure as e:  # still run the flow: does agentd take an ES256K credential?
            missing = str(e)
    claims = {"name": "Bob", "degree": "MSc", "score": 9.5}
    ctx.step = "peer offers"
    thid = p.offer_credential(pc, claims, types=["VerifiableCredential", "UniversityDegreeCredential"], alg=alg)
    hrec = agentd_holder_record(ag, thid)
    offers = ag.call("HolderService.ListOffers").records
    check(any(r.id == hrec.id for r in offers), "ListOffers does not list the offer")
    check(json.loads(hrec.claims_json or "{}") == claims, f"agentd read claims {hrec.claims_json}")
    ctx.step = "AcceptOffer"
    ag.call("HolderService.AcceptOffer", record_id=hrec.id, **extra)
    rec = peer_record(p, thid, "CredentialSent")
    if extra:
        proof_alg = P.decode_jwt(rec["proof"])[0].get("alg")
        check(proof_alg == "ES256K", f"agentd's request proof is signed with {proof_alg}, asked for ES256K")
    ctx.step = "agentd stores the credential"
    done = wait_record(ag, hrec.id, "CREDENTIAL_RECEIVED")
    creds = [c for c in ag.call("HolderService.ListCredentials").credentials if c.thid == thid]
    check(creds and creds[0].issuer == p.issuer_key(alg).did, f"agentd credentials {creds}")
    check(json.loads(creds[0].claims_json) == claims, f"stored claims {creds[0].claims_json}")
    check(creds[0].subject == rec["subject_did"] == done.subject_did, "subject DIDs differ")
    ctx.step = "peer receives the ack"
    try:
        p.wait(f"ack on {thid}", lambda: p.records[thid].get("ack_received"))
    except TimeoutError as e:
        raise Failure(str(e)) from None
    if missing:
        raise Failure(f"{missing} (the flow with an ES256K credential and agentd's default proof passed)")


KEY_FIELDS = ("key_type", "key_algorithm", "alg", "algorithm", "signature_algorithm", "curve")


def es256k_choice(ctx: Ctx, ag: Agentd, role: str) -> dict:
    """The request fields that make agentd sign with ES256K as `role`, from the most natural APIs:
    a secp256k1 did:key from DidService/CreateDid (a DidMethod value, or a key-type field) given
    as issuer_did / subject_did, else an algorithm field on CreateOffer / AcceptOffer."""
    ctx.step = f"choosing ES256K for agentd as {role}"
    did_field = "issuer_did" if role == "issuer" else "subject_did"
    secp = [v for v in ctx.stubs.enum_values("DidMethod") if "SECP256K1" in v or "ES256K" in v]
    create = None
    if secp:
        create = {"method": secp[0]}
    else:
        for name, fd in ctx.stubs.message_fields("CreateDidRequest").items():
            if name in KEY_FIELDS:
                create = {name: pick_es256k(fd)}
                break
    if create:
        did = ag.call("DidService.CreateDid", **create).did
        check(did.startswith("did:key:zQ3s"), f"CreateDid {create} made {did}, not a secp256k1 did:key (zQ3s…)")
        return {did_field: did}
    request = "CreateOfferRequest" if role == "issuer" else "AcceptOfferRequest"
    for name, fd in ctx.stubs.message_fields(request).items():
        if name in KEY_FIELDS:
            return {name: pick_es256k(fd)}
    raise Failure(f"agentd's API has no way to choose ES256K as {role}: no secp256k1 DidMethod, and no "
                  f"{'/'.join(KEY_FIELDS)} field in CreateDidRequest or {request}")


def pick_es256k(fd):
    if fd.enum_type is not None:
        names = [v.name for v in fd.enum_type.values if "SECP256K1" in v.name or "ES256K" in v.name]
        check(names, f"{fd.full_name} ({fd.enum_type.name}) has no SECP256K1/ES256K value")
        return names[0]
    return "ES256K"


@scenario
def issue_agentd_issuer_eddsa(ctx: Ctx):
    agentd_issues(ctx, "EdDSA")


@scenario
def issue_agentd_holder_eddsa(ctx: Ctx):
    peer_issues(ctx, "EdDSA")


@scenario
def issue_agentd_holder_es256k(ctx: Ctx):
    peer_issues(ctx, "ES256K")


@scenario
def issue_agentd_issuer_es256k(ctx: Ctx):
    agentd_issues(ctx, "ES256K")


@scenario
def reject_by_agentd_holder(ctx: Ctx):
    ag, p, conn, pc = connect(ctx)
    thid = p.offer_credential(pc, {"name": "Carol"})
    hrec = agentd_holder_record(ag, thid)
    ctx.step = "RejectOffer"
    ag.call("HolderService.RejectOffer", record_id=hrec.id, reason="interop: not wanted")
    rec = peer_record(p, thid, "ProblemReportReceived")
    report = next(m for m in reversed(p.problems) if thid in (m.get("pthid"), m.get("thid")))
    check(report.get("pthid") == thid, f"problem report pthid {report.get('pthid')} (thid {report.get('thid')}), "
          f"expected pthid {thid}")
    check(str(report["body"].get("code", "")).startswith("e.p."), f"problem code {report['body'].get('code')} "
          "does not end the thread (e.p.…)")
    wait_record(ag, hrec.id, "PROBLEM_REPORT_SENT")
    ctx.note(f"agentd's problem report body: {json.dumps(rec['problem'])}")


@scenario
def reject_by_peer_holder(ctx: Ctx):
    ag, p, conn, pc = connect(ctx)
    offer = ag.call("IssuanceService.CreateOffer", connection_id=conn.id, claims_json=json.dumps(CLAIMS),
                    types=["UniversityDegreeCredential"], automatic_issuance=True)
    peer_record(p, offer.thid, "OfferReceived")
    ctx.step = "peer rejects"
    p.reject(offer.thid, "interop: not wanted")
    rec = wait_record(ag, offer.id, "PROBLEM_REPORT_RECEIVED")
    check("not wanted" in rec.problem or "rejected" in rec.problem, f"agentd's problem text {rec.problem!r}")


@scenario
def reject_by_peer_issuer(ctx: Ctx):
    ag, p, conn, pc = connect(ctx)
    p.auto_issue = False
    thid = p.offer_credential(pc, {"name": "Dave"})
    hrec = agentd_holder_record(ag, thid)
    ctx.step = "AcceptOffer"
    ag.call("HolderService.AcceptOffer", record_id=hrec.id)
    peer_record(p, thid, "RequestReceived")
    ctx.step = "peer rejects the request"
    p.reject(thid, "interop: request declined")
    wait_record(ag, hrec.id, "PROBLEM_REPORT_RECEIVED")


# ------------------------------------------------------------------ runner


def run_one(fn, opts, stubs) -> tuple:
    ctx = Ctx(opts, stubs)
    outcome = {}

    def body():
        try:
            fn(ctx)
            if ctx.soft:
                raise Failure("; ".join(ctx.soft))
            outcome["ok"] = True
        except Failure as e:
            outcome["err"] = str(e)
        except grpc.RpcError as e:
            outcome["err"] = f"{ctx.step}: gRPC {e.code().name}: {e.details()}"
        except Exception as e:  # noqa: BLE001 - any error fails the scenario with its cause
            outcome["err"] = f"{ctx.step}: {type(e).__name__}: {e}"
            outcome["trace"] = traceback.format_exc()

    start = time.monotonic()
    t = threading.Thread(target=body, name=fn.__name__, daemon=True)
    t.start()
    t.join(opts.timeout)
    ms = int((time.monotonic() - start) * 1000)
    if t.is_alive():  # the thread may still finish later: decide now, from this snapshot
        ok, err, trace = False, f"timed out after {opts.timeout:g}s (step: {ctx.step})", None
    else:
        ok, err, trace = bool(outcome.get("ok")), outcome.get("err", ""), outcome.get("trace")
    if not ok and ctx.soft and not err.startswith(ctx.soft[0]):
        err = "; ".join(ctx.soft) + "; then " + err
    if not ok and ctx.agents and opts.verbose and (tail := ctx.agents[-1].log_tail(3)):
        err += f" [agentd log: {tail}]"
    ctx.close(not ok, fn.__name__)
    return ok, ms, err, list(ctx.notes), trace


def shorten(text: str) -> str:
    """did:peer:2 DIDs cut to their first key (fragments kept), repeated peer errors once."""
    text = re.sub(r"(did:peer:2\.[EV]z\w{8})[\w.\-]*", r"\1…", text)
    return re.sub(r"(\[?'[^']{20,}')(, \1)+", r"\1 (repeated)", text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agentd", required=True, help="path of the agentd binary")
    ap.add_argument("--only", help="comma-separated scenario names")
    ap.add_argument("--expect-fail", default="", help="comma-separated scenarios known to fail (XFAIL)")
    ap.add_argument("--kid-style", choices=("peerdid", "spec"), default="peerdid",
                    help="peer's key ids: peerdid 0.5's own (#6LS… 8 chars, default) or #key-N (current spec)")
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds per scenario")
    ap.add_argument("--log-dir", help="write each scenario's peer messages and agentd log here")
    ap.add_argument("--list", action="store_true", help="list the scenarios and exit")
    ap.add_argument("-v", "--verbose", action="store_true", help="notes, agentd log lines and tracebacks")
    opts = ap.parse_args()
    names = [fn.__name__ for fn in SCENARIOS]
    if opts.list:
        print("\n".join(names))
        return 0
    only = [n for n in (opts.only or "").split(",") if n]
    expect = {n for n in opts.expect_fail.split(",") if n}
    unknown = (set(only) | expect) - set(names)
    if unknown:
        ap.error(f"unknown scenario(s): {', '.join(sorted(unknown))} (see --list)")
    opts.agentd = os.path.abspath(opts.agentd)
    if not os.access(opts.agentd, os.X_OK):
        ap.error(f"{opts.agentd} is not an executable")
    peer_name = (f"didcomm-python {importlib.metadata.version('didcomm')} + "
                 f"peerdid {importlib.metadata.version('peerdid')}")
    if opts.kid_style == "spec":
        peer_name += " (kids #key-N)"
    stubs = Stubs()
    results = []
    try:
        for fn in SCENARIOS:
            if only and fn.__name__ not in only:
                continue
            ok, ms, err, notes, trace = run_one(fn, opts, stubs)
            name = fn.__name__
            status = ("XPASS" if ok else "XFAIL") if name in expect else ("PASS" if ok else "FAIL")
            print(f"{status} {name} ({ms} ms)" if ok else f"{status} {name}: {shorten(err)}", flush=True)
            if opts.verbose:
                for n in notes:
                    print(f"    {n}")
                if trace:
                    print("    " + trace.replace("\n", "\n    "))
            results.append((name, status))
    finally:
        stubs.close()
    print()
    print("| peer | scenario | result |")
    print("| --- | --- | --- |")
    for name, status in results:
        print(f"| {peer_name} | {name} | {status} |")
    print()
    bad = sum(s in ("FAIL", "XPASS") for _, s in results)
    xfail = sum(s == "XFAIL" for _, s in results)
    if xfail:
        print(f"expected failures (XFAIL): {xfail}")
    print(f"interop: {sum(s == 'PASS' for _, s in results)} passed, {bad} failed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
