//! The webhook against slow and hostile clients, over real TLS: stalled handshakes, headers
//! and bodies are cut off, bodies over the limit get 413, connections over the limit wait,
//! and honest requests are answered meanwhile. Also the defaults that decide what is judged:
//! kube-system in warn mode, optional references with lookups off.
//!
//! No timed assertions: the timeouts are short so that the tests end soon, and each wait for
//! the server has a generous guard that only turns a hang into a failure.

#[path = "corpus/harness.rs"]
mod harness;

use std::sync::Arc;
use std::time::Duration;

use harness::{TestServer, review_for, start_with_args};
use hatrack::detect::{Mode, NoLookups};
use hatrack::webhook::bindings::StaticBindingView;
use hatrack::webhook::{WebhookArgs, limits::LimitArgs};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Long enough for any machine; reaching it means the server never closed or answered.
const GUARD: Duration = Duration::from_secs(60);

async fn start(change: impl FnOnce(&mut WebhookArgs)) -> TestServer {
    start_with_args(
        Mode::Enforce,
        Arc::new(NoLookups),
        Arc::new(StaticBindingView::default()),
        change,
    )
    .await
}

fn short_limits() -> LimitArgs {
    LimitArgs {
        max_connections: 64,
        tls_handshake_timeout: Duration::from_millis(300),
        header_read_timeout: Duration::from_millis(300),
        request_timeout: Duration::from_millis(300),
        large_bodies: 2,
    }
}

/// A TLS connection to the webhook offering `alpn`, handshake done.
async fn tls(server: &TestServer, alpn: &[u8]) -> TlsStream<TcpStream> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(server.pki.ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = TcpStream::connect(server.running.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(
        GUARD,
        TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .expect("handshake within the guard")
    .expect("TLS handshake")
}

/// Reads until the server closes the connection; returns what it sent.
async fn read_until_closed(stream: &mut (impl AsyncReadExt + Unpin)) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(GUARD, stream.read(&mut buf)).await {
            Err(_) => panic!(
                "the server kept an idle connection open; it sent: {}",
                String::from_utf8_lossy(&got)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => return String::from_utf8_lossy(&got).into_owned(),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

const HEAD: &str =
    "POST /validate/workloads HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n";

#[tokio::test]
async fn a_request_idle_mid_body_gets_408_and_its_connection_is_closed() {
    let server = start(|a| a.limits = short_limits()).await;
    let mut conn = tls(&server, b"http/1.1").await;
    conn.write_all(format!("{HEAD}Content-Length: 1000\r\n\r\n{{\"apiVersion\":").as_bytes())
        .await
        .unwrap();
    conn.flush().await.unwrap();
    let answer = read_until_closed(&mut conn).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // The server is still there for others.
    assert_eq!(server.get("/healthz").await.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn clients_that_stall_before_a_request_is_read_are_disconnected() {
    let server = start(|a| a.limits = short_limits()).await;
    // Headers that never end.
    let mut conn = tls(&server, b"http/1.1").await;
    conn.write_all(b"POST /validate/workloads HTTP/1.1\r\nHost: localh")
        .await
        .unwrap();
    conn.flush().await.unwrap();
    let answer = read_until_closed(&mut conn).await;
    assert!(!answer.contains(" 200 "), "{answer}");
    // An HTTP/2 connection that never sends a request.
    let mut h2 = tls(&server, b"h2").await;
    read_until_closed(&mut h2).await;
    // A TCP connection that never starts the TLS handshake.
    let mut tcp = TcpStream::connect(server.running.addr).await.unwrap();
    assert_eq!(read_until_closed(&mut tcp).await, "");
    // A keep-alive connection idle after its request is closed too (the header read timeout
    // covers the wait for the next request).
    let mut conn = tls(&server, b"http/1.1").await;
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut conn).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    server.stop().await;
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_with_or_without_a_length() {
    let server = start(|a| {
        a.max_body_bytes = 64 * 1024;
        a.limits = LimitArgs {
            request_timeout: Duration::from_secs(30),
            ..short_limits()
        };
    })
    .await;
    // A declared length over the limit: refused before a byte of the body is sent.
    let mut conn = tls(&server, b"http/1.1").await;
    conn.write_all(format!("{HEAD}Content-Length: 6553601\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let answer = read_until_closed(&mut conn).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("over the limit of 65536 bytes"), "{answer}");
    // No length (chunked): cut off once the limit is passed.
    let mut conn = tls(&server, b"http/1.1").await;
    conn.write_all(format!("{HEAD}Transfer-Encoding: chunked\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let chunk = vec![b' '; 16 * 1024];
    for _ in 0..5 {
        let mut piece = format!("{:x}\r\n", chunk.len()).into_bytes();
        piece.extend_from_slice(&chunk);
        piece.extend_from_slice(b"\r\n");
        if conn.write_all(&piece).await.is_err() {
            break;
        }
    }
    let _ = conn.flush().await;
    let answer = read_until_closed(&mut conn).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // Under the limit: answered.
    let object = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "app", "namespace": "team"},
        "spec": {"template": {"spec": {"containers": [{"name": "a", "image": "nginx"}]}}}});
    let resp = server.admit_create(&object, "small").await;
    assert_eq!(resp["allowed"], true, "{resp}");
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("hatrack_webhook_bad_requests_total{reason=\"body\"} 2"),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test]
async fn connections_over_the_limit_wait_until_one_closes() {
    let server = start(|a| {
        a.limits = LimitArgs {
            max_connections: 2,
            // Long: the two holders stay until this test closes them.
            header_read_timeout: Duration::from_secs(600),
            tls_handshake_timeout: Duration::from_secs(600),
            request_timeout: Duration::from_secs(600),
            large_bodies: 2,
        }
    })
    .await;
    let first = tls(&server, b"http/1.1").await;
    let second = tls(&server, b"http/1.1").await;
    let client = server.client.clone();
    let url = server.url("/healthz");
    let honest = tokio::spawn(async move { client.get(url).send().await.map(|r| r.status()) });
    // While both connections are held, the third is not served (it waits in the backlog).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !honest.is_finished(),
        "a third connection was served: {:?}",
        honest.await
    );
    drop(first);
    let status = tokio::time::timeout(GUARD, honest)
        .await
        .expect("served once a connection closed")
        .unwrap()
        .expect("an answer");
    assert_eq!(status, 200);
    drop(second);
    server.stop().await;
}

#[tokio::test]
async fn honest_requests_are_answered_while_slow_clients_take_every_connection() {
    let server = start(|a| {
        a.limits = LimitArgs {
            max_connections: 4,
            ..short_limits()
        }
    })
    .await;
    // Twice as many slow clients as connections, each stalling mid-body and reconnecting when
    // cut off, until the test ends.
    let mut slow = Vec::new();
    for _ in 0..8 {
        let addr = server.running.addr;
        let ca = server.pki.ca_pem.clone();
        slow.push(tokio::spawn(async move {
            loop {
                let Ok(tcp) = TcpStream::connect(addr).await else {
                    continue;
                };
                let mut roots = rustls::RootCertStore::empty();
                use rustls::pki_types::pem::PemObject;
                for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca.as_bytes()) {
                    roots.add(cert.unwrap()).unwrap();
                }
                let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
                let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                let Ok(mut conn) = TlsConnector::from(Arc::new(config))
                    .connect(name, tcp)
                    .await
                else {
                    continue;
                };
                let _ = conn
                    .write_all(format!("{HEAD}Content-Length: 60000\r\n\r\n{{").as_bytes())
                    .await;
                let _ = conn.flush().await;
                let mut sink = Vec::new();
                let _ = conn.read_to_end(&mut sink).await;
            }
        }));
    }
    let object = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "app", "namespace": "team"},
        "spec": {"template": {"spec": {"containers": [{"name": "a", "image": "nginx",
            "env": [{"name": "AWS_SECRET_ACCESS_KEY", "value": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}]}]}}}});
    for i in 0..10 {
        let resp = server.admit_create(&object, &format!("honest-{i}")).await;
        assert_eq!(resp["allowed"], false, "{resp}");
    }
    for task in slow {
        task.abort();
    }
    server.stop().await;
}

fn deployment(ns: &str, env: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "addon", "namespace": ns},
        "spec": {"template": {"spec": {"containers": [{"name": "a", "image": "nginx", "env": env}]}}}})
}

