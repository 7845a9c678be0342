//! The corpus through `hatrack check`: the library for every file, the real binary for the
//! CLI contract (exit codes, JSON shape, stdin, errors with positions).

#[path = "corpus/expect.rs"]
mod expect;

use std::io::Write;
use std::process::{Command, Stdio};

use expect::{Expectation, corpus, corpus_dir};
use hatrack::check::{CheckOptions, check_documents};
use hatrack::manifest::load_paths;

fn judged(path: &std::path::Path) -> Vec<Expectation> {
    let docs = load_paths(&[path]).expect("corpus file loads");
    let report = check_documents(&docs, &CheckOptions::default());
    assert!(
        report.errors.is_empty(),
        "{}: {:?}",
        path.display(),
        report.errors
    );
    let mut got: Vec<Expectation> = report
        .results
        .iter()
        .map(|r| {
            let mut rules: Vec<String> = r.findings.iter().map(|f| f.rule.to_string()).collect();
            rules.sort();
            Expectation {
                kind: r.kind.clone(),
                namespace: r.namespace.clone().unwrap_or_default(),
                name: r.name.clone(),
                verdict: r.verdict.as_str().into(),
                rules,
            }
        })
        .collect();
    got.sort();
    got
}

#[test]
fn corpus_has_at_least_forty_manifests_with_expectations() {
    let files = corpus();
    assert!(files.len() >= 40, "only {} corpus files", files.len());
    let verdicts: Vec<String> = files
        .iter()
        .flat_map(|(_, e)| e.iter().map(|x| x.verdict.clone()))
        .collect();
    for v in ["allow", "warn", "deny"] {
        assert!(verdicts.iter().any(|x| x == v), "no {v} case in the corpus");
    }
}

