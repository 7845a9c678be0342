//! `hatrack webhook`: the admission webhook server.

/// Flags of `hatrack webhook`.
#[derive(Debug, clap::Args)]
pub struct WebhookArgs {}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("not implemented yet")]
    NotImplemented,
}

pub async fn run(_args: WebhookArgs) -> Result<(), WebhookError> {
    Err(WebhookError::NotImplemented)
}
