//! The webhook over real HTTPS: the corpus, modes, UPDATE, bad input, health, metrics and
//! certificate rotation without restart.

#[path = "corpus/expect.rs"]
mod expect;
#[path = "corpus/harness.rs"]
mod harness;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hatrack::check::view_from_documents;
use hatrack::detect::{InMemoryView, Mode, NoLookups, PodTemplates, ReferenceView, templates};
use hatrack::manifest::load_paths;
use serde_json::{Value, json};

use harness::{review_for, start};

fn deployment(ns: &str, env: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "app", "namespace": ns},
        "spec": {"replicas": 1, "template": {"metadata": {"labels": {"app": "a"}},
            "spec": {"serviceAccountName": "app", "containers": [{"name": "app", "image": "nginx", "env": env}]}}}
    })
}

#[tokio::test]
async fn corpus_decisions_over_https_match_the_expectations() {
    let mut failures = Vec::new();
    let mut reviewed = 0;
    for (file, expected) in expect::webhook_corpus() {
        let docs = load_paths(&[&file]).unwrap();
        let (mut view, errors) = view_from_documents(&docs, "default");
        assert!(errors.is_empty(), "{errors:?}");
        // The file's objects are the cluster, as the webhook's watch caches would see it.
        view.set_partial(false);
        let server = start(Mode::Enforce, Arc::new(view)).await;
        for (i, doc) in docs
            .iter()
            .filter(|d| {
                PodTemplates::default().is_workload(templates::group_of(d.api_version()), d.kind())
            })
            .enumerate()
        {
            let ns = doc.namespace().unwrap_or("default");
            let exp = expected
                .iter()
                .find(|e| e.kind == doc.kind() && e.name == doc.name() && e.namespace == ns)
                .unwrap_or_else(|| panic!("{}: no expectation for {}", file.display(), doc.name()));
            let mut object = doc.object.clone();
            object["metadata"]["namespace"] = json!(ns);
            let uid = format!("corpus-{i}-{}", doc.name());
            let resp = server.admit_create(&object, &uid).await;
            reviewed += 1;
            let allowed = resp["allowed"].as_bool().unwrap();
            let warnings = resp["warnings"].as_array().map(Vec::len).unwrap_or(0);
            let verdict = match (allowed, warnings) {
                (false, _) => "deny",
                (true, 0) => "allow",
                (true, _) => "warn",
            };
            if verdict != exp.verdict {
                failures.push(format!(
                    "{}: {} expected {} got {verdict}: {resp}",
                    file.display(),
                    doc.name(),
                    exp.verdict
                ));
                continue;
            }
            if verdict == "deny" {
                let msg = resp["status"]["message"].as_str().unwrap();
                for rule in &exp.rules {
                    if !msg.contains(&format!("[{rule}]")) {
                        failures.push(format!(
                            "{}: deny message lacks {rule}: {msg}",
                            file.display()
                        ));
                    }
                }
                assert_eq!(resp["status"]["code"], 403);
            }
            // Audit annotations list the rules found, whatever the mode (exempt: none).
            let mut rules = exp.rules.clone();
            rules.dedup();
            let annotated = resp["auditAnnotations"]["static-keys"]
                .as_str()
                .unwrap_or("");
            let mut got: Vec<&str> = annotated.split(',').filter(|s| !s.is_empty()).collect();
            got.sort();
            if got != rules.iter().map(String::as_str).collect::<Vec<_>>() {
                failures.push(format!(
                    "{}: annotations {annotated:?} != {rules:?}",
                    file.display()
                ));
            }
        }
        server.stop().await;
    }
    assert!(reviewed >= 40, "only {reviewed} reviews");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn denies_pod_with_access_key_in_env_and_allows_update_of_existing_violator() {
    let server = start(Mode::Enforce, Arc::new(NoLookups)).await;
    let bad = deployment(
        "team",
        json!([{"name": "AWS_ACCESS_KEY_ID", "value": "AKIA2E3PLKXQ7RMD4VNW"}]),
    );
    let resp = server.admit_create(&bad, "u-1").await;
    assert_eq!(resp["allowed"], false);
    let msg = resp["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains("[env-static-key] container 'app', spec.template.spec.containers[0].env[0]"),
        "{msg}"
    );
    assert!(!msg.contains("AKIA2E3PLKXQ7RMD4VNW"), "key echoed: {msg}");

    // Scaling or changing the image of the existing violator is allowed, with a warning.
    let mut scaled = bad.clone();
    scaled["spec"]["replicas"] = json!(3);
    scaled["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
    let resp = server
        .admit(&review_for("UPDATE", &scaled, Some(&bad), "u-2"))
        .await;
    assert_eq!(resp["allowed"], true, "{resp}");
    assert!(
        resp["warnings"][0]
            .as_str()
            .unwrap()
            .contains("already present")
    );

    // Adding a second key in the same UPDATE is denied.
    let mut worse = bad.clone();
    worse["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "AWS_SECRET_ACCESS_KEY", "value": "x"}));
    let resp = server
        .admit(&review_for("UPDATE", &worse, Some(&bad), "u-3"))
        .await;
    assert_eq!(resp["allowed"], false);
    server.stop().await;
}

#[tokio::test]
async fn namespace_label_overrides_the_global_mode() {
    let mut view = InMemoryView::new();
    view.set_namespace_mode("migrating", Mode::Warn);
    view.set_namespace_mode("strict", Mode::Enforce);
    let server = start(Mode::Audit, Arc::new(view)).await;
    let env = json!([{"name": "AWS_SECRET_ACCESS_KEY", "value": "x"}]);
    let resp = server
        .admit_create(&deployment("migrating", env.clone()), "a")
        .await;
    assert_eq!(
        (
            resp["allowed"].as_bool(),
            resp["warnings"].as_array().map(Vec::len)
        ),
        (Some(true), Some(1))
    );
    let resp = server
        .admit_create(&deployment("strict", env.clone()), "b")
        .await;
    assert_eq!(resp["allowed"], false);
    let resp = server.admit_create(&deployment("other", env), "c").await;
    assert_eq!(resp["allowed"], true);
    assert!(resp.get("warnings").is_none());
    server.stop().await;
}

#[tokio::test]
async fn bad_input_gets_clear_http_errors_and_the_server_survives() {
    let server = start(Mode::Enforce, Arc::new(NoLookups)).await;
    let (status, body) = server.post("this is not json").await;
    assert_eq!(status, 400);
    assert!(body.contains("body is not JSON"), "{body}");
    let (status, body) = server
        .post(r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#)
        .await;
    assert_eq!(status, 400);
    assert!(body.contains("no request"), "{body}");
    let (status, body) = server
        .post(r#"{"kind":"Pod","metadata":{"name":"p"}}"#)
        .await;
    assert_eq!(status, 400, "{body}");

    // Too large: refused with 413 before parsing.
    let huge = vec![b' '; 300 * 1024];
    let (status, _) = server.post(huge).await;
    assert_eq!(status, 413);

    // A review whose object cannot be read: answered, with the uid, and denied.
    let mut review = review_for("CREATE", &deployment("team", json!([])), None, "bad-obj");
    review["request"]["object"]["metadata"] = json!("not a mapping");
    let resp = server.admit(&review).await;
    assert_eq!(resp["allowed"], false);
    assert!(
        resp["status"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot read"),
        "{resp}"
    );

    let health = server.get("/healthz").await;
    assert_eq!(health.status(), 200);
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("hatrack_webhook_bad_requests_total{reason=\"not_json\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hatrack_webhook_bad_requests_total{reason=\"body\"} 1"),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test]
async fn health_readiness_and_metrics_by_mode_and_rule() {
    struct NotSynced;
    impl ReferenceView for NotSynced {
        fn lookup(&self, _: hatrack::detect::RefKind, _: &str, _: &str) -> hatrack::detect::Lookup {
            hatrack::detect::Lookup::Missing
        }
        fn ready(&self) -> bool {
            false
        }
    }
    let server = start(Mode::Enforce, Arc::new(NotSynced)).await;
    assert_eq!(server.get("/healthz").await.status(), 200);
    assert_eq!(server.get("/readyz").await.status(), 503);
    server.stop().await;

    let server = start(Mode::Enforce, Arc::new(NoLookups)).await;
    assert_eq!(server.get("/readyz").await.status(), 200);
    let bad = deployment("team", json!([{"name": "AWS_ACCESS_KEY_ID", "value": "x"}]));
    server.admit_create(&bad, "m-1").await;
    server
        .admit_create(&deployment("team", json!([])), "m-2")
        .await;
    server.admit_create(&bad, "m-3").await;
    let text = server.metrics().await;
    assert!(text.contains(r#"hatrack_webhook_decisions_total{mode="enforce",decision="deny",rule="env-static-key"} 2"#), "{text}");
    assert!(
        text.contains(
            r#"hatrack_webhook_decisions_total{mode="enforce",decision="allow",rule="none"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains("hatrack_webhook_review_duration_seconds_count 3"),
        "{text}"
    );
    let expiry = hatrack::certs::not_after(&server.pki.cert_pem)
        .unwrap()
        .as_second();
    assert!(
        text.contains(&format!(
            "hatrack_webhook_certificate_expiry_timestamp_seconds {expiry}"
        )),
        "{text}"
    );
    server.stop().await;
}

#[tokio::test]
async fn http2_and_http1_clients_are_both_served() {
    let server = start(Mode::Enforce, Arc::new(NoLookups)).await;
    let resp = server.get("/healthz").await;
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let h1 = harness::client_with_alpn(&server.pki.ca_pem, &[b"http/1.1"]);
    let resp = server.get_with(&h1, "/healthz").await;
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    assert_eq!(resp.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn rotated_certificate_is_picked_up_without_restart() {
    let server = start(Mode::Enforce, Arc::new(NoLookups)).await;
    let old_client = harness::client_trusting(&server.pki.ca_pem);
    assert_eq!(server.get_with(&old_client, "/healthz").await.status(), 200);

    // A new CA and certificate, written the way kubelet updates a Secret volume: new files
    // then a rename, so the reloader never sees a half-written file.
    let rotated = harness::pki("hatrack rotated CA");
    let dir = server.dir.path();
    std::fs::write(dir.join("tls.key.new"), &rotated.key_pem).unwrap();
    std::fs::write(dir.join("tls.crt.new"), &rotated.cert_pem).unwrap();
    std::fs::rename(dir.join("tls.key.new"), &server.key_path).unwrap();
    std::fs::rename(dir.join("tls.crt.new"), &server.cert_path).unwrap();

    let new_client = harness::client_trusting(&rotated.ca_pem);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(r) = new_client.get(server.url("/healthz")).send().await {
            assert_eq!(r.status(), 200);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rotated certificate not served within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // New connections from a client that only trusts the old CA now fail.
    assert!(old_client.get(server.url("/healthz")).send().await.is_err());
    let text = server.metrics().await;
    assert!(
        text.contains(r#"hatrack_webhook_tls_reloads_total{result="ok"} 1"#),
        "{text}"
    );
    // The expiry gauge follows the certificate actually served.
    let expiry = hatrack::certs::not_after(&rotated.cert_pem)
        .unwrap()
        .as_second();
    assert!(
        text.contains(&format!(
            "hatrack_webhook_certificate_expiry_timestamp_seconds {expiry}"
        )),
        "{text}"
    );

    // A broken certificate file is refused; the server keeps serving the last good one.
    std::fs::write(&server.cert_path, "-----BEGIN CERTIFICATE-----\nnope\n").unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(server.get_with(&new_client, "/healthz").await.status(), 200);
    server.stop().await;
}

/// Why `webhook::start` refuses these arguments (it must refuse them).
async fn start_error(args: &hatrack::webhook::WebhookArgs) -> String {
    hatrack::webhook::start(
        args,
        Arc::new(NoLookups),
        Arc::new(hatrack::webhook::bindings::StaticBindingView::default()),
    )
    .await
    .err()
    .expect("start fails")
    .to_string()
}

#[tokio::test]
async fn start_fails_clearly_without_a_usable_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let args = harness::args(dir.path(), Mode::Enforce, hatrack::webhook::Lookups::Off);
    let err = start_error(&args).await;
    assert!(err.contains("tls.crt"), "{err}");
    std::fs::write(dir.path().join("tls.crt"), "garbage").unwrap();
    std::fs::write(dir.path().join("tls.key"), "garbage").unwrap();
    let err = start_error(&args).await;
    assert!(err.contains("no PEM certificate"), "{err}");
}
