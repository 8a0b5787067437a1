//! `agentd harness run scenario.toml…`: runs scenario files against agents
//! started from this binary (see `agentd::harness::scenario`).

use std::path::PathBuf;

use anyhow::Context;

#[derive(clap::Subcommand)]
pub enum Harness {
    /// Start the agents each scenario names, run its steps, print pass or
    /// fail per step; exit non-zero if any scenario fails.
    Run {
        #[arg(required = true)]
        scenarios: Vec<PathBuf>,
    },
}

impl Harness {
    pub async fn run(self) -> anyhow::Result<()> {
        let Harness::Run { scenarios } = self;
        let binary = std::env::current_exe().context("locating the agentd binary")?;
        let mut failed = Vec::new();
        for path in &scenarios {
            let outcome = tokio::select! {
                outcome = agentd::harness::scenario::run(path, &binary) => outcome,
                // Dropping the run kills its agents and removes their directories.
                _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
            };
            match outcome {
                Ok(report) if report.ok() => {}
                Ok(_) => failed.push(path.display().to_string()),
                Err(e) => {
                    println!("scenario {}\n  ✗ {e}", path.display());
                    failed.push(path.display().to_string());
                }
            }
            println!();
        }
        anyhow::ensure!(
            failed.is_empty(),
            "{} of {} scenarios failed: {}",
            failed.len(),
            scenarios.len(),
            failed.join(", ")
        );
        Ok(())
    }
}
