//! Subcommands of the `agentd` binary beyond `run`.

pub mod demo;
pub mod harness;
