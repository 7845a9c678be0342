//! Self-managed webhook certificates: the pure parts (generation, expiry, renewal plans)
//! and the Secret / caBundle / files edge against the in-process API stand-in.

mod support;

use std::time::Duration;

use hatrack::certs::{self, CertBundle, CertConfig};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use support::apiserver::ApiServer;
use x509_parser::prelude::*;

const SECRETS: &str = "/api/v1/namespaces/hatrack-system/secrets";
const SECRET: &str = "/api/v1/namespaces/hatrack-system/secrets/hatrack-webhook-tls";
const VWCS: &str = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations";
const VWC: &str = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/hatrack";

fn config() -> CertConfig {
    CertConfig {
        namespace: "hatrack-system".into(),
        secret_name: "hatrack-webhook-tls".into(),
        service_name: "hatrack-webhook".into(),
        webhook_configuration_name: "hatrack".into(),
        renew_before: certs::DEFAULT_RENEW_BEFORE,
        extra_names: Vec::new(),
    }
}

fn days(n: i64) -> SignedDuration {
    SignedDuration::from_hours(24 * n)
}

fn der(pem: &str) -> Vec<u8> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("PEM");
    p.contents
}

/// A bundle whose CA and serving certificate expire in the given number of days.
fn bundle_expiring(ca_days: i64, serving_days: i64) -> CertBundle {
    let now = Timestamp::now();
    let ca = certs::generate_ca(now - days(400), now + days(ca_days)).expect("CA");
    let (cert_pem, key_pem) = certs::generate_serving(
        &ca,
        "hatrack-webhook",
        "hatrack-system",
        now - days(300),
        now + days(serving_days),
    )
    .expect("serving");
    CertBundle {
        ca_bundle: ca.cert_pem.clone(),
        ca_key_pem: ca.key_pem,
        cert_pem,
        key_pem,
    }
}

fn days_left(pem: &str) -> i64 {
    let left = certs::not_after(pem)
        .expect("notAfter")
        .duration_since(Timestamp::now());
    left.as_secs() / 86_400
}

/// Checks that `cert_pem` is signed by `ca_pem` (x509-parser signature verification).
fn signed_by(cert_pem: &str, ca_pem: &str) -> bool {
    let cert_der = der(cert_pem);
    let ca_der = der(ca_pem);
    let (_, cert) = X509Certificate::from_der(&cert_der).expect("cert");
    let (_, ca) = X509Certificate::from_der(&ca_der).expect("ca");
    cert.verify_signature(Some(ca.public_key())).is_ok()
}

fn seed_webhook_configuration(server: &ApiServer) {
    server.put_object(
        VWCS,
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "hatrack"},
            "webhooks": [
                {"name": "workloads.hatrack.dev", "admissionReviewVersions": ["v1"], "sideEffects": "None",
                 "clientConfig": {"service": {"name": "hatrack-webhook", "namespace": "hatrack-system", "path": "/validate/workloads"}}},
                {"name": "iamrolebindings.hatrack.dev", "admissionReviewVersions": ["v1"], "sideEffects": "None",
                 "clientConfig": {"service": {"name": "hatrack-webhook", "namespace": "hatrack-system", "path": "/validate/iamrolebindings"}}}
            ]
        }),
    );
}

fn seed_secret(server: &ApiServer, bundle: &CertBundle) {
    let b64 = |s: &str| {
        serde_json::to_value(k8s_openapi::ByteString(s.as_bytes().to_vec())).expect("b64")
    };
    server.put_object(
        SECRETS,
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "hatrack-webhook-tls"},
            "type": "kubernetes.io/tls",
            "data": {
                "ca.crt": b64(&bundle.ca_bundle), "ca.key": b64(&bundle.ca_key_pem),
                "tls.crt": b64(&bundle.cert_pem), "tls.key": b64(&bundle.key_pem)
            }
        }),
    );
}

/// The Secret's data, decoded.
fn secret_data(server: &ApiServer) -> serde_json::Map<String, Value> {
    let secret = server.get_object(SECRET).expect("Secret exists");
    let data: std::collections::BTreeMap<String, k8s_openapi::ByteString> =
        serde_json::from_value(secret["data"].clone()).expect("data");
    data.into_iter()
        .map(|(k, v)| (k, Value::String(String::from_utf8(v.0).expect("utf-8"))))
        .collect()
}

fn ca_bundles(server: &ApiServer) -> Vec<String> {
    let vwc = server.get_object(VWC).expect("VWC");
    vwc["webhooks"]
        .as_array()
        .expect("webhooks")
        .iter()
        .map(|w| {
            let b: k8s_openapi::ByteString =
                serde_json::from_value(w["clientConfig"]["caBundle"].clone())
                    .expect("caBundle set");
            String::from_utf8(b.0).expect("utf-8")
        })
        .collect()
}

