//! Self-managed webhook certificates: the pure parts (generation, expiry, renewal plans)
//! and the Secret / caBundle / files edge against the real test API server (a fresh
//! namespace and webhook configuration per test). A renewal conflict needs an injected 409:
//! that one test runs against the in-process stand-in.

use hatrack_test_support as support;

use std::time::Duration;

use hatrack::certs::{self, CertBundle, CertConfig};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};
use support::apiserver::ApiServer;
use support::cluster::cluster;
use support::controller::RequestLog;
use x509_parser::prelude::*;

const SECRET_NAME: &str = "hatrack-webhook-tls";

fn config_in(namespace: &str, webhook_configuration_name: &str) -> CertConfig {
    CertConfig {
        namespace: namespace.into(),
        secret_name: SECRET_NAME.into(),
        service_name: "hatrack-webhook".into(),
        webhook_configuration_name: webhook_configuration_name.into(),
        renew_before: certs::DEFAULT_RENEW_BEFORE,
        extra_names: Vec::new(),
    }
}

fn config() -> CertConfig {
    config_in("hatrack-system", "hatrack")
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

/// The chart's two webhooks, by URL (a stored webhook naming a Service would make the API
/// server dial a cluster IP) and without rules: the API server never calls them.
fn webhook_configuration(name: &str) -> Value {
    let webhook = |webhook: &str, path: &str| {
        json!({"name": webhook, "admissionReviewVersions": ["v1"], "sideEffects": "None",
               "failurePolicy": "Ignore",
               "clientConfig": {"url": format!("https://127.0.0.1:9/{path}")}})
    };
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            webhook("workloads.hatrack.dev", "validate/workloads"),
            webhook("iamrolebindings.hatrack.dev", "validate/iamrolebindings"),
        ]
    })
}

fn secret(namespace: &str, bundle: &CertBundle) -> Secret {
    let b64 = |s: &str| {
        serde_json::to_value(k8s_openapi::ByteString(s.as_bytes().to_vec())).expect("b64")
    };
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": SECRET_NAME, "namespace": namespace},
        "type": "kubernetes.io/tls",
        "data": {
            "ca.crt": b64(&bundle.ca_bundle), "ca.key": b64(&bundle.ca_key_pem),
            "tls.crt": b64(&bundle.cert_pem), "tls.key": b64(&bundle.key_pem)
        }
    }))
    .expect("secret")
}

/// One test's place on the real API server: a fresh namespace for the Secret and a webhook
/// configuration of its own (they are cluster-wide; `cleanup` deletes it at the end).
struct Place {
    client: kube::Client,
    config: CertConfig,
}

impl Place {
    /// A fresh namespace; the webhook configuration exists if `with_webhooks`.
    async fn new(with_webhooks: bool) -> Place {
        let cluster = cluster().await;
        let ns = cluster.namespace("certs").await;
        let client = cluster.client().await;
        let config = config_in(&ns, &format!("hatrack-{ns}"));
        if with_webhooks {
            let vwcs: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
            vwcs.create(
                &PostParams::default(),
                &serde_json::from_value(webhook_configuration(&config.webhook_configuration_name))
                    .expect("webhook configuration"),
            )
            .await
            .expect("create webhook configuration");
        }
        Place { client, config }
    }

    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.config.namespace)
    }

    /// Stores `bundle` in the Secret, creating or replacing it.
    async fn seed_secret(&self, bundle: &CertBundle) {
        let mut s = secret(&self.config.namespace, bundle);
        match self
            .secrets()
            .get_opt(SECRET_NAME)
            .await
            .expect("get secret")
        {
            Some(old) => {
                s.metadata.resource_version = old.metadata.resource_version;
                self.secrets()
                    .replace(SECRET_NAME, &PostParams::default(), &s)
                    .await
                    .expect("replace secret");
            }
            None => {
                self.secrets()
                    .create(&PostParams::default(), &s)
                    .await
                    .expect("create secret");
            }
        }
    }

    /// The Secret's data, decoded.
    async fn secret_data(&self) -> serde_json::Map<String, Value> {
        let secret = self
            .secrets()
            .get(SECRET_NAME)
            .await
            .expect("Secret exists");
        secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, Value::String(String::from_utf8(v.0).expect("utf-8"))))
            .collect()
    }

    async fn ca_bundles(&self) -> Vec<String> {
        let vwcs: Api<ValidatingWebhookConfiguration> = Api::all(self.client.clone());
        let vwc = vwcs
            .get(&self.config.webhook_configuration_name)
            .await
            .expect("VWC");
        vwc.webhooks
            .unwrap_or_default()
            .into_iter()
            .map(|w| {
                String::from_utf8(w.client_config.ca_bundle.expect("caBundle set").0)
                    .expect("utf-8")
            })
            .collect()
    }

    /// Deletes the cluster-wide webhook configuration (namespaces are never deleted here).
    async fn cleanup(self) {
        let vwcs: Api<ValidatingWebhookConfiguration> = Api::all(self.client.clone());
        let _ = vwcs
            .delete(
                &self.config.webhook_configuration_name,
                &DeleteParams::default(),
            )
            .await;
    }
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
    let place = Place::new(true).await;
    let bundle = certs::ensure(&place.client, &place.config)
        .await
        .expect("ensure");
    let data = place.secret_data().await;
    assert_eq!(data["tls.crt"], bundle.cert_pem.as_str());
    assert_eq!(data["ca.crt"], bundle.ca_bundle.as_str());
    let secret = place.secrets().get(SECRET_NAME).await.expect("secret");
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    assert_eq!(
        place.ca_bundles().await,
        [bundle.ca_bundle.clone(), bundle.ca_bundle.clone()]
    );
    assert!(signed_by(&bundle.cert_pem, &bundle.ca_bundle));
    place.cleanup().await;
}

