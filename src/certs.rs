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

use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

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

/// A `--cert-extra-names` entry: an IP address (written in its canonical form) or a DNS name
/// (lower-cased; letters, digits and hyphens in dot-separated labels of 1..63 characters,
/// at most 253 in all; a leading `*.` wildcard label is allowed).
pub fn parse_extra_name(s: &str) -> Result<String, String> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(ip.to_string());
    }
    let name = s.trim_end_matches('.').to_ascii_lowercase();
    let invalid = |why: &str| Err(format!("{s:?} is not an IP address or a DNS name: {why}"));
    if name.is_empty() {
        return invalid("empty");
    }
    if name.len() > 253 {
        return invalid("longer than 253 characters");
    }
    let labels = name.strip_prefix("*.").unwrap_or(&name);
    for label in labels.split('.') {
        if label.is_empty() || label.len() > 63 {
            return invalid("each label must have 1 to 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return invalid("only letters, digits, '-' and '.' (and a leading '*.') are allowed");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return invalid("a label cannot start or end with '-'");
        }
    }
    // An all-numeric last label would read as an IP address to clients.
    if labels
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return invalid("not a valid IP address, and a DNS name cannot end in a numeric label");
    }
    Ok(name)
}

/// A CA: certificate and private key, PEM.
#[derive(Debug, Clone, PartialEq)]
pub struct Ca {
    pub cert_pem: String,
    pub key_pem: String,
}

