//! Property tests: arbitrary bytes, arbitrary JSON and mutated AdmissionReviews never panic the
//! review core, and never take the HTTPS server down.

#[path = "corpus/expect.rs"]
mod expect;
#[path = "corpus/harness.rs"]
mod harness;

use std::sync::{Arc, OnceLock};

use hatrack::check::view_from_documents;
use hatrack::detect::{InMemoryView, Mode, is_workload_kind};
use hatrack::manifest::load_paths;
use hatrack::webhook::review::{Policy, review};
use proptest::prelude::*;
use serde_json::{Value, json};

const KEYS: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "name",
    "namespace",
    "spec",
    "template",
    "jobTemplate",
    "containers",
    "initContainers",
    "ephemeralContainers",
    "env",
    "envFrom",
    "value",
    "valueFrom",
    "secretKeyRef",
    "configMapKeyRef",
    "secretRef",
    "configMapRef",
    "key",
    "optional",
    "prefix",
    "args",
    "command",
    "volumes",
    "volumeMounts",
    "mountPath",
    "secret",
    "secretName",
    "configMap",
    "projected",
    "sources",
    "items",
    "serviceAccountName",
    "request",
    "uid",
    "object",
    "oldObject",
    "operation",
    "AWS_ACCESS_KEY_ID",
];

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)),
        "\\PC{0,24}".prop_map(Value::String),
        prop::sample::select(KEYS).prop_map(|k| json!(k)),
        Just(json!("AKIA2E3PLKXQ7RMD4VNW")),
        Just(json!("/credentials/cloud")),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..6).prop_map(|kv| {
                Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

/// Reviews built from the corpus workloads, with the view of their files.
fn corpus_reviews() -> &'static Vec<(Value, Arc<InMemoryView>)> {
    static REVIEWS: OnceLock<Vec<(Value, Arc<InMemoryView>)>> = OnceLock::new();
    REVIEWS.get_or_init(|| {
        let mut out = Vec::new();
        for (file, _) in expect::corpus() {
            let docs = load_paths(&[&file]).unwrap();
            let view = Arc::new(view_from_documents(&docs, "default").0);
            for doc in docs.iter().filter(|d| is_workload_kind(d.kind())) {
                let op = if out.len() % 2 == 0 {
                    "CREATE"
                } else {
                    "UPDATE"
                };
                let old = (op == "UPDATE").then_some(&doc.object);
                out.push((
                    harness::review_for(op, &doc.object, old, "fuzz-uid"),
                    view.clone(),
                ));
            }
        }
        out
    })
}

fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                pointers(
                    child,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                pointers(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Replace(Value),
    Remove,
    Duplicate,
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => arb_json().prop_map(Mutation::Replace),
        1 => Just(Mutation::Remove),
        1 => Just(Mutation::Duplicate),
    ]
}

/// Applies up to three mutations at pseudo-random nodes of the review.
fn mutate(mut review: Value, picks: &[(usize, Mutation)]) -> Value {
    for (pick, m) in picks {
        let mut ptrs = Vec::new();
        pointers(&review, String::new(), &mut ptrs);
        let ptr = &ptrs[pick % ptrs.len()];
        if ptr.is_empty() {
            if let Mutation::Replace(v) = m {
                review = v.clone();
            }
            continue;
        }
        let (parent_ptr, last) = ptr.rsplit_once('/').unwrap();
        let current = review.pointer(ptr).cloned();
        let Some(parent) = review.pointer_mut(parent_ptr) else {
            continue;
        };
        match (m, parent) {
            (Mutation::Replace(v), p) => {
                if let Some(slot) = p.pointer_mut(&format!("/{last}")) {
                    *slot = v.clone();
                }
            }
            (Mutation::Remove, Value::Object(map)) => {
                map.remove(&last.replace("~1", "/").replace("~0", "~"));
            }
            (Mutation::Remove, Value::Array(a)) => {
                if let Ok(i) = last.parse::<usize>()
                    && i < a.len()
                {
                    a.remove(i);
                }
            }
            (Mutation::Duplicate, Value::Array(a)) => {
                if let Some(c) = current {
                    a.push(c);
                }
            }
            _ => {}
        }
    }
    review
}

fn policy(mode: Mode) -> Policy {
    Policy {
        mode,
        exempt_namespaces: ["kube-system".to_string()].into(),
        templates: Default::default(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_the_review_core(body in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = review(&body, &policy(Mode::Enforce), &hatrack::detect::NoLookups);
    }

    #[test]
    fn arbitrary_json_as_object_never_panics_and_keeps_the_uid(object in arb_json(), kind in prop::sample::select(&["Pod", "Deployment", "CronJob", "Job", "Service"][..])) {
        let body = json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u-1", "kind": {"group": "", "version": "v1", "kind": kind},
                "resource": {"group": "", "version": "v1", "resource": "x"}, "name": "n",
                "namespace": "ns", "operation": "CREATE", "userInfo": {}, "object": object}
        });
        let out = review(&serde_json::to_vec(&body).unwrap(), &policy(Mode::Enforce), &hatrack::detect::NoLookups);
        let (answer, _) = out.expect("a well-formed request with any object gets an answer");
        prop_assert_eq!(answer.response.expect("response").uid, "u-1");
    }

    #[test]
    fn mutated_corpus_reviews_never_panic(
        which in any::<usize>(),
        picks in prop::collection::vec((any::<usize>(), arb_mutation()), 1..4),
        mode in prop::sample::select(&[Mode::Enforce, Mode::Warn, Mode::Audit][..]),
    ) {
        let reviews = corpus_reviews();
        let (base, view) = &reviews[which % reviews.len()];
        let mutated = mutate(base.clone(), &picks);
        let body = serde_json::to_vec(&mutated).unwrap();
        if let Ok((answer, outcome)) = review(&body, &policy(mode), view.as_ref()) {
            let response = answer.response.expect("response");
            if let Some(uid) = mutated.pointer("/request/uid").and_then(Value::as_str) {
                prop_assert_eq!(&response.uid, uid);
            }
            // Audit (global, or by the namespace's label) never denies.
            if outcome.mode == "audit" || outcome.mode == "controller" {
                prop_assert!(response.allowed, "audit never denies: {:?}", outcome);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_https_server_answers_every_mutated_body_and_stays_up(
        bodies in prop::collection::vec(
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..512),
                (any::<usize>(), prop::collection::vec((any::<usize>(), arb_mutation()), 1..3)).prop_map(|(w, picks)| {
                    let reviews = corpus_reviews();
                    serde_json::to_vec(&mutate(reviews[w % reviews.len()].0.clone(), &picks)).unwrap()
                }),
            ],
            4..8,
        )
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let server = harness::start(Mode::Enforce, Arc::new(hatrack::detect::NoLookups)).await;
            for body in bodies {
                let (status, text) = server.post(body).await;
                assert!(matches!(status, 200 | 400 | 413), "status {status}: {text}");
                if status == 200 {
                    let v: Value = serde_json::from_str(&text).expect("200 answers are AdmissionReviews");
                    assert!(v["response"]["allowed"].is_boolean());
                }
            }
            let health = server.get("/healthz").await;
            assert_eq!(health.status(), 200);
            server.stop().await;
        });
    }
}