#[tokio::test]
async fn secret_keys_hold_nothing_but_pem() {
    let place = Place::new(true).await;
    certs::ensure(&place.client, &place.config)
        .await
        .expect("ensure");
    let data = place.secret_data().await;
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
    place.cleanup().await;
}

#[tokio::test]
async fn a_second_replica_reuses_the_secret() {
    let place = Place::new(true).await;
    // Each replica's client logs its requests: what the API server cannot count for us.
    let cluster = cluster().await;
    let (log1, log2) = (RequestLog::default(), RequestLog::default());
    let first = certs::ensure(&log1.client(&cluster.kubeconfig).await, &place.config)
        .await
        .expect("first");
    let second = certs::ensure(&log2.client(&cluster.kubeconfig).await, &place.config)
        .await
        .expect("second");
    assert_eq!(first, second);
    let count = |log: &RequestLog, method: &str, path: &str| {
        log.requests()
            .iter()
            .filter(|r| r.method == method && r.path.contains(path))
            .count()
    };
    assert_eq!(count(&log1, "POST", "/secrets"), 1, "the first creates it");
    assert_eq!(count(&log2, "POST", "/secrets"), 0);
    assert_eq!(count(&log2, "PUT", "/secrets"), 0);
    assert_eq!(
        count(&log2, "PUT", "validatingwebhookconfigurations"),
        0,
        "an up-to-date caBundle is not rewritten"
    );
    place.cleanup().await;
}

#[tokio::test]
async fn replicas_starting_together_agree_on_one_certificate() {
    let place = Place::new(true).await;
    let cluster = cluster().await;
    let (c1, c2, c3) = (
        cluster.client().await,
        cluster.client().await,
        cluster.client().await,
    );
    let cfg = &place.config;
    let (a, b, c) = tokio::join!(
        certs::ensure(&c1, cfg),
        certs::ensure(&c2, cfg),
        certs::ensure(&c3, cfg)
    );
    let (a, b, c) = (a.expect("a"), b.expect("b"), c.expect("c"));
    assert_eq!(a, b);
    assert_eq!(b, c);
    assert_eq!(place.secret_data().await["tls.crt"], a.cert_pem.as_str());
    assert_eq!(place.ca_bundles().await[0], a.ca_bundle);
    place.cleanup().await;
}

#[tokio::test]
async fn a_serving_cert_near_expiry_is_renewed_in_the_secret() {
    let place = Place::new(true).await;
    let old = bundle_expiring(1000, 10);
    place.seed_secret(&old).await;
    let renewed = certs::ensure(&place.client, &place.config)
        .await
        .expect("ensure");
    assert_ne!(renewed.cert_pem, old.cert_pem);
    assert!(days_left(&renewed.cert_pem) >= 364);
    assert_eq!(renewed.ca_bundle, old.ca_bundle, "the CA is kept");
    assert_eq!(
        place.secret_data().await["tls.crt"],
        renewed.cert_pem.as_str()
    );
    assert_eq!(place.ca_bundles().await[1], old.ca_bundle);
    place.cleanup().await;
}

