//! Self-managed webhook certificates: a CA and a serving certificate kept in one Secret of
//! the webhook's namespace, renewed before they expire, with the CA written into the
//! ValidatingWebhookConfiguration's `caBundle` and the serving pair into files the webhook
//! server loads.
//!
//! Every webhook replica runs this; they agree through the Secret: the first to create it
//! wins (the others get 409 and re-read), and every change is a replace with the
//! `resourceVersion` that was read, so two replicas never issue two certificates.
//!
//! Secret keys (all PEM): `ca.crt` (the current CA, then a previous CA still valid during a
//! CA rotation), `ca.key`, `tls.crt`, `tls.key`.
//!
//! The serving certificate names the Service (`<service>.<namespace>.svc`) and every
//! `--cert-extra-names` entry (DNS names, and IP addresses as IP SANs): the host of a
//! `url:` webhook configuration. A stored certificate that lacks a requested name is
//! reissued from the same CA; names no longer requested stay until the next renewal, so
//! replicas of two versions during a rollout never take turns replacing it.
//!
//! This file: flags, the Secret, the caBundle, the files and the renewal loop; [`pki`]: the
//! certificates themselves (issue, read back, decide when to renew), without Kubernetes.

mod pki;
#[cfg(test)]
mod tests;

pub use pki::*;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};

pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
pub const SERVING_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
pub const DEFAULT_RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);

/// Write attempts before giving up on a round (each conflict means another replica wrote).
const MAX_ATTEMPTS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot read the certificate: {0}")]
    Parse(String),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("ValidatingWebhookConfiguration {0} does not exist")]
    WebhookConfigurationMissing(String),
    #[error("gave up after {MAX_ATTEMPTS} conflicting writes to {0}")]
    TooManyConflicts(String),
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Flags of self-managed certificates (flattened into `hatrack webhook`).
#[derive(Debug, Clone, clap::Args)]
pub struct CertArgs {
    /// Keep the CA and serving certificate in a Secret and the caBundle up to date
    /// (otherwise --tls-cert/--tls-key come from elsewhere, e.g. cert-manager).
    #[arg(long, env = "HATRACK_SELF_MANAGED_CERTS")]
    pub self_managed_certs: bool,
    /// Secret holding ca.crt, ca.key, tls.crt and tls.key.
    #[arg(
        long,
        env = "HATRACK_CERT_SECRET",
        default_value = "hatrack-webhook-tls"
    )]
    pub cert_secret: String,
    /// Namespace of the Secret and the Service (in a pod: its own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub cert_namespace: String,
    /// The webhook's Service: the certificate is for <service>.<namespace>.svc.
    #[arg(
        long,
        env = "HATRACK_WEBHOOK_SERVICE",
        default_value = "hatrack-webhook"
    )]
    pub webhook_service: String,
    /// ValidatingWebhookConfiguration whose webhooks get the caBundle.
    #[arg(long, env = "HATRACK_WEBHOOK_CONFIGURATION", default_value = "hatrack")]
    pub webhook_configuration: String,
    /// More names for the serving certificate, comma-separated: DNS names, and IP addresses
    /// (as IP SANs). The host of the webhook configuration's `url:` when the API server
    /// reaches the webhook by URL instead of through the Service.
    #[arg(
        long,
        env = "HATRACK_CERT_EXTRA_NAMES",
        value_delimiter = ',',
        value_parser = parse_extra_name
    )]
    pub cert_extra_names: Vec<String>,
    /// Directory where tls.crt and tls.key are written (an emptyDir in the chart).
    #[arg(long, env = "HATRACK_CERT_DIR", default_value = "/certs")]
    pub cert_dir: PathBuf,
    /// Renew a certificate this many days before it expires.
    #[arg(long, env = "HATRACK_CERT_RENEW_BEFORE_DAYS", default_value_t = 30)]
    pub cert_renew_before_days: u64,
    /// How often to check the Secret and the caBundle.
    #[arg(long, env = "HATRACK_CERT_CHECK_SECONDS", default_value_t = 3600)]
    pub cert_check_seconds: u64,
}

