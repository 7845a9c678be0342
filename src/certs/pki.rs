//! The certificates themselves, without Kubernetes: issuing a CA and a serving certificate,
//! reading names and expiry back from PEM, and deciding when to renew.

use std::net::IpAddr;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::ByteString;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use super::{CA_VALIDITY, CertConfig, CertError, SERVING_VALIDITY};

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