fn count(server: &ApiServer, method: &str, path_contains: &str) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.method == method && r.path.contains(path_contains))
        .count()
}

// ---------------------------------------------------------------------------------------
// Pure functions

#[test]
fn a_fresh_bundle_is_a_ten_year_ca_and_a_one_year_serving_cert_for_the_service() {
    let bundle = certs::fresh_bundle(&config(), Timestamp::now()).expect("bundle");
    assert!((3645..=3651).contains(&days_left(&bundle.ca_bundle)));
    assert!((364..=366).contains(&days_left(&bundle.cert_pem)));
    assert!(signed_by(&bundle.cert_pem, &bundle.ca_bundle));

    let cert_der = der(&bundle.cert_pem);
    let (_, cert) = X509Certificate::from_der(&cert_der).expect("cert");
    let sans: Vec<String> = cert
        .subject_alternative_name()
        .expect("SAN ext")
        .expect("SANs")
        .value
        .general_names
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(
        sans,
        [
            "DNSName(hatrack-webhook.hatrack-system.svc)",
            "DNSName(hatrack-webhook.hatrack-system.svc.cluster.local)"
        ]
    );
    assert!(!cert.is_ca());
    let ca_der = der(&bundle.ca_bundle);
    let (_, ca) = X509Certificate::from_der(&ca_der).expect("ca");
    assert!(ca.is_ca());
}

#[test]
fn serving_certs_from_a_stored_ca_chain_to_it() {
    let b = bundle_expiring(1000, 10);
    let ca = b.ca().expect("ca");
    let (cert, _) = certs::generate_serving(
        &ca,
        "svc",
        "ns",
        Timestamp::now(),
        Timestamp::now() + days(5),
    )
    .expect("serving");
    assert!(signed_by(&cert, &ca.cert_pem));
    let other = certs::generate_ca(Timestamp::now(), Timestamp::now() + days(5)).expect("ca");
    assert!(!signed_by(&cert, &other.cert_pem), "the check can fail");
}

#[test]
fn needs_renewal_only_within_the_margin() {
    let now = Timestamp::now();
    let margin = Duration::from_secs(30 * 24 * 3600);
    assert!(certs::needs_renewal(now + days(10), now, margin));
    assert!(certs::needs_renewal(now - days(1), now, margin), "expired");
    assert!(!certs::needs_renewal(now + days(31), now, margin));
}

#[test]
fn not_after_reads_pem_and_rejects_garbage() {
    let b = bundle_expiring(1000, 10);
    assert!((9..=10).contains(&days_left(&b.cert_pem)));
    assert!(certs::not_after("not a certificate").is_err());
    assert!(certs::not_after("").is_err());
    assert!(
        certs::not_after(&b.key_pem).is_err(),
        "a key is not a certificate"
    );
}

#[test]
fn a_healthy_bundle_is_left_alone() {
    let b = bundle_expiring(1000, 200);
    assert_eq!(
        certs::plan_renewal(&b, &config(), Timestamp::now()).expect("plan"),
        None
    );
}

#[test]
fn a_serving_cert_near_expiry_is_renewed_from_the_same_ca() {
    let b = bundle_expiring(1000, 10);
    let renewed = certs::plan_renewal(&b, &config(), Timestamp::now())
        .expect("plan")
        .expect("renewal");
    assert_eq!(renewed.ca_bundle, b.ca_bundle);
    assert_eq!(renewed.ca_key_pem, b.ca_key_pem);
    assert_ne!(renewed.cert_pem, b.cert_pem);
    assert_ne!(renewed.key_pem, b.key_pem);
    assert!(days_left(&renewed.cert_pem) >= 364);
    assert!(signed_by(&renewed.cert_pem, &b.ca_bundle));
}

#[test]
fn a_serving_cert_never_outlives_its_ca() {
    let b = bundle_expiring(100, 10);
    let renewed = certs::plan_renewal(&b, &config(), Timestamp::now())
        .expect("plan")
        .expect("renewal");
    assert!(days_left(&renewed.cert_pem) <= 100);
}

#[test]
fn a_ca_near_expiry_is_rotated_with_the_old_ca_still_trusted() {
    let b = bundle_expiring(10, 9);
    let renewed = certs::plan_renewal(&b, &config(), Timestamp::now())
        .expect("plan")
        .expect("renewal");
    let cas = certs::pem_certificates(&renewed.ca_bundle);
    assert_eq!(cas.len(), 2, "new CA + old CA during the overlap");
    assert_eq!(cas[1], certs::pem_certificates(&b.ca_bundle)[0]);
    assert!(days_left(&cas[0]) > 3600);
    assert!(signed_by(&renewed.cert_pem, &cas[0]));
    assert_ne!(renewed.ca_key_pem, b.ca_key_pem);

    // Once the old CA has expired it leaves the bundle.
    let later = Timestamp::now() + days(11);
    let pruned = certs::plan_renewal(&renewed, &config(), later)
        .expect("plan")
        .expect("prune");
    assert_eq!(certs::pem_certificates(&pruned.ca_bundle), [cas[0].clone()]);
    assert_eq!(pruned.cert_pem, renewed.cert_pem);
}

