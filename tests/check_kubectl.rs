//! `check` reads manifests as kubectl sends them to the API server: every corpus file is read
//! by the real kubectl (`kubectl label --local -o json`, which decodes the file exactly as
//! `kubectl apply` does, offline) and by `check`, and `check` must judge both readings the same
//! (verdict, rules, finding paths). Merge keys, duplicate keys and tags are in corpus 59.
#[path = "corpus/expect.rs"]
mod expect;

use std::path::PathBuf;
use std::process::Command;

use hatrack::check::{CheckOptions, CheckReport, check_documents};
use hatrack::manifest::{Document, load_paths};
use serde_json::Value;

fn kubectl() -> PathBuf {
    std::env::var_os("HATRACK_KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.tools/kubectl")))
}

/// The objects of `file` as kubectl reads them (its `label --local` output, label removed).
fn kubectl_reading(file: &std::path::Path) -> Vec<Document> {
    let out = Command::new(kubectl())
        .args(["label", "--local", "-o", "json", "hatrack-compare=1", "-f"])
        .arg(file)
        .output()
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl on {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    serde_json::Deserializer::from_str(&text)
        .into_iter::<Value>()
        .flat_map(|v| {
            let v = v.expect("kubectl prints JSON");
            // Several objects may come back as one List.
            match v.get("kind").and_then(Value::as_str) {
                Some("List") => v["items"].as_array().cloned().unwrap_or_default(),
                _ => vec![v],
            }
        })
        .map(|mut object| {
            if let Some(labels) = object
                .pointer_mut("/metadata/labels")
                .and_then(Value::as_object_mut)
            {
                labels.remove("hatrack-compare");
                if labels.is_empty() {
                    object["metadata"]
                        .as_object_mut()
                        .expect("metadata")
                        .remove("labels");
                }
            }
            Document {
                file: file.display().to_string(),
                index: 0,
                object,
            }
        })
        .collect()
}

/// What `check` decided, without positions in the input.
fn judgements(report: &CheckReport) -> Vec<String> {
    let mut out: Vec<String> = report
        .results
        .iter()
        .map(|r| {
            let mut findings: Vec<String> = r
                .findings
                .iter()
                .map(|f| format!("{} {}", f.rule, f.path))
                .collect();
            findings.sort();
            format!(
                "{} {}/{} {} [{}] warnings={}",
                r.kind,
                r.namespace.clone().unwrap_or_default(),
                r.name,
                r.verdict.as_str(),
                findings.join(", "),
                r.warnings.len()
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn check_judges_the_corpus_as_kubectl_reads_it() {
    let opts = CheckOptions::default();
    let mut compared = 0;
    let mut differences = Vec::new();
    for (file, _) in expect::corpus() {
        let ours = check_documents(&load_paths(&[&file]).expect("check reads it"), &opts);
        let theirs = check_documents(&kubectl_reading(&file), &opts);
        assert!(
            ours.errors.is_empty(),
            "{}: {:?}",
            file.display(),
            ours.errors
        );
        if judgements(&ours) != judgements(&theirs) {
            differences.push(format!(
                "{}:\n  check:   {:?}\n  kubectl: {:?}",
                file.display(),
                judgements(&ours),
                judgements(&theirs)
            ));
        }
        compared += ours.results.len();
    }
    assert!(compared > 60, "only {compared} workloads compared");
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}