impl CertArgs {
    pub fn config(&self) -> CertConfig {
        CertConfig {
            namespace: self.cert_namespace.clone(),
            secret_name: self.cert_secret.clone(),
            service_name: self.webhook_service.clone(),
            webhook_configuration_name: self.webhook_configuration.clone(),
            renew_before: Duration::from_secs(self.cert_renew_before_days.max(1) * 24 * 3600),
            extra_names: self.cert_extra_names.clone(),
        }
    }
    pub fn check_every(&self) -> Duration {
        Duration::from_secs(self.cert_check_seconds.max(1))
    }
    /// Where the serving certificate is written: pass as `--tls-cert`.
    pub fn cert_path(&self) -> PathBuf {
        self.cert_dir.join("tls.crt")
    }
    /// Where the serving key is written: pass as `--tls-key`.
    pub fn key_path(&self) -> PathBuf {
        self.cert_dir.join("tls.key")
    }
}

#[derive(Debug, Clone)]
pub struct CertConfig {
    pub namespace: String,
    pub secret_name: String,
    pub service_name: String,
    pub webhook_configuration_name: String,
    pub renew_before: Duration,
    /// DNS names and IP addresses the serving certificate names besides the Service's.
    pub extra_names: Vec<String>,
}

impl CertConfig {
    /// Every name the serving certificate must carry: the Service's DNS names, then the
    /// extra names (duplicates dropped).
    pub fn serving_names(&self) -> Vec<String> {
        let mut names = service_dns_names(&self.service_name, &self.namespace);
        for name in &self.extra_names {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        names
    }
}

// ---------------------------------------------------------------------------------------
// The Secret

fn secret_data(bundle: &CertBundle) -> BTreeMap<String, ByteString> {
    [
        ("ca.crt", &bundle.ca_bundle),
        ("ca.key", &bundle.ca_key_pem),
        ("tls.crt", &bundle.cert_pem),
        ("tls.key", &bundle.key_pem),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
    .collect()
}

/// The bundle in a Secret; missing or non-UTF-8 keys read as empty (and so get renewed).
fn bundle_from_secret(secret: &Secret) -> CertBundle {
    let get = |key: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
            .unwrap_or_default()
    };
    CertBundle {
        ca_bundle: get("ca.crt"),
        ca_key_pem: get("ca.key"),
        cert_pem: get("tls.crt"),
        key_pem: get("tls.key"),
    }
}

fn new_secret(config: &CertConfig, bundle: &CertBundle) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(config.secret_name.clone()),
            namespace: Some(config.namespace.clone()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_string(),
                "hatrack".to_string(),
            )])),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(secret_data(bundle)),
        ..Secret::default()
    }
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// Makes the Secret hold a valid bundle (creating or renewing it) and returns it.
pub async fn ensure_secret(client: &Client, config: &CertConfig) -> Result<CertBundle, CertError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &config.namespace);
    for _ in 0..MAX_ATTEMPTS {
        let now = Timestamp::now();
        let Some(mut secret) = api.get_opt(&config.secret_name).await? else {
            let bundle = fresh_bundle(config, now)?;
            match api
                .create(&PostParams::default(), &new_secret(config, &bundle))
                .await
            {
                Ok(_) => {
                    tracing::info!(secret = %config.secret_name, "webhook certificate created");
                    return Ok(bundle);
                }
                // Another replica created it first: use theirs.
                Err(e) if is_conflict(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        let stored = bundle_from_secret(&secret);
        let Some(renewed) = plan_renewal(&stored, config, now)? else {
            return Ok(stored);
        };
        secret.data = Some(secret_data(&renewed));
        secret.string_data = None;
        match api
            .replace(&config.secret_name, &PostParams::default(), &secret)
            .await
        {
            Ok(_) => {
                tracing::info!(secret = %config.secret_name, "webhook certificate renewed");
                return Ok(renewed);
            }
            // Another replica renewed it since we read it: re-read and use theirs.
            Err(e) if is_conflict(&e) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(CertError::TooManyConflicts(config.secret_name.clone()))
}

/// Sets `caBundle` on every webhook of the configuration where it differs.
/// Returns whether it wrote.
pub async fn inject_ca_bundle(
    client: &Client,
    config: &CertConfig,
    ca_bundle: &str,
) -> Result<bool, CertError> {
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let wanted = ByteString(ca_bundle.as_bytes().to_vec());
    let name = &config.webhook_configuration_name;
    for _ in 0..MAX_ATTEMPTS {
        let Some(mut vwc) = api.get_opt(name).await? else {
            return Err(CertError::WebhookConfigurationMissing(name.clone()));
        };
        let mut changed = false;
        for webhook in vwc.webhooks.iter_mut().flatten() {
            if webhook.client_config.ca_bundle.as_ref() != Some(&wanted) {
                webhook.client_config.ca_bundle = Some(wanted.clone());
                changed = true;
            }
        }
        if !changed {
            return Ok(false);
        }
        // Replace carries the resourceVersion we read: no lost update of other fields.
        match api.replace(name, &PostParams::default(), &vwc).await {
            Ok(_) => {
                tracing::info!(configuration = %name, "caBundle updated");
                return Ok(true);
            }
            Err(e) if is_conflict(&e) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(CertError::TooManyConflicts(name.clone()))
}

/// [`ensure_secret`], then [`inject_ca_bundle`].
pub async fn ensure(client: &Client, config: &CertConfig) -> Result<CertBundle, CertError> {
    let bundle = ensure_secret(client, config).await?;
    inject_ca_bundle(client, config, &bundle.ca_bundle).await?;
    Ok(bundle)
}

// ---------------------------------------------------------------------------------------
// Files

/// Writes `contents` to `path` through a temporary file and a rename, so a reader sees the
/// old or the new file, never half of one. Returns whether the file changed.
fn write_atomically(path: &Path, contents: &str) -> Result<bool, CertError> {
    let io = |source| CertError::Io {
        path: path.to_path_buf(),
        source,
    };
    if std::fs::read_to_string(path).is_ok_and(|old| old == contents) {
        return Ok(false);
    }
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp"));
    std::fs::write(&tmp, contents).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(true)
}

/// Writes `tls.key`, `tls.crt` and `ca.crt` into `dir` where they differ (the key first:
/// a reloading server that reads a new key with an old certificate fails that load and
/// keeps its previous pair, then loads the matching pair). Returns whether any changed.
pub fn write_files(dir: &Path, bundle: &CertBundle) -> Result<bool, CertError> {
    std::fs::create_dir_all(dir).map_err(|source| CertError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut changed = write_atomically(&dir.join("tls.key"), &bundle.key_pem)?;
    changed |= write_atomically(&dir.join("tls.crt"), &bundle.cert_pem)?;
    changed |= write_atomically(&dir.join("ca.crt"), &bundle.ca_bundle)?;
    Ok(changed)
}

/// Once, before the webhook server starts: the Secret, the caBundle and the files.
/// The files are written even when the caBundle cannot be set yet (the configuration may
/// not exist yet during an install); [`run`] keeps trying.
pub async fn prepare(
    client: &Client,
    config: &CertConfig,
    cert_dir: &Path,
) -> Result<CertBundle, CertError> {
    let bundle = ensure_secret(client, config).await?;
    if let Err(e) = inject_ca_bundle(client, config, &bundle.ca_bundle).await {
        tracing::warn!(error = %e, "cannot set the caBundle yet; will retry");
    }
    write_files(cert_dir, &bundle)?;
    Ok(bundle)
}

/// Keeps the certificates valid until `shutdown`: every `check_every` (sooner after a
/// failure) ensures the Secret and the caBundle, then updates the files. New files are
/// written only once the caBundle trusts their CA, so a CA rotation never serves a
/// certificate the API server cannot verify.
pub async fn run(
    client: Client,
    config: CertConfig,
    cert_dir: PathBuf,
    check_every: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let retry = check_every.min(Duration::from_secs(10));
    let mut shutdown = pin!(shutdown);
    loop {
        let wait = match ensure(&client, &config).await {
            Ok(bundle) => match write_files(&cert_dir, &bundle) {
                Ok(true) => {
                    tracing::info!(dir = %cert_dir.display(), "webhook certificate files updated");
                    check_every
                }
                Ok(false) => check_every,
                Err(e) => {
                    tracing::error!(error = %e, "cannot write the webhook certificate");
                    retry
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "webhook certificate check failed; retrying");
                retry
            }
        };
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