/// What the Secret holds. `ca_bundle` is what the API server must trust: the current CA
/// first, then a previous CA that has not expired yet (during a CA rotation).
#[derive(Debug, Clone, PartialEq)]
pub struct CertBundle {
    pub ca_bundle: String,
    pub ca_key_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl CertBundle {
    /// The current CA (the first certificate of the bundle).
    pub fn ca(&self) -> Result<Ca, CertError> {
        let first = pem_certificates(&self.ca_bundle)
            .into_iter()
            .next()
            .ok_or_else(|| CertError::Parse("ca.crt holds no certificate".into()))?;
        Ok(Ca {
            cert_pem: first,
            key_pem: self.ca_key_pem.clone(),
        })
    }
}

// ---------------------------------------------------------------------------------------
// Pure functions

fn offset_time(t: Timestamp) -> Result<time::OffsetDateTime, CertError> {
    time::OffsetDateTime::from_unix_timestamp(t.as_second())
        .map_err(|e| CertError::Parse(e.to_string()))
}

fn after(now: Timestamp, validity: Duration) -> Result<Timestamp, CertError> {
    let span =
        jiff::SignedDuration::try_from(validity).map_err(|e| CertError::Parse(e.to_string()))?;
    now.checked_add(span)
        .map_err(|e| CertError::Parse(e.to_string()))
}

/// A new self-signed CA valid from `now` (minus an hour of clock skew) until `not_after`.
pub fn generate_ca(now: Timestamp, not_after: Timestamp) -> Result<Ca, CertError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "hatrack webhook CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = offset_time(now)? - time::Duration::hours(1);
    params.not_after = offset_time(not_after)?;
    let cert = params.self_signed(&key)?;
    Ok(Ca {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The DNS names the API server uses to reach the webhook Service.
pub fn service_dns_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

/// A serving certificate for the Service, signed by `ca`, valid until `not_after`.
/// Returns (certificate PEM, key PEM).
pub fn generate_serving(
    ca: &Ca,
    service: &str,
    namespace: &str,
    now: Timestamp,
    not_after: Timestamp,
) -> Result<(String, String), CertError> {
    generate_serving_for(ca, &service_dns_names(service, namespace), now, not_after)
}

/// A serving certificate for `names` (DNS names, and IP addresses as IP SANs; the first is
/// also the common name), signed by `ca`, valid until `not_after`.
/// Returns (certificate PEM, key PEM).
pub fn generate_serving_for(
    ca: &Ca,
    names: &[String],
    now: Timestamp,
    not_after: Timestamp,
) -> Result<(String, String), CertError> {
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)?;
    let key = KeyPair::generate()?;
    // rcgen makes an IP SAN of every name that parses as an IP address.
    let mut params = CertificateParams::new(names.to_vec())?;
    let mut dn = DistinguishedName::new();
    if let Some(first) = names.first() {
        dn.push(DnType::CommonName, first.clone());
    }
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = offset_time(now)? - time::Duration::hours(1);
    params.not_after = offset_time(not_after)?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The PEM blocks of type CERTIFICATE in `pem`, each re-encoded on its own.
pub fn pem_certificates(pem: &str) -> Vec<String> {
    x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
        .filter_map(Result::ok)
        .filter(|p| p.label == "CERTIFICATE")
        .map(|p| {
            // Re-encode so that each element is exactly one block.
            let body = base64_lines(&p.contents);
            format!("-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n")
        })
        .collect()
}

fn base64_lines(der: &[u8]) -> String {
    let encoded = k8s_base64(der);
    let mut out = String::with_capacity(encoded.len() + encoded.len() / 64 + 1);
    for chunk in encoded.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out
}

/// Standard base64, through k8s-openapi's ByteString serializer (no extra dependency).
fn k8s_base64(bytes: &[u8]) -> String {
    serde_json::to_value(ByteString(bytes.to_vec()))
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Parses the first CERTIFICATE block of `pem` and hands it to `read`.
fn read_first_certificate<T>(
    pem: &str,
    read: impl FnOnce(&x509_parser::certificate::X509Certificate<'_>) -> Result<T, CertError>,
) -> Result<T, CertError> {
    let block = x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
        .filter_map(Result::ok)
        .find(|p| p.label == "CERTIFICATE")
        .ok_or_else(|| CertError::Parse("no PEM certificate".into()))?;
    let cert = block
        .parse_x509()
        .map_err(|e| CertError::Parse(e.to_string()))?;
    read(&cert)
}

/// When the first certificate in `pem` expires.
pub fn not_after(pem: &str) -> Result<Timestamp, CertError> {
    read_first_certificate(pem, |cert| {
        Timestamp::from_second(cert.validity().not_after.timestamp())
            .map_err(|e| CertError::Parse(e.to_string()))
    })
}

/// The DNS names (lower-cased) and IP addresses (canonical form) of the first certificate
/// in `pem`'s subjectAltName extension.
pub fn subject_alt_names(pem: &str) -> Result<Vec<String>, CertError> {
    read_first_certificate(pem, san_names)
}

fn san_names(
    cert: &x509_parser::certificate::X509Certificate<'_>,
) -> Result<Vec<String>, CertError> {
    use x509_parser::extensions::GeneralName;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| CertError::Parse(e.to_string()))?;
    let names = san
        .map(|ext| ext.value.general_names.iter())
        .into_iter()
        .flatten()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(dns.to_ascii_lowercase()),
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => <[u8; 4]>::try_from(*bytes)
                    .ok()
                    .map(|b| IpAddr::from(b).to_string()),
                16 => <[u8; 16]>::try_from(*bytes)
                    .ok()
                    .map(|b| IpAddr::from(b).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    Ok(names)
}

/// True when the first certificate in `pem` names every one of `names` (compared as
/// [`parse_extra_name`] writes them). An unreadable certificate names nothing.
pub fn names_all(pem: &str, names: &[String]) -> bool {
    let Ok(have) = subject_alt_names(pem) else {
        return false;
    };
    names.iter().all(|wanted| {
        let wanted = parse_extra_name(wanted).unwrap_or_else(|_| wanted.to_ascii_lowercase());
        have.contains(&wanted)
    })
}

/// True when a certificate expiring at `not_after` is within `renew_before` of `now`.
pub fn needs_renewal(not_after: Timestamp, now: Timestamp, renew_before: Duration) -> bool {
    match jiff::SignedDuration::try_from(renew_before) {
        Ok(margin) => now.checked_add(margin).map_or(true, |t| t >= not_after),
        Err(_) => true,
    }
}

/// A complete new bundle: CA and serving certificate.
pub fn fresh_bundle(config: &CertConfig, now: Timestamp) -> Result<CertBundle, CertError> {
    let ca = generate_ca(now, after(now, CA_VALIDITY)?)?;
    serving_bundle(&ca, ca.cert_pem.clone(), config, now)
}

fn serving_bundle(
    ca: &Ca,
    ca_bundle: String,
    config: &CertConfig,
    now: Timestamp,
) -> Result<CertBundle, CertError> {
    // A serving certificate never outlives its CA.
    let until = after(now, SERVING_VALIDITY)?.min(not_after(&ca.cert_pem)?);
    let (cert_pem, key_pem) = generate_serving_for(ca, &config.serving_names(), now, until)?;
    Ok(CertBundle {
        ca_bundle,
        ca_key_pem: ca.key_pem.clone(),
        cert_pem,
        key_pem,
    })
}

/// What the stored bundle should become, or `None` when it is fine as it is.
///
/// - CA near expiry: a new CA, the old one kept in the bundle until it expires, and a
///   serving certificate from the new CA;
/// - serving certificate near expiry (or unreadable), or lacking one of
///   [`CertConfig::serving_names`]: a new one from the same CA;
/// - an expired previous CA is dropped from the bundle.
pub fn plan_renewal(
    stored: &CertBundle,
    config: &CertConfig,
    now: Timestamp,
) -> Result<Option<CertBundle>, CertError> {
    let Ok(ca) = stored.ca() else {
        return fresh_bundle(config, now).map(Some);
    };
    let Ok(ca_expiry) = not_after(&ca.cert_pem) else {
        return fresh_bundle(config, now).map(Some);
    };
    if KeyPair::from_pem(&ca.key_pem).is_err() || ca_expiry <= now {
        return fresh_bundle(config, now).map(Some);
    }
    if needs_renewal(ca_expiry, now, config.renew_before) {
        let new_ca = generate_ca(now, after(now, CA_VALIDITY)?)?;
        let bundle = format!("{}{}", new_ca.cert_pem, ca.cert_pem);
        return serving_bundle(&new_ca, bundle, config, now).map(Some);
    }
    // Keep only CAs that are still valid (the current one always is, here).
    let kept: Vec<String> = pem_certificates(&stored.ca_bundle)
        .into_iter()
        .filter(|c| not_after(c).is_ok_and(|t| t > now))
        .collect();
    let ca_bundle = kept.concat();
    let serving_ok = not_after(&stored.cert_pem)
        .is_ok_and(|t| !needs_renewal(t, now, config.renew_before))
        && KeyPair::from_pem(&stored.key_pem).is_ok()
        && names_all(&stored.cert_pem, &config.serving_names());
    if !serving_ok {
        return serving_bundle(&ca, ca_bundle, config, now).map(Some);
    }
    if ca_bundle != stored.ca_bundle {
        return Ok(Some(CertBundle {
            ca_bundle,
            ..stored.clone()
        }));
    }
    Ok(None)
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use x509_parser::extensions::GeneralName;

    fn config(extra: &[&str]) -> CertConfig {
        CertConfig {
            namespace: "hatrack-system".into(),
            secret_name: "hatrack-webhook-tls".into(),
            service_name: "hatrack-webhook".into(),
            webhook_configuration_name: "hatrack".into(),
            renew_before: DEFAULT_RENEW_BEFORE,
            extra_names: extra.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// (DNS names, IP addresses) of a certificate, straight from its DER.
    fn sans(pem: &str) -> (Vec<String>, Vec<Vec<u8>>) {
        let block = x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
            .next()
            .expect("a PEM block")
            .expect("PEM");
        let cert = block.parse_x509().expect("X.509");
        let ext = cert
            .subject_alternative_name()
            .expect("SAN extension readable")
            .expect("SAN extension present");
        let mut dns = Vec::new();
        let mut ips = Vec::new();
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(d) => dns.push(d.to_string()),
                GeneralName::IPAddress(b) => ips.push(b.to_vec()),
                other => panic!("unexpected SAN {other:?}"),
            }
        }
        (dns, ips)
    }

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        certs: CertArgs,
    }

    #[test]
    fn extra_names_flag_takes_a_comma_separated_list_of_dns_names_and_ips() {
        let flags = Flags::try_parse_from([
            "hatrack",
            "--cert-extra-names=127.0.0.1,Webhook.Example.com,::1",
        ])
        .expect("parses");
        assert_eq!(
            flags.certs.cert_extra_names,
            ["127.0.0.1", "webhook.example.com", "::1"]
        );
        assert_eq!(
            flags.certs.config().extra_names,
            ["127.0.0.1", "webhook.example.com", "::1"]
        );
        let none = Flags::try_parse_from(["hatrack"]).expect("parses");
        assert!(none.certs.cert_extra_names.is_empty(), "default: none");
        for bad in [
            "under_score.example.com",
            "-a.example.com",
            "1.2.3.999",
            "a..b",
            "",
        ] {
            assert!(
                Flags::try_parse_from(["hatrack", &format!("--cert-extra-names={bad}")]).is_err(),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn extra_names_are_canonical() {
        assert_eq!(parse_extra_name(" 10.0.0.1 ").as_deref(), Ok("10.0.0.1"));
        assert_eq!(
            parse_extra_name("2001:DB8:0::1").as_deref(),
            Ok("2001:db8::1")
        );
        assert_eq!(
            parse_extra_name("Hook.Example.COM.").as_deref(),
            Ok("hook.example.com")
        );
        assert_eq!(
            parse_extra_name("*.example.com").as_deref(),
            Ok("*.example.com")
        );
        assert_eq!(parse_extra_name("localhost").as_deref(), Ok("localhost"));
        assert!(parse_extra_name(&format!("{}.com", "a".repeat(64))).is_err());
        assert!(parse_extra_name("a.*.example.com").is_err());
        assert!(parse_extra_name("https://hook.example.com").is_err());
    }

    #[test]
    fn serving_certificate_names_the_service_and_the_extra_names_with_ip_sans_for_ips() {
        let now = Timestamp::now();
        let bundle =
            fresh_bundle(&config(&["127.0.0.1", "hook.example.com", "::1"]), now).expect("bundle");
        let (dns, ips) = sans(&bundle.cert_pem);
        assert_eq!(
            dns,
            [
                "hatrack-webhook.hatrack-system.svc",
                "hatrack-webhook.hatrack-system.svc.cluster.local",
                "hook.example.com"
            ]
        );
        let mut v6 = vec![0u8; 16];
        v6[15] = 1;
        assert_eq!(
            ips,
            [vec![127, 0, 0, 1], v6],
            "IP addresses are IP SANs, not DNS names"
        );
        assert!(names_all(
            &bundle.cert_pem,
            &config(&["127.0.0.1", "HOOK.example.com"]).serving_names()
        ));
        assert!(!names_all(&bundle.cert_pem, &["10.0.0.1".to_string()]));

        let plain = fresh_bundle(&config(&[]), now).expect("bundle");
        let (dns, ips) = sans(&plain.cert_pem);
        assert_eq!(dns.len(), 2);
        assert!(ips.is_empty());
    }

    #[test]
    fn a_stored_certificate_lacking_a_requested_name_is_reissued_from_the_same_ca() {
        let now = Timestamp::now();
        let stored = fresh_bundle(&config(&[]), now).expect("bundle");
        assert_eq!(
            plan_renewal(&stored, &config(&[]), now).expect("plan"),
            None
        );

        let wanted = config(&["127.0.0.1"]);
        let renewed = plan_renewal(&stored, &wanted, now)
            .expect("plan")
            .expect("a certificate without 127.0.0.1 is reissued");
        assert_eq!(
            renewed.ca_bundle, stored.ca_bundle,
            "same CA: the caBundle stays"
        );
        assert_eq!(renewed.ca_key_pem, stored.ca_key_pem);
        assert_ne!(renewed.cert_pem, stored.cert_pem);
        assert!(names_all(&renewed.cert_pem, &wanted.serving_names()));
        // Settled: the next check changes nothing.
        assert_eq!(plan_renewal(&renewed, &wanted, now).expect("plan"), None);

        // Another name added later is added too.
        let more = config(&["127.0.0.1", "hook.example.com"]);
        let again = plan_renewal(&renewed, &more, now)
            .expect("plan")
            .expect("reissued for the new name");
        assert!(names_all(&again.cert_pem, &more.serving_names()));
    }

    #[test]
    fn a_name_no_longer_requested_does_not_reissue() {
        // Replicas of the old and the new version run side by side during a rollout: a
        // certificate with more names than one of them asks for must satisfy both.
        let now = Timestamp::now();
        let stored = fresh_bundle(&config(&["127.0.0.1"]), now).expect("bundle");
        assert_eq!(
            plan_renewal(&stored, &config(&[]), now).expect("plan"),
            None
        );
    }

    #[test]
    fn a_certificate_for_another_service_is_reissued() {
        let now = Timestamp::now();
        let stored = fresh_bundle(&config(&[]), now).expect("bundle");
        let mut other = config(&[]);
        other.service_name = "renamed-webhook".into();
        let renewed = plan_renewal(&stored, &other, now)
            .expect("plan")
            .expect("reissued");
        assert!(names_all(&renewed.cert_pem, &other.serving_names()));
    }
}
