//! An HTTP proxy in front of moto that answers half the IAM requests (seeded random) with
//! HTTP 400 `Throttling`, and counts what it passed and refused.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rand::{Rng, SeedableRng};

#[derive(Default)]
pub(super) struct ProxyStats {
    pub(super) requests: AtomicU64,
    pub(super) throttled: AtomicU64,
}

pub(super) const THROTTLING_BODY: &str = "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>x</RequestId></ErrorResponse>";

pub(super) async fn start_throttling_proxy(upstream: String, stats: Arc<ProxyStats>) -> String {
    use axum::body::{Body, Bytes};
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    use axum::response::Response;

    let client = reqwest::Client::builder()
        .build()
        .expect("proxy HTTP client");
    let rng = Arc::new(Mutex::new(rand::rngs::StdRng::seed_from_u64(6)));
    let handler = move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
        let client = client.clone();
        let upstream = upstream.clone();
        let stats = stats.clone();
        let rng = rng.clone();
        async move {
            stats.requests.fetch_add(1, Ordering::Relaxed);
            let throttle = rng.lock().map(|mut r| r.random_bool(0.5)).unwrap_or(false);
            if throttle {
                stats.throttled.fetch_add(1, Ordering::Relaxed);
                return Response::builder()
                    .status(StatusCode::BAD_REQUEST)
                    .header("content-type", "text/xml")
                    .body(Body::from(THROTTLING_BODY))
                    .unwrap();
            }
            let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            let mut req = client.request(method, format!("{upstream}{path}"));
            for (k, v) in &headers {
                if k != "host" && k != "content-length" {
                    req = req.header(k, v);
                }
            }
            match req.body(body).send().await {
                Ok(resp) => {
                    let mut out = Response::builder().status(resp.status());
                    if let Some(ct) = resp.headers().get("content-type") {
                        out = out.header("content-type", ct);
                    }
                    let bytes = resp.bytes().await.unwrap_or_default();
                    out.body(Body::from(bytes)).unwrap()
                }
                Err(e) => Response::builder()
                    .status(StatusCode::BAD_GATEWAY)
                    .body(Body::from(e.to_string()))
                    .unwrap(),
            }
        }
    };
    let app = axum::Router::new().fallback(handler);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind proxy");
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}
