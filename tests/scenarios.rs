//! Every scenario in tests/scenarios/ passes when run by the library's
//! runner; a wrong expectation or a bad file fails `agentd harness run`. An
//! agent the scenario does not start (its gRPC address given) stands in for
//! another team's peer, on both ends of an invitation.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};

use agentd::harness::scenario;
use agentd::rpc::proto;

mod common;

const BINARY: &str = env!("CARGO_BIN_EXE_agentd");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shipped_scenario_passes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    for file in files {
        let report = scenario::run(&file, Path::new(BINARY))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(report.ok(), "{}: {report:?}", file.display());
        assert_eq!(report.skipped, 0);
    }
}

/// `scenario` written to `name` in a new temporary directory.
fn scenario_file(name: &str, scenario: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(name);
    std::fs::write(&file, scenario).unwrap();
    (dir, file)
}

/// `agentd harness run` on a scenario written to a temporary `name`:
/// whether it succeeded, its stdout and stderr.
fn harness_run(name: &str, scenario: &str) -> (bool, String, String) {
    let (_dir, file) = scenario_file(name, scenario);
    let out = std::process::Command::new(BINARY)
        .args(["harness", "run"])
        .arg(&file)
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn a_wrong_expectation_fails_the_command_and_skips_the_rest() {
    let (ok, stdout, stderr) = harness_run(
        "wrong.toml",
        r#"[agents.issuer]
[agents.holder]

[[step]]
connect = { inviter = "issuer", invitee = "holder", as = "c" }

[[step]]
offer = { from = "issuer", connection = "c", claims = { n = 1 }, as = "f" }

[[step]]
expect = { agent = "issuer", flow = "f", state = "CredentialSent" }

[[step]]
accept = { agent = "holder", flow = "f" }
"#,
    );
    assert!(!ok, "{stdout}");
    assert!(stdout.contains("✓ step 2"), "{stdout}");
    assert!(stdout.contains("✗ step 3"), "{stdout}");
    // The offer may or may not have been delivered yet.
    assert!(stdout.contains("f is Offer"), "{stdout}");
    assert!(stdout.contains("- step 4 skipped"), "{stdout}");
    assert!(
        stdout.contains("FAIL: 2 passed, 1 failed, 1 skipped"),
        "{stdout}"
    );
    assert!(stderr.contains("1 of 1 scenarios failed"), "{stderr}");
}

#[test]
fn a_bad_scenario_file_names_the_line() {
    let (ok, stdout, _) = harness_run("bad.toml", "[agents.a]\n\n[[step]]\nfrobnicate = \"a\"\n");
    assert!(!ok);
    assert!(
        stdout.contains("bad.toml:4: unknown step `frobnicate`"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scenario_takes_an_invitation_and_an_offer_from_a_peer_it_did_not_start() {
    // The peer's own operator: invites, and offers once the scenario's holder connected.
    let theirs = common::start("theirs", &[]).await;
    let mut c = theirs.clients().await.unwrap();
    let invitation = c
        .connections
        .create_invitation(proto::CreateInvitationRequest::default())
        .await
        .unwrap()
        .into_inner();
    let id = invitation.connection.unwrap().id;
    let operator = tokio::spawn(async move {
        agentd::harness::wait_active(&mut c, "", &id, common::WAIT)
            .await
            .unwrap();
        c.issuance
            .create_offer(proto::CreateOfferRequest {
                connection_id: id,
                claims_json: r#"{"team":"theirs"}"#.into(),
                automatic_issuance: true,
                ..Default::default()
            })
            .await
            .unwrap();
    });

    let (_dir, file) = scenario_file(
        "external.toml",
        &format!(
            r#"[agents.theirs]
grpc = "{}"
[agents.holder]

[[step]]
accept_invitation = {{ agent = "holder", url = "{}", as = "ext" }}

[[step]]
receive_offer = {{ agent = "holder", connection = "ext", as = "f" }}

[[step]]
accept = {{ agent = "holder", flow = "f" }}

[[step]]
wait = {{ agent = "holder", flow = "f", state = "CredentialReceived" }}

[[step]]
wait = {{ agent = "theirs", flow = "f", state = "CredentialSent" }}
"#,
            theirs.grpc, invitation.invitation_url
        ),
    );
    let report = scenario::run(&file, Path::new(BINARY)).await.unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.passed, 5);
    operator.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_step_prints_a_url_that_a_peer_accepts() {
    let theirs = common::start("theirs", &[]).await;
    let (_dir, file) = scenario_file(
        "invite.toml",
        r#"[agents.issuer]

[[step]]
invite = { agent = "issuer", as = "ext", within_ms = 15000 }

[[step]]
ping = { agent = "issuer", connection = "ext" }
"#,
    );
    let mut run = tokio::process::Command::new(BINARY)
        .args(["harness", "run"])
        .arg(&file)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(run.stdout.take().unwrap()).lines();
    let mut seen = String::new();
    let url = loop {
        let line = lines.next_line().await.unwrap();
        let line = line.unwrap_or_else(|| panic!("no invitation printed:\n{seen}"));
        if let Some(url) = line.trim().strip_prefix("invitation from issuer: ") {
            break url.to_string();
        }
        seen += &line;
    };
    // The peer: any agent that takes an Out-of-Band 2.0 URL.
    theirs
        .clients()
        .await
        .unwrap()
        .connections
        .accept_invitation(proto::AcceptInvitationRequest {
            invitation_url: url,
            ..Default::default()
        })
        .await
        .unwrap();
    while let Some(line) = lines.next_line().await.unwrap() {
        seen += &line;
        seen += "\n";
    }
    assert!(run.wait().await.unwrap().success(), "{seen}");
    assert!(seen.contains("✓ step 2   ping issuer ext"), "{seen}");
}
