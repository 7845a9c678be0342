use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hatrack::telemetry::{self, LogFormat};

// Opt-in mimalloc instead of the libc allocator: per-thread free lists make the small,
// short-lived allocations of each admission review cheaper, but it raises the controller's
// RSS with many bindings cached, so the default build keeps the libc allocator (figures:
// BENCHMARKS.md, "Figures behind design choices").
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// hatrack gives Kubernetes workloads AWS IAM roles instead of static keys.
#[derive(Parser)]
#[command(name = "hatrack", version, about, propagate_version = true)]
struct Cli {
    /// Log format of the long-running commands.
    #[arg(
        long,
        global = true,
        env = "HATRACK_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,

    /// Async worker threads of `controller` and `webhook`. Default: the CPUs the process may
    /// use (its CPU affinity and cgroup CPU limit), so a pod limited to one CPU runs one.
    /// Read here, not by tokio, so a bad value is a usage error instead of a panic.
    #[arg(long, global = true, env = "TOKIO_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    worker_threads: Option<u16>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the IAMRoleBinding controller.
    Controller(hatrack::controller::ControllerArgs),
    /// Run the admission webhook that rejects static AWS keys.
    // Boxed: its flags (limits, namespaces) make it the largest variant by far.
    Webhook(Box<hatrack::webhook::WebhookArgs>),
    /// Print the IAM role each IAMRoleBinding in the given manifests would produce (offline).
    Plan(hatrack::plan::PlanArgs),
    /// Report what the webhook would deny in the given manifests (offline).
    Check(hatrack::check::CheckArgs),
    /// Print the CustomResourceDefinitions as YAML.
    Crd,
    /// List IAM roles tagged as this cluster's whose IAMRoleBinding is gone (kubeconfig and AWS
    /// credentials from the environment).
    Orphans(hatrack::orphans_cli::OrphansCliArgs),
    /// Report what the webhook would deny among the running workloads of a live cluster.
    Audit(hatrack::audit::AuditArgs),
    /// Run the background audit: PolicyReports and metrics of the running workloads.
    Auditor(hatrack::audit::AuditorArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Plan(args) => hatrack::plan::run(args),
        Command::Check(args) => hatrack::check::run(args),
        Command::Audit(args) => hatrack::audit::run_audit(args),
        Command::Auditor(args) => {
            telemetry::init(cli.log_format);
            run_async(cli.worker_threads, hatrack::audit::run_auditor(args))
        }
        Command::Crd => {
            print!("{}", hatrack::crd::all_yaml());
            ExitCode::SUCCESS
        }
        Command::Orphans(args) => run_async(cli.worker_threads, hatrack::orphans_cli::run(args)),
        Command::Controller(args) => {
            telemetry::init(cli.log_format);
            run_async(cli.worker_threads, hatrack::controller::run(args))
        }
        Command::Webhook(args) => {
            telemetry::init(cli.log_format);
            run_async(cli.worker_threads, async {
                hatrack::webhook::run(*args)
                    .await
                    .map_err(|e| e.to_string())
            })
        }
    }
}

fn run_async<F: std::future::Future<Output = Result<(), String>>>(
    worker_threads: Option<u16>,
    fut: F,
) -> ExitCode {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = worker_threads {
        builder.worker_threads(n.into());
    }
    let runtime = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hatrack: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "exiting");
            eprintln!("hatrack: {e}");
            ExitCode::FAILURE
        }
    }
}
