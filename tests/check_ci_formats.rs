//! `hatrack check --format sarif|junit` through the real binary: the SARIF of the whole test
//! corpus validates against the official SARIF 2.1.0 JSON schema (tests/data, OASIS's
//! sarif-schema-2.1.0.json) with check-jsonschema, its lines are the lines of the offending
//! fields (multi-document files, Lists, JSON, flow style, anchors and merge keys), and the
//! JUnit XML is read by a real JUnit parser (junitparser).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn venv(bin: &str) -> PathBuf {
    root().join(".venv/bin").join(bin)
}

/// Runs `hatrack check` in the repository root (so files are named as a CI job names them).
fn check(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hatrack"))
        .current_dir(root())
        .arg("check")
        .args(args)
        .output()
        .expect("run hatrack");
    (out.status.code(), String::from_utf8(out.stdout).unwrap())
}

fn write_temp(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// check-jsonschema's verdict on `doc` against the vendored SARIF schema: (ok, its output).
fn validate_sarif(doc: &Path) -> (bool, String) {
    let out = Command::new(venv("check-jsonschema"))
        // The official schema's `language` pattern has a stray `]` that ECMAScript's unicode
        // mode (check-jsonschema's default) rejects as a schema error; Python reads it as meant.
        .args(["--regex-variant", "python"])
        .arg("--schemafile")
        .arg(root().join("tests/data/sarif-schema-2.1.0.json"))
        .arg(doc)
        .output()
        .expect("check-jsonschema (scripts/install-test-deps.sh installs it)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The one-based line of the first line of `file` (from the repository root) that contains
/// `needle`, searching from line `after` on.
fn line_of(file: &str, needle: &str, after: usize) -> u64 {
    let text = std::fs::read_to_string(root().join(file)).unwrap();
    let i = text
        .lines()
        .enumerate()
        .skip(after.saturating_sub(1))
        .find(|(_, l)| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in {file}"))
        .0;
    i as u64 + 1
}

/// The one-based column of `needle` on the first line of `file` that holds it.
fn column_of(file: &str, needle: &str) -> u64 {
    let text = std::fs::read_to_string(root().join(file)).unwrap();
    let line = text.lines().find(|l| l.contains(needle)).unwrap();
    line.find(needle).unwrap() as u64 + 1
}

/// (line, column) of each result of `rule` in `uri`, in output order.
fn regions(sarif: &Value, uri: &str, rule: &str) -> Vec<(u64, u64)> {
    sarif["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["ruleId"] == rule
                && r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == uri
        })
        .map(|r| {
            let region = &r["locations"][0]["physicalLocation"]["region"];
            (
                region["startLine"].as_u64().expect("startLine"),
                region["startColumn"].as_u64().expect("startColumn"),
            )
        })
        .collect()
}

#[test]
fn sarif_of_the_corpus_validates_against_the_sarif_2_1_0_schema_with_the_right_lines() {
    let (code, out) = check(&["--format", "sarif", "tests/corpus"]);
    assert_eq!(code, Some(1), "the corpus has denied objects");
    let dir = tempfile::tempdir().unwrap();
    let doc = write_temp(dir.path(), "corpus.sarif", &out);
    let (ok, msg) = validate_sarif(&doc);
    assert!(ok, "SARIF does not validate: {msg}");

    // The validator does reject a log that breaks the schema (an unknown level).
    let mut broken: Value = serde_json::from_str(&out).unwrap();
    broken["runs"][0]["results"][0]["level"] = "fatal".into();
    let bad = write_temp(dir.path(), "broken.sarif", &broken.to_string());
    assert!(
        !validate_sarif(&bad).0,
        "check-jsonschema accepted an invalid level"
    );

    let sarif: Value = serde_json::from_str(&out).unwrap();
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    assert!(results.len() > 40, "only {} results", results.len());
    for r in results {
        assert!(
            r["locations"][0]["physicalLocation"]["region"]["startLine"].is_u64(),
            "a result without a line: {r}"
        );
    }

    // The second document of a multi-document file, flow style on one line.
    let f = "tests/corpus/49-two-workloads-one-file.yaml";
    let line = line_of(f, "{name: AWS_SECRET_ACCESS_KEY", 1);
    let col = std::fs::read_to_string(root().join(f))
        .unwrap()
        .lines()
        .nth(line as usize - 1)
        .unwrap()
        .find('{')
        .unwrap() as u64
        + 1;
    assert_eq!(regions(&sarif, f, "env-static-key"), [(line, col)]);

    // An item of a List document.
    let f = "tests/corpus/31-list-document.yaml";
    assert_eq!(
        regions(&sarif, f, "credentials-in-referenced-secret"),
        [(
            line_of(f, "- name: UPLOAD_TARGET", 1),
            column_of(f, "name: UPLOAD_TARGET")
        )]
    );

    // A JSON file.
    let f = "tests/corpus/50-json-pod.json";
    let found = regions(&sarif, f, "literal-access-key");
    assert!(!found.is_empty());
    let text = std::fs::read_to_string(root().join(f)).unwrap();
    for (line, col) in found {
        let l = text.lines().nth(line as usize - 1).unwrap();
        assert!(
            l.chars()
                .skip(col as usize - 1)
                .collect::<String>()
                .starts_with("\"echo"),
            "{f}:{line}:{col} is {l:?}"
        );
    }

    // A finding's message carries the fix, and the rule is described in the driver.
    let first = &results[0];
    let index = first["ruleIndex"].as_u64().unwrap() as usize;
    assert_eq!(
        sarif["runs"][0]["tool"]["driver"]["rules"][index]["id"],
        first["ruleId"]
    );
    assert!(
        results.iter().any(|r| r["message"]["text"]
            .as_str()
            .unwrap()
            .contains("IAMRoleBinding")),
        "no result message names the fix"
    );
}

const ANCHORS: &str = "\
# Anchors and several documents in one file (merge keys: crates/hatrack-core/src/yaml_positions.rs unit tests).
apiVersion: v1
kind: ConfigMap
metadata: {name: unrelated}
---
x-env: &aws
  - name: AWS_ACCESS_KEY_ID
    value: AKIAZ7Q3EXAMPLEK3Y4N
apiVersion: v1
kind: Pod
metadata: {name: aliased, namespace: team}
spec:
  containers:
  - name: app
    image: ghcr.io/example/app:1
    env: *aws
";

#[test]
fn sarif_lines_follow_aliases_to_the_anchored_text() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_temp(dir.path(), "anchors.yaml", ANCHORS);
    let (code, out) = check(&["--format", "sarif", file.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    let doc = write_temp(dir.path(), "anchors.sarif", &out);
    let (ok, msg) = validate_sarif(&doc);
    assert!(ok, "{msg}");
    let sarif: Value = serde_json::from_str(&out).unwrap();
    let uri = file.to_str().unwrap();
    // Both findings of the env var are written on the anchored sequence's item (line 7).
    let mut lines: Vec<(u64, u64)> = regions(&sarif, uri, "env-static-key");
    lines.extend(regions(&sarif, uri, "literal-access-key"));
    assert!(!lines.is_empty(), "{out}");
    for (line, column) in lines {
        assert_eq!((line, column), (7, 5), "{out}");
    }
}

#[test]
fn junit_of_the_corpus_is_read_by_junitparser_with_a_case_per_object_and_a_failure_per_finding() {
    let (code, xml) = check(&["--format", "junit", "tests/corpus"]);
    assert_eq!(code, Some(1));
    let (_, json) = check(&["--format", "json", "tests/corpus"]);
    let report: Value = serde_json::from_str(&json).unwrap();
    let results = report["results"].as_array().unwrap();
    let expected_failures: usize = results
        .iter()
        .filter(|r| r["verdict"] == "deny")
        .map(|r| r["findings"].as_array().unwrap().len())
        .sum();

    let dir = tempfile::tempdir().unwrap();
    let path = write_temp(dir.path(), "junit.xml", &xml);
    // junitparser reads the file the way CI test tabs do: suites, cases, their results.
    let script = r#"
import json, sys
from junitparser import JUnitXml, Failure, Skipped, Error
xml = JUnitXml.fromfile(sys.argv[1])
cases, failures, skipped, errors, lines = 0, 0, 0, 0, []
for suite in xml:
    for case in suite:
        cases += 1
        for r in case.result:
            if isinstance(r, Failure):
                failures += 1
                lines.append(r.text.split(': ')[0])
            elif isinstance(r, Skipped):
                skipped += 1
            elif isinstance(r, Error):
                errors += 1
print(json.dumps({"cases": cases, "failures": failures, "skipped": skipped, "errors": errors,
                  "declared_failures": xml.failures, "declared_tests": xml.tests, "at": lines}))
"#;
    let out = Command::new(venv("python"))
        .arg("-c")
        .arg(script)
        .arg(&path)
        .output()
        .expect("python with junitparser (scripts/install-test-deps.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(parsed["cases"].as_u64(), Some(results.len() as u64));
    assert_eq!(parsed["declared_tests"], parsed["cases"]);
    assert_eq!(parsed["failures"].as_u64(), Some(expected_failures as u64));
    assert_eq!(parsed["declared_failures"], parsed["failures"]);
    assert!(expected_failures > 20, "{expected_failures}");
    assert_eq!(parsed["errors"].as_u64(), Some(0));
    // Each failure says where: FILE:LINE:COLUMN, the same line the SARIF gives.
    let (_, sarif) = check(&["--format", "sarif", "tests/corpus"]);
    let sarif: Value = serde_json::from_str(&sarif).unwrap();
    let f = "tests/corpus/49-two-workloads-one-file.yaml";
    let (line, col) = regions(&sarif, f, "env-static-key")[0];
    let at = format!("{f}:{line}:{col}");
    assert!(
        parsed["at"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a.as_str() == Some(&at)),
        "no failure at {at}: {}",
        parsed["at"]
    );
}

#[test]
fn input_errors_are_errored_cases_in_junit_and_notifications_in_sarif() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_temp(
        dir.path(),
        "bad.yaml",
        "kind: Pod\nmetadata: {name: p}\nspec: {containers: 5}\n",
    );
    let (code, xml) = check(&["--format", "junit", file.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(xml.contains("errors=\"1\""), "{xml}");
    assert!(xml.contains("<error type=\"input-error\""), "{xml}");
    let (code, sarif) = check(&["--format", "sarif", file.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    let doc = write_temp(dir.path(), "bad.sarif", &sarif);
    assert!(validate_sarif(&doc).0);
    let sarif: Value = serde_json::from_str(&sarif).unwrap();
    let inv = &sarif["runs"][0]["invocations"][0];
    assert_eq!(inv["executionSuccessful"], false);
    assert!(
        inv["toolExecutionNotifications"][0]["message"]["text"]
            .as_str()
            .unwrap()
            .contains("spec.containers")
    );
}