#[tokio::test]
async fn a_ca_near_expiry_is_rotated_and_the_ca_bundle_trusts_old_and_new() {
    let place = Place::new(true).await;
    let old = bundle_expiring(10, 9);
    place.seed_secret(&old).await;
    let renewed = certs::ensure(&place.client, &place.config)
        .await
        .expect("ensure");
    let bundles = place.ca_bundles().await;
    let cas = certs::pem_certificates(&bundles[0]);
    assert_eq!(cas.len(), 2, "old and new CA during the overlap");
    assert!(signed_by(&renewed.cert_pem, &cas[0]));
    assert!(
        signed_by(&old.cert_pem, &cas[1]),
        "pods still serving the old cert stay trusted"
    );
    assert_eq!(bundles[0], bundles[1]);
    place.cleanup().await;
}

#[tokio::test]
async fn a_renewal_conflict_rereads_the_secret_and_retries() {
    // An injected 409 on the first replace: the stand-in.
    const SECRETS: &str = "/api/v1/namespaces/hatrack-system/secrets";
    const SECRET: &str = "/api/v1/namespaces/hatrack-system/secrets/hatrack-webhook-tls";
    const VWCS: &str = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations";
    let server = ApiServer::start().await;
    server.put_object(VWCS, webhook_configuration("hatrack"));
    server.put_object(
        SECRETS,
        serde_json::to_value(secret("hatrack-system", &bundle_expiring(1000, 10))).expect("json"),
    );
    server
        .faults()
        .fail_next(1, "PUT", "/secrets/hatrack-webhook-tls", 409);
    let renewed = certs::ensure(&server.client(), &config())
        .await
        .expect("ensure");
    let count = |method: &str, path: &str| {
        server
            .requests()
            .iter()
            .filter(|r| r.method == method && r.path.contains(path))
            .count()
    };
    assert_eq!(count("PUT", "/secrets/"), 2, "one conflict, one success");
    assert!(count("GET", "/secrets/hatrack-webhook-tls") >= 2, "re-read");
    let stored: Secret =
        serde_json::from_value(server.get_object(SECRET).expect("secret")).expect("secret");
    let tls = stored
        .data
        .expect("data")
        .remove("tls.crt")
        .expect("tls.crt");
    assert_eq!(String::from_utf8(tls.0).expect("utf-8"), renewed.cert_pem);
}

#[tokio::test]
async fn a_missing_webhook_configuration_is_reported_but_prepare_still_writes_files() {
    let place = Place::new(false).await;
    let err = certs::ensure(&place.client, &place.config)
        .await
        .expect_err("no VWC");
    assert!(
        err.to_string()
            .contains(&place.config.webhook_configuration_name),
        "{err}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = certs::prepare(&place.client, &place.config, dir.path())
        .await
        .expect("prepare");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("tls.crt")).expect("tls.crt"),
        bundle.cert_pem
    );
}

#[tokio::test]
async fn run_writes_the_files_and_rewrites_them_after_a_renewal() {
    let place = Place::new(true).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cert_file = dir.path().join("tls.crt");
    let key_file = dir.path().join("tls.key");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(certs::run(
        place.client.clone(),
        place.config.clone(),
        dir.path().to_path_buf(),
        Duration::from_millis(200),
        async {
            let _ = stop_rx.await;
        },
    ));
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
    let first = wait_for_change(&cert_file, "").await;
    // The files are written before or after the Secret: wait until the key file matches too.
    let data = place.secret_data().await;
    assert_eq!(data["tls.crt"], first.as_str());
    wait_for_change(&key_file, "").await;
    assert_eq!(data["tls.key"], read(&key_file).as_str());

    // Time passes: the stored certificate is now 10 days from expiry.
    place.seed_secret(&bundle_expiring(1000, 10)).await;
    let renewed = wait_for_change(&cert_file, &first).await;
    assert!(days_left(&renewed) >= 364);
    let data = place.secret_data().await;
    assert_eq!(data["tls.crt"], renewed.as_str());
    assert_eq!(data["tls.key"], read(&key_file).as_str());
    assert!(
        !dir.path().join(".tls.crt.tmp").exists(),
        "no temporary file left behind"
    );
    stop_tx.send(()).expect("stop");
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("run stops on shutdown")
        .expect("no panic");
    place.cleanup().await;
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
