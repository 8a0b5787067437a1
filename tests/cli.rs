//! `agentd <group> <action>`: the built binary against real agents running
//! in this process, a whole credential flow driven only through the CLI,
//! and how failures are reported.

use std::net::SocketAddr;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use agentd::harness::LocalAgent;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const API_KEY: &str = "a-test-api-key-0123456789";

/// The binary with `args`, against the agent at `grpc`, with no `AGENTD_*`
/// from the test's environment.
fn agentd(grpc: SocketAddr, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_agentd"));
    c.args(args)
        .args(["--grpc", &grpc.to_string()])
        .env_remove("AGENTD_GRPC")
        .env_remove("AGENTD_WALLET")
        .env_remove("AGENTD_API_KEY")
        .kill_on_drop(true);
    c
}

async fn run(grpc: SocketAddr, args: &[&str]) -> Output {
    agentd(grpc, args).output().await.unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs a command that must succeed, and returns its stdout.
async fn stdout(grpc: SocketAddr, args: &[&str]) -> String {
    let out = run(grpc, args).await;
    assert!(
        out.status.success(),
        "agentd {args:?} failed: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Runs a command with `--json` and parses what it prints.
async fn json(grpc: SocketAddr, args: &[&str]) -> Value {
    let out = stdout(grpc, &[args, &["--json"]].concat()).await;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?} printed {out:?}: {e}"))
}

/// Runs a command that must fail, and returns its only stderr line.
async fn failure(grpc: SocketAddr, args: &[&str]) -> String {
    let out = run(grpc, args).await;
    assert!(!out.status.success(), "agentd {args:?} succeeded");
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "one line on stderr: {err:?}");
    err.trim_end().to_string()
}

/// Repeats a `--json` list until `pick` finds something in it.
async fn eventually<T>(
    grpc: SocketAddr,
    args: &[&str],
    mut pick: impl FnMut(&Value) -> Option<T>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(found) = pick(&json(grpc, args).await) {
            return found;
        }
        assert!(Instant::now() < deadline, "{args:?} never showed it");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn items<'a>(list: &'a Value, field: &str) -> &'a Vec<Value> {
    list[field]
        .as_array()
        .unwrap_or_else(|| panic!("no {field} in {list}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_flow_driven_only_through_the_cli() {
    let issuer = LocalAgent::start("cli-issuer").await.unwrap();
    let holder = LocalAgent::start("cli-holder").await.unwrap();
    let (a, b) = (issuer.grpc, holder.grpc);

    // Wallets: one made, listed as a table and as JSON.
    let made = stdout(
        a,
        &["wallet", "create", "--id", "alice", "--label", "Alice"],
    )
    .await;
    assert!(made.lines().any(|l| l == "id:            alice"), "{made}");
    let table = stdout(a, &["wallet", "list"]).await;
    let rows: Vec<&str> = table.lines().collect();
    assert!(rows[0].starts_with("ID     "), "{table}");
    assert_eq!(rows.len(), 3, "header, alice, default: {table}");
    assert!(
        rows[1].starts_with("alice  ") && rows[1].contains("Alice"),
        "{table}"
    );
    let wallets = json(a, &["wallet", "list"]).await;
    let ids: Vec<&str> = items(&wallets, "wallets")
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["alice", "default"]);
    assert_eq!(wallets["next_page_token"], "");

    // A DID in alice's wallet, with the enum by name.
    let did = json(
        a,
        &["did", "create", "--wallet", "alice", "--method", "key"],
    )
    .await;
    assert_eq!(did["method"], "Key");
    assert_eq!(did["key_type"], "Ed25519");
    assert!(did["did"].as_str().unwrap().starts_with("did:key:z6Mk"));
    let dids = json(a, &["did", "list", "--wallet", "alice"]).await;
    assert_eq!(items(&dids, "dids")[0]["did"], did["did"]);
    let secp = json(a, &["did", "create", "--key-type", "secp256k1"]).await;
    assert_eq!(secp["key_type"], "Secp256k1");
    assert!(secp["did"].as_str().unwrap().starts_with("did:key:zQ3s"));

    // A invites, B accepts and waits until the connection is active.
    let invitation = json(a, &["connection", "invite", "--label", "A"]).await;
    let url = invitation["invitation_url"].as_str().unwrap();
    assert_eq!(invitation["connection"]["state"], "InvitationSent");
    let accepted = agentd(b, &["connection", "accept", url, "--wait", "10", "--json"])
        .output()
        .await
        .unwrap();
    assert!(accepted.status.success(), "{}", text(&accepted.stderr));
    assert!(text(&accepted.stderr).contains("waiting up to 10 s"));
    let b_conn: Value = serde_json::from_slice(&accepted.stdout).unwrap();
    assert_eq!(b_conn["state"], "Active");
    assert_eq!(b_conn["role"], "Invitee");
    let a_conn = invitation["connection"]["id"].as_str().unwrap();
    let active = eventually(a, &["connection", "list", "--state", "active"], |l| {
        (!items(l, "connections").is_empty()).then(|| l.clone())
    })
    .await;
    assert_eq!(items(&active, "connections")[0]["id"], a_conn);
    let b_id = b_conn["id"].as_str().unwrap();
    let ping = json(b, &["connection", "ping", b_id, "--wait", "5"]).await;
    assert_eq!(ping["response_received"], true);
    let features = json(b, &["connection", "features", b_id]).await;
    assert!(
        items(&features, "protocols")
            .iter()
            .any(|p| p == "https://didcomm.org/trust-ping/2.0"),
        "{features}"
    );

    // A offers (claims from --claim and --claims-json), B accepts.
    let offer = json(
        a,
        &[
            "offer",
            "create",
            "--connection",
            a_conn,
            "--claim",
            "name=Alice Example",
            "--claims-json",
            r#"{"age":30}"#,
            "--type",
            "UniversityDegreeCredential",
            "--validity",
            "3600",
            "--automatic",
            "--idempotency-key",
            "order-42",
        ],
    )
    .await;
    assert_eq!(offer["role"], "Issuer");
    assert_eq!(offer["idempotency_key"], "order-42");
    let thid = offer["thid"].as_str().unwrap().to_string();
    let record = eventually(b, &["offer", "list"], |l| {
        items(l, "records").first().cloned()
    })
    .await;
    assert_eq!(record["thid"], thid.as_str());
    assert_eq!(record["state"], "OfferReceived");
    let accepted = json(b, &["offer", "accept", record["id"].as_str().unwrap()]).await;
    assert_eq!(accepted["role"], "Holder");

    // B holds the credential, with the claims as offered.
    let credential = eventually(b, &["credential", "list"], |l| {
        items(l, "credentials").first().cloned()
    })
    .await;
    assert_eq!(credential["thid"], thid.as_str());
    let claims: Value = serde_json::from_str(credential["claims_json"].as_str().unwrap()).unwrap();
    assert_eq!(
        claims,
        serde_json::json!({"name": "Alice Example", "age": 30})
    );
    assert_eq!(
        credential["types"],
        serde_json::json!(["VerifiableCredential", "UniversityDegreeCredential"])
    );
    let done = json(
        b,
        &[
            "record",
            "list",
            "--role",
            "holder",
            "--state",
            "credential-received",
        ],
    )
    .await;
    assert_eq!(items(&done, "records").len(), 1);

    // The holder's events, replayed from the start and then followed live:
    // read until the last state, then stop the follower.
    let mut events = agentd(b, &["events", "--from-start"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(events.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            seen.push(line);
            if seen.last().unwrap().contains("→ CredentialReceived") {
                break;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no CredentialReceived event in {seen:#?}"));
    events.kill().await.unwrap();
    assert!(
        seen[0].contains("Holder") && seen[0].contains("(new) → OfferReceived"),
        "{seen:#?}"
    );
    assert!(
        seen.iter()
            .all(|l| l.contains(record["id"].as_str().unwrap()))
    );

    issuer.stop().await.unwrap();
    holder.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custodial_issuance_paging_and_credential_actions() {
    let agent = LocalAgent::start("cli-custodial").await.unwrap();
    let a = agent.grpc;
    stdout(a, &["wallet", "create", "--id", "holder"]).await;
    for n in ["1", "2"] {
        let out = run(
            a,
            &[
                "issue-custodial",
                "--holder",
                "holder",
                "--claim",
                &format!("member={n}"),
                "--type",
                "MembershipCredential",
                "--json",
            ],
        )
        .await;
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(text(&out.stderr).contains("waiting up to 30 s for the holder's credential"));
        let done: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(done["was_accepted"], true);
        assert_eq!(done["holder_record"]["state"], "CredentialReceived");
        assert_eq!(
            done["credential"]["claims_json"],
            format!(r#"{{"member":"{n}"}}"#)
        );
    }

    // All pages by default; one page with --page-size, the next with its token.
    let all = json(a, &["record", "list", "--role", "issuer"]).await;
    assert_eq!(items(&all, "records").len(), 2);
    let first = json(a, &["record", "list", "--page-size", "1"]).await;
    assert_eq!(items(&first, "records").len(), 1);
    let token = first["next_page_token"].as_str().unwrap();
    assert!(!token.is_empty());
    let second = json(
        a,
        &["record", "list", "--page-size", "1", "--page-token", token],
    )
    .await;
    assert_eq!(items(&second, "records").len(), 1);
    assert_ne!(
        items(&first, "records")[0]["id"],
        items(&second, "records")[0]["id"]
    );
    let table = run(a, &["record", "list", "--page-size", "1"]).await;
    assert!(text(&table.stderr).contains(&format!("more: --page-token {token}")));

    let held = stdout(a, &["credential", "list", "--wallet", "holder"]).await;
    assert_eq!(held.lines().count(), 3, "header and two rows: {held}");
    let matched = json(
        a,
        &[
            "credential",
            "match",
            "MembershipCredential",
            "--wallet",
            "holder",
        ],
    )
    .await;
    let id = matched["id"].as_str().unwrap();
    let deleted = stdout(a, &["credential", "delete", id, "--wallet", "holder"]).await;
    assert_eq!(deleted.trim(), format!("deleted {id}"));
    let gone = failure(a, &["credential", "get", id, "--wallet", "holder"]).await;
    assert!(gone.starts_with("agentd: NOT_FOUND: "), "{gone}");
    agent.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_one_line_naming_the_cause() {
    let agent = LocalAgent::start("cli-errors").await.unwrap();
    let a = agent.grpc;

    let unknown = failure(a, &["wallet", "get", "nope"]).await;
    assert!(unknown.starts_with("agentd: NOT_FOUND: "), "{unknown}");
    assert!(unknown.contains("nope"), "{unknown}");
    let unknown = failure(a, &["did", "list", "--wallet", "nope"]).await;
    assert!(unknown.starts_with("agentd: NOT_FOUND: "), "{unknown}");

    // A port nobody listens on any more.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap();
    drop(closed);
    let down = failure(port, &["wallet", "list"]).await;
    assert_eq!(
        down,
        format!("agentd: cannot reach agentd at {port}: connection refused")
    );

    // A bad flag value is clap's usage error (exit code 2).
    let out = run(a, &["record", "list", "--state", "nope"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("invalid value 'nope' for '--state"));
    agent.stop().await.unwrap();

    let locked = LocalAgent::start_with("cli-locked", |c| {
        c.grpc.auth = "tokens".into();
        c.grpc.api_key = Some(API_KEY.into());
    })
    .await
    .unwrap();
    let l = locked.grpc;
    let missing = failure(l, &["wallet", "list"]).await;
    assert!(
        missing.starts_with("agentd: UNAUTHENTICATED: "),
        "{missing}"
    );
    let wrong = failure(
        l,
        &["wallet", "list", "--api-key", "not-the-key-0123456789"],
    )
    .await;
    assert!(wrong.starts_with("agentd: UNAUTHENTICATED: "), "{wrong}");
    assert!(!wrong.contains("not-the-key"), "the key is never printed");
    let right = agentd(l, &["wallet", "list"])
        .env("AGENTD_API_KEY", API_KEY)
        .output()
        .await
        .unwrap();
    assert!(right.status.success(), "{}", text(&right.stderr));
    assert!(text(&right.stdout).contains("default"));
    locked.stop().await.unwrap();
}

/// `agentd --version` names the version and the commit it was built from.
#[test]
fn version_names_the_commit() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_agentd"))
        .arg("--version")
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or("unknown".into(), |o| {
            String::from_utf8_lossy(&o.stdout).trim().to_string()
        });
    assert_eq!(
        printed,
        format!("agentd {} (commit {head})", env!("CARGO_PKG_VERSION"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_revoke_and_trust_from_the_cli() {
    let agent = LocalAgent::start("cli-verify").await.unwrap();
    let a = agent.grpc;
    stdout(a, &["wallet", "create", "--id", "holder"]).await;
    let issued = json(
        a,
        &[
            "issue-custodial",
            "--holder",
            "holder",
            "--claim",
            "name=Ann",
        ],
    )
    .await;
    let credential = &issued["credential"];
    let (id, jwt) = (
        credential["id"].as_str().unwrap(),
        credential["jwt"].as_str().unwrap(),
    );
    let issuer = credential["issuer"].as_str().unwrap();

    // A JWT on the command line, or in a file: one line per check.
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), format!("{jwt}\n")).unwrap();
    for input in [jwt, file.path().to_str().unwrap()] {
        let out = stdout(a, &["verify", input]).await;
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "VALID", "{out}");
        assert!(lines[1].starts_with(&format!("credential {id}")), "{out}");
        assert!(lines[2].starts_with("  ✓ SignatureVerification"), "{out}");
        assert!(out.contains("  ✓ CredentialStatus"), "{out}");
        assert!(
            out.contains("  - TrustRegistryMembership  the wallet lists no trusted issuers"),
            "{out}"
        );
    }

    // Trusting someone else makes it fail that check, exit status 3.
    let other = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK";
    stdout(a, &["trust", "add", other, "--label", "another issuer"]).await;
    let listed = json(a, &["trust", "list"]).await;
    assert_eq!(items(&listed, "issuers")[0]["did"], other);
    let out = run(a, &["verify", jwt]).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("  ✗ TrustRegistryMembership  issuer"));
    stdout(a, &["trust", "add", issuer]).await;
    assert!(run(a, &["verify", jwt]).await.status.success());
    for did in [other, issuer] {
        let removed = stdout(a, &["trust", "remove", did]).await;
        assert_eq!(removed.trim(), format!("removed {did}"));
    }

    // Revoked: CredentialStatus fails with the reason the list gives.
    let revoked = json(
        a,
        &["credential", "revoke", id, "--reason", "key compromised"],
    )
    .await;
    assert_eq!(revoked["revocation_reason"], "key compromised");
    let out = run(a, &["verify", jwt, "--json"]).await;
    assert_eq!(out.status.code(), Some(3));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["valid"], false);
    let failed: Vec<&Value> = report["credentials"][0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["valid"] == false)
        .collect();
    assert_eq!(failed.len(), 1, "{report}");
    assert_eq!(failed[0]["name"], "CredentialStatus");
    assert_eq!(
        failed[0]["messages"][0],
        "the issuer's status list says: revoked"
    );
    let again = failure(a, &["credential", "revoke", id]).await;
    assert!(again.contains("already revoked"), "{again}");

    // The holder's copy: revoked (the notice), listed by status.
    let shown = eventually(
        a,
        &[
            "credential",
            "list",
            "--wallet",
            "holder",
            "--status",
            "revoked",
        ],
        |list| items(list, "credentials").first().cloned(),
    )
    .await;
    assert_eq!(shown["status"], "Revoked");
    assert_eq!(shown["revocation_reason"], "key compromised");

    let bad = failure(a, &["verify", "not-a-jwt.x.y"]).await;
    assert!(bad.starts_with("agentd: INVALID_ARGUMENT: "), "{bad}");
    agent.stop().await.unwrap();
}
