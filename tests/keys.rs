//! The master key and what it guards: the data directory and the key file
//! are the owner's alone, and `agentd rotate-master-key`, killed with
//! SIGKILL at its crash points and at random moments, leaves the daemon
//! starting with the key in force (the old one, or the new one once the
//! command is run again) and its keys still signing and decrypting (a
//! trust ping to a peer).

mod common;

use std::process::{Command, Stdio};
use std::time::Instant;

use agentd::harness::ProcessAgent;
use agentd::rpc::proto::{CreateDidRequest, DidMethod, PingRequest};
use common::{connect, start};

fn rotate(agent: &ProcessAgent, env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_agentd"));
    c.args(["rotate-master-key", "--config"])
        .arg(agent.config_path())
        .env_remove("AGENTD_MASTER_KEY")
        .env_remove("AGENTD_NEW_MASTER_KEY")
        .env_remove("AGENTD_CRASHPOINT")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Runs a rotation to its end.
fn rotate_fully(agent: &ProcessAgent, env: &[(&str, &str)]) -> String {
    let out = rotate(agent, env).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Starts the agent; if it refuses because a rotation was interrupted
/// after its commit, finishes the rotation and starts it again. Returns
/// whether the rotation had to be finished.
async fn start_or_finish(agent: &mut ProcessAgent) -> bool {
    match agent.restart().await {
        Ok(()) => false,
        Err(e) => {
            assert!(
                e.to_string().contains("run it again to finish"),
                "the daemon refused to start: {e}"
            );
            let said = rotate_fully(agent, &[]);
            assert!(said.contains("an interrupted rotation"), "{said}");
            agent.restart().await.unwrap();
            true
        }
    }
}

/// The issuer's keys still work: a trust ping is signed, encrypted and
/// its answer decrypted with them.
async fn ping(issuer: &ProcessAgent, connection: &str) {
    issuer
        .clients()
        .await
        .unwrap()
        .connections
        .ping(PingRequest {
            connection_id: connection.into(),
            wait_ms: 10_000,
            ..Default::default()
        })
        .await
        .unwrap();
}

fn key_file(agent: &ProcessAgent) -> String {
    std::fs::read_to_string(agent.dir().join("master.key")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_killed_anywhere_leaves_a_key_that_opens_every_key() {
    let mut issuer = start("issuer", &[]).await;
    let holder = start("holder", &[]).await;
    let (ic, _, connection) = connect(&issuer, &holder).await;
    // Enough keys that a rotation takes a while to kill it in.
    for _ in 0..150 {
        ic.dids
            .clone()
            .create_did(CreateDidRequest {
                method: DidMethod::Peer2 as i32,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    issuer.stop().await.unwrap();

    let first = key_file(&issuer);
    let started = Instant::now();
    let said = rotate_fully(&issuer, &[]);
    let took = started.elapsed();
    assert!(
        said.contains("keys sealed again under the new master key"),
        "{said}"
    );
    assert_ne!(key_file(&issuer), first);
    assert!(!issuer.dir().join("master.key.new").exists());
    issuer.restart().await.unwrap();
    ping(&issuer, &connection).await;
    issuer.stop().await.unwrap();

    let (mut finished, mut old_kept) = (0, 0);
    let points = ["rotate.after_new_key", "rotate.after_commit"];
    for trial in 0..12 {
        let before = key_file(&issuer);
        let mut child = if let Some(point) = points.get(trial) {
            rotate(&issuer, &[("AGENTD_CRASHPOINT", point)])
                .spawn()
                .unwrap()
        } else {
            let mut child = rotate(&issuer, &[]).spawn().unwrap();
            let at = took.mul_f64(rand::random_range(0.0..1.2));
            std::thread::sleep(at);
            let _ = child.kill();
            child
        };
        let status = child.wait().unwrap();
        if trial < points.len() {
            assert!(!status.success(), "{} did not crash", points[trial]);
        }
        if start_or_finish(&mut issuer).await {
            finished += 1;
            assert_ne!(key_file(&issuer), before, "trial {trial}");
        } else if key_file(&issuer) == before {
            old_kept += 1;
        }
        ping(&issuer, &connection).await;
        issuer.stop().await.unwrap();
    }
    println!(
        "12 interrupted rotations (a whole one took {took:?}): {finished} finished by a second run, \
         {old_kept} left the old key in force, the rest had completed"
    );
    assert!(
        finished >= 1 && old_kept >= 1,
        "both crash points are among them"
    );

    // With the keys in the environment, the operator swaps them.
    let (old, new) = (key_file(&issuer), "5a".repeat(32));
    rotate_fully(
        &issuer,
        &[("AGENTD_MASTER_KEY", &old), ("AGENTD_NEW_MASTER_KEY", &new)],
    );
    issuer.set_env("AGENTD_MASTER_KEY", Some(&old));
    let refused = issuer.restart().await.unwrap_err().to_string();
    assert!(refused.contains("master key does not match"), "{refused}");
    issuer.set_env("AGENTD_MASTER_KEY", Some(&new));
    issuer.restart().await.unwrap();
    ping(&issuer, &connection).await;
}

/// The data directory is the owner's alone, and a master key file others
/// can read refuses the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_private_and_a_readable_key_file_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let mut agent = start("files", &[]).await;
    agent.stop().await.unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let db = agent.dir().join("db");
    assert_eq!(mode(&db), 0o700);
    for entry in std::fs::read_dir(&db).unwrap().flatten() {
        if entry.path().is_file() {
            assert_eq!(mode(&entry.path()), 0o600, "{}", entry.path().display());
        }
    }
    let key = agent.dir().join("master.key");
    assert_eq!(mode(&key), 0o600);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refused = agent.restart().await.unwrap_err().to_string();
    assert!(refused.contains("chmod 600"), "{refused}");
}