#[test]
fn an_unreadable_bundle_is_replaced_by_a_fresh_one() {
    let garbage = CertBundle {
        ca_bundle: "junk".into(),
        ca_key_pem: String::new(),
        cert_pem: String::new(),
        key_pem: String::new(),
    };
    let fresh = certs::plan_renewal(&garbage, &config(), Timestamp::now())
        .expect("plan")
        .expect("fresh");
    assert!(signed_by(&fresh.cert_pem, &fresh.ca_bundle));
}

// ---------------------------------------------------------------------------------------
// Secret, caBundle and files

#[tokio::test]
async fn first_start_creates_the_secret_and_sets_the_ca_bundle_on_both_webhooks() {
    let server = ApiServer::start().await;
    seed_webhook_configuration(&server);
    let bundle = certs::ensure(&server.client(), &config())
        .await
        .expect("ensure");
    let data = secret_data(&server);
    assert_eq!(data["tls.crt"], bundle.cert_pem.as_str());
    assert_eq!(data["ca.crt"], bundle.ca_bundle.as_str());
    let secret = server.get_object(SECRET).expect("secret");
    assert_eq!(secret["type"], "kubernetes.io/tls");
    assert_eq!(
        ca_bundles(&server),
        [bundle.ca_bundle.clone(), bundle.ca_bundle.clone()]
    );
    assert!(signed_by(&bundle.cert_pem, &bundle.ca_bundle));
}

#[tokio::test]
async fn secret_keys_hold_nothing_but_pem() {
    let server = ApiServer::start().await;
    seed_webhook_configuration(&server);
    certs::ensure(&server.client(), &config())
        .await
        .expect("ensure");
    let data = secret_data(&server);
    assert_eq!(
        data.keys().cloned().collect::<Vec<_>>(),
        ["ca.crt", "ca.key", "tls.crt", "tls.key"]
    );
    for (key, value) in &data {
        let text = value.as_str().expect("text");
        let blocks: Vec<_> = x509_parser::pem::Pem::iter_from_buffer(text.as_bytes()).collect();
        assert!(!blocks.is_empty(), "{key} holds no PEM");
        assert!(blocks.iter().all(|b| b.is_ok()), "{key} holds broken PEM");
        // Nothing but PEM blocks: outside them only blank lines, inside only base64.
        let mut inside = false;
        for line in text.lines() {
            if line.starts_with("-----BEGIN ") && !inside {
                inside = true;
            } else if line.starts_with("-----END ") && inside {
                inside = false;
            } else if inside {
                assert!(
                    line.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c)),
                    "{key}: not base64 inside a PEM block: {line:?}"
                );
            } else {
                assert!(line.trim().is_empty(), "{key}: text outside PEM: {line:?}");
            }
        }
        assert!(!inside, "{key}: unterminated PEM block");
    }
}

#[tokio::test]
async fn a_second_replica_reuses_the_secret() {
    let server = ApiServer::start().await;
    seed_webhook_configuration(&server);
    let first = certs::ensure(&server.client(), &config())
        .await
        .expect("first");
    let vwc_writes = count(&server, "PUT", "validatingwebhookconfigurations");
    let second = certs::ensure(&server.client(), &config())
        .await
        .expect("second");
    assert_eq!(first, second);
    assert_eq!(count(&server, "POST", "/secrets"), 1);
    assert_eq!(count(&server, "PUT", "/secrets"), 0);
    assert_eq!(
        count(&server, "PUT", "validatingwebhookconfigurations"),
        vwc_writes,
        "an up-to-date caBundle is not rewritten"
    );
}

#[tokio::test]
async fn replicas_starting_together_agree_on_one_certificate() {
    let server = ApiServer::start().await;
    seed_webhook_configuration(&server);
    let (c1, c2, c3) = (server.client(), server.client(), server.client());
    let cfg = config();
    let (a, b, c) = tokio::join!(
        certs::ensure(&c1, &cfg),
        certs::ensure(&c2, &cfg),
        certs::ensure(&c3, &cfg)
    );
    let (a, b, c) = (a.expect("a"), b.expect("b"), c.expect("c"));
    assert_eq!(a, b);
    assert_eq!(b, c);
    assert_eq!(secret_data(&server)["tls.crt"], a.cert_pem.as_str());
    assert_eq!(ca_bundles(&server)[0], a.ca_bundle);
}