#[test]
fn check_library_matches_every_corpus_expectation() {
    let mut failures = Vec::new();
    for (file, expected) in corpus() {
        let got = judged(&file);
        if got != expected {
            failures.push(format!(
                "{}:\n  expected {expected:?}\n  got      {got:?}",
                file.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn messages_never_contain_the_secret_values_of_the_corpus() {
    let docs = load_paths(&[corpus_dir()]).unwrap();
    let report = check_documents(&docs, &CheckOptions::default());
    for r in &report.results {
        for f in &r.findings {
            for secret in [
                "q8Vx3Jk2/LmN9pRt5WyZ+aB7cD1eF4gH6iJ0kL2m",
                "Zt9Lw2Qx7Rk4Vn1Bp8Hm3Cj6Df0Gs5Ya/Ue+Xo2W",
                "AKIA2E3PLKXQ7RMD4VNW",
                "AKIAY4HQ2XN7BC5TLR6P",
            ] {
                assert!(!f.message.contains(secret), "{}: {}", r.name, f.message);
            }
        }
    }
}

fn hatrack(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hatrack"))
        .args(args)
        .env_remove("HATRACK_MODE")
        .env_remove("HATRACK_EXEMPT_NAMESPACES")
        .env_remove("HATRACK_CHECK_FORMAT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run hatrack");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().expect("exit code"),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn binary_exits_1_and_prints_the_json_shape_for_the_whole_corpus() {
    let dir = corpus_dir();
    let (code, stdout, stderr) =
        hatrack(&["check", "--format", "json", dir.to_str().unwrap()], None);
    assert_eq!(code, 1, "stderr: {stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("stdout is JSON");
    let results = json["results"].as_array().expect("results array");
    let expected: usize = corpus().iter().map(|(_, e)| e.len()).sum();
    assert_eq!(results.len(), expected);
    for r in results {
        for key in ["file", "kind", "namespace", "name", "verdict", "findings"] {
            assert!(r.get(key).is_some(), "result without {key}: {r}");
        }
        assert!(matches!(
            r["verdict"].as_str(),
            Some("allow" | "warn" | "deny")
        ));
        for f in r["findings"].as_array().unwrap() {
            for key in ["rule", "container", "path", "message"] {
                assert!(f.get(key).is_some(), "finding without {key}: {f}");
            }
        }
    }
    // Secrets in one file resolve references in another (47's Secret is in 48), so the
    // binary must agree with the library run on the same directory, not file by file.
    let docs = load_paths(&[&dir]).unwrap();
    let report = check_documents(&docs, &CheckOptions::default());
    let verdicts: Vec<&str> = results
        .iter()
        .map(|r| r["verdict"].as_str().unwrap())
        .collect();
    let lib: Vec<&str> = report.results.iter().map(|r| r.verdict.as_str()).collect();
    assert_eq!(verdicts, lib);
    assert!(verdicts.contains(&"deny") && verdicts.contains(&"allow"));
}

#[test]
fn binary_exits_0_when_nothing_would_be_denied() {
    let file = corpus_dir().join("04-velero-irsa.yaml");
    let (code, stdout, _) = hatrack(&["check", file.to_str().unwrap()], None);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("ok    Deployment velero/velero"),
        "{stdout}"
    );
    assert!(stdout.contains("0 denied"), "{stdout}");
}

#[test]
fn binary_text_output_names_rule_path_and_fix() {
    let file = corpus_dir().join("05-external-dns-env-secret.yaml");
    let (code, stdout, _) = hatrack(&["check", "--format", "text", file.to_str().unwrap()], None);
    assert_eq!(code, 1);
    assert!(
        stdout.contains("DENY  Deployment external-dns/external-dns"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "env-static-key  container external-dns  spec.template.spec.containers[0].env[0]"
        ),
        "{stdout}"
    );
    assert!(
        stdout
            .contains("fix: give ServiceAccount 'external-dns' an IAM role with an IAMRoleBinding"),
        "{stdout}"
    );
}

#[test]
fn binary_reads_stdin_and_mode_flag() {
    let input = "kind: Pod\nmetadata: {name: p, namespace: a}\nspec:\n  containers:\n  - name: c\n    env: [{name: AWS_ACCESS_KEY_ID, value: x}]\n";
    let (code, stdout, _) = hatrack(&["check", "-"], Some(input));
    assert_eq!(code, 1, "{stdout}");
    let (code, stdout, _) = hatrack(&["check", "--mode", "warn", "-"], Some(input));
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("WARN  Pod a/p"), "{stdout}");
}

#[test]
fn binary_exits_2_with_file_and_position_on_unparsable_input() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "kind: Pod\nmetadata: {name: a\n").unwrap();
    let (code, _, stderr) = hatrack(&["check", bad.to_str().unwrap()], None);
    assert_eq!(code, 2);
    assert!(stderr.contains("bad.yaml"), "{stderr}");
    assert!(stderr.contains("line 3"), "{stderr}");

    let malformed = dir.path().join("malformed.yaml");
    std::fs::write(&malformed, "kind: Pod\nmetadata: {name: ok}\nspec: {containers: []}\n---\nkind: Deployment\nmetadata: {name: d}\nspec: {template: {spec: {containers: [{name: c, env: {}}]}}}\n").unwrap();
    let (code, _, stderr) = hatrack(&["check", malformed.to_str().unwrap()], None);
    assert_eq!(code, 2);
    assert!(stderr.contains("malformed.yaml (document 2): Deployment d: spec.template.spec.containers[0].env: expected an array, found a mapping"), "{stderr}");

    let (code, stdout, _) = hatrack(&["check", "--format", "json", "/nonexistent/dir"], None);
    assert_eq!(code, 2);
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(
        json["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/dir")
    );
}

#[test]
fn binary_judges_custom_kinds_from_a_pod_templates_file() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("pod-templates.yaml");
    std::fs::write(
        &list,
        "- {group: example.com, kind: Batch, resource: batches, pods: [{path: spec.worker.pod}]}\n",
    )
    .unwrap();
    let manifest = dir.path().join("batch.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: example.com/v1\nkind: Batch\nmetadata: {name: b, namespace: n}\nspec:\n  worker:\n    pod:\n      containers:\n      - name: w\n        env: [{name: AWS_ACCESS_KEY_ID, value: AKIAZ7Q3EXAMPLEK3Y4N}]\n",
    )
    .unwrap();
    let path = manifest.to_str().unwrap();
    // Not in the shipped list: not a workload.
    let (code, stdout, _) = hatrack(&["check", path], None);
    assert_eq!(code, 0, "{stdout}");
    let (code, stdout, stderr) = hatrack(
        &["check", "--pod-templates", list.to_str().unwrap(), path],
        None,
    );
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains("spec.worker.pod.containers[0].env[0]"),
        "{stdout}"
    );
    // A list that cannot work is an input error.
    std::fs::write(&list, "- {kind: Batch}\n").unwrap();
    let (code, _, stderr) = hatrack(
        &["check", "--pod-templates", list.to_str().unwrap(), path],
        None,
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("--pod-templates"), "{stderr}");
}
