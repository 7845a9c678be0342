//! Expectations of the corpus: each manifest file states what `check` and the webhook must
//! decide for each workload in it, in header comments:
//!
//! ```text
//! # expect: KIND NAMESPACE/NAME VERDICT [RULE ...]
//! ```
//!
//! VERDICT is `allow`, `warn` or `deny`; the rules are the findings' rule ids (a multiset,
//! order does not matter). JSON files keep their expectations in `FILE.expect`.
//!
//! Where the webhook decides otherwise than `check` (it sees the whole cluster, so an optional
//! reference to a missing Secret sets nothing; it exempts `kube-system` by default), a line
//!
//! ```text
//! # expect-webhook: KIND NAMESPACE/NAME VERDICT [RULE ...]
//! ```
//!
//! replaces that workload's expectation for the webhook.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Expectation {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub verdict: String,
    pub rules: Vec<String>,
}

pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// Every manifest file of the corpus with its expectations for `check`, in name order.
pub fn corpus() -> Vec<(PathBuf, Vec<Expectation>)> {
    corpus_with(parse)
}

/// Every manifest file of the corpus with its expectations for the webhook.
pub fn webhook_corpus() -> Vec<(PathBuf, Vec<Expectation>)> {
    corpus_with(parse_webhook)
}

fn corpus_with(parse: fn(&str) -> Vec<Expectation>) -> Vec<(PathBuf, Vec<Expectation>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("corpus dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            )
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let header_file = if f.extension().is_some_and(|e| e == "json") {
                PathBuf::from(format!("{}.expect", f.display()))
            } else {
                f.clone()
            };
            let text = std::fs::read_to_string(&header_file).expect("read corpus file");
            let expectations = parse(&text);
            assert!(
                !expectations.is_empty(),
                "{} has no `# expect:` line",
                f.display()
            );
            (f, expectations)
        })
        .collect()
}

/// The expectations of `check`.
pub fn parse(text: &str) -> Vec<Expectation> {
    parse_prefixed(text, "# expect:")
}

/// The expectations of the webhook: `check`'s, with `# expect-webhook:` lines replacing them.
pub fn parse_webhook(text: &str) -> Vec<Expectation> {
    let overrides = parse_prefixed(text, "# expect-webhook:");
    let mut out: Vec<Expectation> = parse(text)
        .into_iter()
        .map(|e| {
            overrides
                .iter()
                .find(|o| o.kind == e.kind && o.namespace == e.namespace && o.name == e.name)
                .cloned()
                .unwrap_or(e)
        })
        .collect();
    out.sort();
    out
}

fn parse_prefixed(text: &str, prefix: &str) -> Vec<Expectation> {
    let mut out: Vec<Expectation> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix(prefix))
        .map(|l| {
            let mut words = l.split_whitespace();
            let kind = words.next().expect("kind").to_string();
            let (namespace, name) = words
                .next()
                .expect("ns/name")
                .split_once('/')
                .expect("ns/name");
            let verdict = words.next().expect("verdict").to_string();
            assert!(
                matches!(verdict.as_str(), "allow" | "warn" | "deny"),
                "bad verdict {verdict}"
            );
            let mut rules: Vec<String> = words.map(String::from).collect();
            rules.sort();
            Expectation {
                kind,
                namespace: namespace.into(),
                name: name.into(),
                verdict,
                rules,
            }
        })
        .collect();
    out.sort();
    out
}
