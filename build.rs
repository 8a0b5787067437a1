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
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fds = protox::compile(PROTOS, ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    // The encoded descriptor set serves gRPC reflection.
    fs::write(out.join("agent_v1_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure().compile_fds(fds)?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
