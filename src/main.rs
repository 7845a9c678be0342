use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "hatrack",
    version,
    about = "AWS IAM roles instead of static keys for Kubernetes workloads"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Report what the admission webhook would deny in a set of manifests (offline).
    Check(hatrack::check::CheckArgs),
    /// Run the admission webhook that refuses workloads with static AWS keys.
    Webhook(hatrack::webhook::WebhookArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check(args) => hatrack::check::run(args),
        Command::Webhook(args) => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .init();
            match hatrack::webhook::run(args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("hatrack webhook: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