fn keys() -> Value {
    json!([
        {"name": "AWS_ACCESS_KEY_ID", "value": "AKIAIOSFODNN7EXAMPLE"},
        {"name": "AWS_SECRET_ACCESS_KEY", "value": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}
    ])
}

#[tokio::test]
async fn kube_system_is_judged_in_warn_mode_by_default_and_other_namespaces_are_enforced() {
    // The webhook's defaults (not the harness's exemptions).
    let server = start(|a| {
        a.policy.exempt_namespaces = vec!["hatrack-system".into()];
        a.system = Default::default();
    })
    .await;
    let resp = server
        .admit_create(&deployment("kube-system", keys()), "system")
        .await;
    assert_eq!(resp["allowed"], true, "{resp}");
    let warnings = resp["warnings"].to_string();
    assert!(warnings.contains("env-static-key"), "{resp}");
    let resp = server
        .admit_create(&deployment("team", keys()), "team")
        .await;
    assert_eq!(resp["allowed"], false, "{resp}");
    // The release namespace stays exempt: allowed without a word.
    let resp = server
        .admit_create(&deployment("hatrack-system", keys()), "own")
        .await;
    assert_eq!(resp["allowed"], true, "{resp}");
    assert!(resp["warnings"].is_null(), "{resp}");
    let metrics = server.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("hatrack_webhook_decisions_total{")
                && l.contains("mode=\"warn\"")),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test]
async fn with_lookups_off_optional_secret_references_are_warned_not_denied() {
    // The EBS CSI driver's env: AWS_* from an optional Secret that IRSA installs never create.
    let optional = |optional: bool| {
        json!([
            {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {"name": "aws-secret", "key": "key_id", "optional": optional}}},
            {"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": {"secretKeyRef": {"name": "aws-secret", "key": "access_key", "optional": optional}}}
        ])
    };
    let server = start(|_| {}).await;
    let review = review_for("CREATE", &deployment("team", optional(true)), None, "opt");
    let resp = server.admit(&review).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    assert!(
        resp["warnings"]
            .to_string()
            .contains("optional Secret team/aws-secret is not read (lookups are off)"),
        "{resp}"
    );
    // Not optional: the names still decide.
    let resp = server
        .admit_create(&deployment("team", optional(false)), "required")
        .await;
    assert_eq!(resp["allowed"], false, "{resp}");
    server.stop().await;
}
