//! A client that logs its requests: a real API server cannot say which requests one component
//! sent, its client can.

use std::sync::{Arc, Mutex};

/// One request a [`RequestLog`] client sent.
#[derive(Clone, Debug, PartialEq)]
pub struct LoggedRequest {
    pub method: String,
    pub path: String,
    /// Raw query string, "" when absent.
    pub query: String,
}

impl LoggedRequest {
    pub fn is_watch(&self) -> bool {
        self.query
            .split('&')
            .any(|p| p == "watch=true" || p == "watch=1")
    }
}

/// The requests of clients made by [`RequestLog::client`], recorded by a tower layer in the
/// client's stack: a real API server cannot say which requests one component sent, its
/// client can.
#[derive(Clone, Default)]
pub struct RequestLog(Arc<Mutex<Vec<LoggedRequest>>>);

impl RequestLog {
    /// A client for `kubeconfig` whose every request is logged here.
    pub async fn client(&self, kubeconfig: &std::path::Path) -> kube::Client {
        use kube::config::{KubeConfigOptions, Kubeconfig};
        let kc = Kubeconfig::read_from(kubeconfig)
            .unwrap_or_else(|e| panic!("read kubeconfig {}: {e}", kubeconfig.display()));
        let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .expect("kubeconfig");
        let log = self.0.clone();
        let layer =
            tower::util::MapRequestLayer::new(move |req: http::Request<kube::client::Body>| {
                if let Ok(mut log) = log.lock() {
                    log.push(LoggedRequest {
                        method: req.method().to_string(),
                        path: req.uri().path().to_string(),
                        query: req.uri().query().unwrap_or("").to_string(),
                    });
                }
                req
            });
        kube::client::ClientBuilder::try_from(config)
            .expect("client stack")
            .with_layer(&layer)
            .build()
    }

    /// Every request logged so far, oldest first.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.0.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub fn clear(&self) {
        if let Ok(mut l) = self.0.lock() {
            l.clear();
        }
    }
}