#[tokio::test]
async fn a_serving_cert_near_expiry_is_renewed_in_the_secret() {
    let server = ApiServer::start().await;
    seed_webhook_configuration(&server);
    let old = bundle_expiring(1000, 10);
    seed_secret(&server, &old);
    let renewed = certs::ensure(&server.client(), &config())
        .await
        .expect("ensure");
    assert_ne!(renewed.cert_pem, old.cert_pem);
    assert!(days_left(&renewed.cert_pem) >= 364);
    assert_eq!(renewed.ca_bundle, old.ca_bundle, "the CA is kept");
    assert_eq!(secret_data(&server)["tls.crt"], renewed.cert_pem.as_str());
    assert_eq!(ca_bundles(&server)[1], old.ca_bundle);
}

#[tokio::test]
async fn a_ca_near_expiry_is_rotated_and_the_ca_bundle_trusts_old_and_new() {
    let server = ApiServer::start().await;
    seed_webhook_configuration(&server);
    let old = bundle_expiring(10, 9);
    seed_secret(&server, &old);
    let renewed = certs::ensure(&server.client(), &config())
        .await
        .expect("ensure");
    let cas = certs::pem_certificates(&ca_bundles(&server)[0]);
    assert_eq!(cas.len(), 2, "old and new CA during the overlap");
    assert!(signed_by(&renewed.cert_pem, &cas[0]));
    assert!(
        signed_by(&old.cert_pem, &cas[1]),
        "pods still serving the old cert stay trusted"
    );
    assert_eq!(ca_bundles(&server)[0], ca_bundles(&server)[1]);
}

#[tokio::test]
async fn a_renewal_conflict_rereads_the_secret_and_retries() {
    let server = ApiServer::start().await;
    seed_webhook_configuration(&server);
    seed_secret(&server, &bundle_expiring(1000, 10));
    server
        .faults()
        .fail_next(1, "PUT", "/secrets/hatrack-webhook-tls", 409);
    let renewed = certs::ensure(&server.client(), &config())
        .await
        .expect("ensure");
    assert_eq!(
        count(&server, "PUT", "/secrets/"),
        2,
        "one conflict, one success"
    );
    assert!(
        count(&server, "GET", "/secrets/hatrack-webhook-tls") >= 2,
        "re-read"
    );
    assert_eq!(secret_data(&server)["tls.crt"], renewed.cert_pem.as_str());
}

#[tokio::test]
async fn a_missing_webhook_configuration_is_reported_but_prepare_still_writes_files() {
    let server = ApiServer::start().await;
    let err = certs::ensure(&server.client(), &config())
        .await
        .expect_err("no VWC");
    assert!(err.to_string().contains("hatrack"), "{err}");
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = certs::prepare(&server.client(), &config(), dir.path())
        .await
        .expect("prepare");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("tls.crt")).expect("tls.crt"),
        bundle.cert_pem
    );
}

#[tokio::test]
async fn run_writes_the_files_and_rewrites_them_after_a_renewal() {
    let server = ApiServer::start().await;
    seed_webhook_configuration(&server);
    let dir = tempfile::tempdir().expect("tempdir");
    let cert_file = dir.path().join("tls.crt");
    let key_file = dir.path().join("tls.key");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(certs::run(
        server.client(),
        config(),
        dir.path().to_path_buf(),
        Duration::from_millis(200),
        async {
            let _ = stop_rx.await;
        },
    ));
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
    let first = wait_for_change(&cert_file, "").await;
    assert_eq!(secret_data(&server)["tls.crt"], first.as_str());
    assert_eq!(secret_data(&server)["tls.key"], read(&key_file).as_str());

    // Time passes: the stored certificate is now 10 days from expiry.
    seed_secret(&server, &bundle_expiring(1000, 10));
    let renewed = wait_for_change(&cert_file, &first).await;
    assert!(days_left(&renewed) >= 364);
    assert_eq!(secret_data(&server)["tls.crt"], renewed.as_str());
    assert_eq!(secret_data(&server)["tls.key"], read(&key_file).as_str());
    assert!(
        !dir.path().join(".tls.crt.tmp").exists(),
        "no temporary file left behind"
    );
    stop_tx.send(()).expect("stop");
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("run stops on shutdown")
        .expect("no panic");
}

async fn wait_for_change(path: &std::path::Path, old: &str) -> String {
    let limit = Duration::from_secs(10);
    let start = std::time::Instant::now();
    loop {
        let now = std::fs::read_to_string(path).unwrap_or_default();
        if !now.is_empty() && now != old {
            return now;
        }
        assert!(start.elapsed() < limit, "{} did not change", path.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
