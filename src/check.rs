//! `hatrack check`: what the webhook would deny in a set of manifests, offline.

use std::path::PathBuf;
use std::process::ExitCode;

/// Flags of `hatrack check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Files, directories (searched recursively for *.yaml, *.yml, *.json) or `-` for stdin.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

pub fn run(_args: CheckArgs) -> ExitCode {
    eprintln!("hatrack check: not implemented yet");
    ExitCode::from(2)
}
