//! Compiles proto/agent/v1 with protox (pure Rust), so no system `protoc` is needed.
use std::{env, fs, path::PathBuf};

use prost::Message;

const PROTOS: &[&str] = &[
    "proto/agent/v1/common.proto",
    "proto/agent/v1/wallet.proto",
    "proto/agent/v1/did.proto",
    "proto/agent/v1/connection.proto",
    "proto/agent/v1/issuance.proto",
    "proto/agent/v1/holder.proto",
    "proto/agent/v1/events.proto",
    "proto/agent/v1/token.proto",
    "proto/agent/v1/verifier.proto",
    "proto/agent/v1/template.proto",
    "proto/agent/v1/admin.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fds = protox::compile(PROTOS, ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    // The encoded descriptor set serves gRPC reflection.
    fs::write(out.join("agent_v1_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure().compile_fds(fds)?;
    println!("cargo:rerun-if-changed=proto");
    git_commit();
    Ok(())
}

/// `agentd --version` names the commit it was built from ("unknown" outside
/// a git checkout, e.g. from a source tarball).
fn git_commit() {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=AGENTD_GIT_COMMIT={commit}");
    // A new commit moves HEAD or the branch it points to.
    println!("cargo:rerun-if-changed=.git/HEAD");
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        println!("cargo:rerun-if-changed=.git/{branch}");
    }
}
