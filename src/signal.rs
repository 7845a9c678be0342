//! The process's stop signal, shared by every long-running subcommand.

/// Completes on SIGTERM (what the kubelet sends) or Ctrl-C. Where no SIGTERM handler can be
/// installed, Ctrl-C alone stops the process: waiting on nothing would leave SIGTERM to kill
/// it without a graceful shutdown, which is no worse than today and better than a panic.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch for SIGTERM; only Ctrl-C stops gracefully");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutdown signal received");
}
