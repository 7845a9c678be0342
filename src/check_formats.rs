//! `check --format sarif` (SARIF 2.1.0, for GitHub code scanning and other SARIF readers) and
//! `check --format junit` (JUnit XML, for CI test tabs): pure renderers of a
//! [`CheckReport`], given the positions of the sources ([`SourceMap`]) so each finding points
//! at the line and column of the offending field.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::check::{CheckReport, CheckResult};
use crate::detect::{Finding, RuleId, Verdict};
use crate::manifest::{self, Document, LoadError};
use crate::yaml_positions::{Position, SourceMap};

/// The positions of every source file `check` read, by the file name its results carry.
pub type Sources = HashMap<String, SourceMap>;

/// The rule id of results made from warnings (references `check` could not judge fully).
pub const WARNING_RULE: &str = "not-fully-judged";

/// What each rule finds, for the SARIF rule descriptions.
pub fn rule_description(rule: RuleId) -> &'static str {
    match rule {
        RuleId::EnvStaticKey => {
            "An environment variable named like an AWS credential (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, …) is set."
        }
        RuleId::LiteralAccessKey => {
            "An AWS access key id is written in a literal: an env value, command or args."
        }
        RuleId::LiteralSecretKey => {
            "An AWS secret access key or session token is assigned in a literal."
        }
        RuleId::CredentialsInReferencedSecret => {
            "A Secret the workload references or mounts holds AWS key material."
        }
        RuleId::CredentialsInReferencedConfigMap => {
            "A ConfigMap the workload references or mounts holds AWS key material."
        }
        RuleId::EnvFromCredentialKeys => {
            "envFrom imports a Secret or ConfigMap with credential-named keys."
        }
        RuleId::SharedCredentialsFile => {
            "A shared AWS credentials file (AWS_SHARED_CREDENTIALS_FILE or ~/.aws) is backed by a Secret not known to be free of keys."
        }
        RuleId::InvalidRoleBinding => {
            "An IAMRoleBinding is not valid (spec, IAM limits or an IAMGuardrail), as `hatrack plan` checks it."
        }
    }
}

fn rule_name(id: &str) -> String {
    // SARIF names are PascalCase identifiers by convention: env-static-key -> EnvStaticKey.
    id.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}

/// SARIF's level for findings of an object with this verdict: what denies is an error, what
/// warn mode admits with a warning is a warning, what audit mode only records is a note.
fn level(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Deny => "error",
        Verdict::Warn => "warning",
        Verdict::Allow => "note",
    }
}

fn position(sources: &Sources, r: &CheckResult, path: &str) -> Option<Position> {
    let object = json!({
        "kind": r.kind,
        "metadata": {"name": r.name, "namespace": r.namespace},
    });
    sources
        .get(&r.file)?
        .locate(r.document.checked_sub(1)?, &object, path)
}

/// A repository-relative URI for a file as `check` was given it (`./a/b.yaml` → `a/b.yaml`).
fn uri(file: &str) -> String {
    let trimmed = file.trim_start_matches("./");
    let mut out = String::with_capacity(trimmed.len());
    for c in trimmed.chars() {
        match c {
            '\\' => out.push('/'),
            ' ' => out.push_str("%20"),
            '%' => out.push_str("%25"),
            '#' => out.push_str("%23"),
            '?' => out.push_str("%3F"),
            c => out.push(c),
        }
    }
    out
}

fn location(sources: &Sources, r: &CheckResult, path: &str) -> Value {
    let mut physical = json!({"artifactLocation": {"uri": uri(&r.file)}});
    if let Some(p) = position(sources, r, path) {
        physical["region"] = json!({"startLine": p.line, "startColumn": p.column});
    }
    let object = match &r.namespace {
        Some(ns) => format!("{}/{ns}/{}", r.kind, r.name),
        None => format!("{}/{}", r.kind, r.name),
    };
    json!({
        "physicalLocation": physical,
        "logicalLocations": [{"fullyQualifiedName": format!("{object}:{path}"), "kind": "object"}],
    })
}

/// A fingerprint that survives the finding moving within the file: rule, object, container
/// and what the finding is about (not its line).
fn fingerprint(r: &CheckResult, rule: &str, container: Option<&str>, subject: &str) -> String {
    let mut h = Sha256::new();
    for part in [
        rule,
        &r.kind,
        r.namespace.as_deref().unwrap_or(""),
        &r.name,
        container.unwrap_or(""),
        subject,
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    h.finalize()
        .iter()
        .take(16)
        .fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Reads the manifests of `paths` as [`manifest::load_paths`] does, keeping each file's
/// positions (stdin, `-`, is read once for both).
pub fn load_with_sources<P: AsRef<Path>>(
    paths: &[P],
) -> Result<(Vec<Document>, Sources), LoadError> {
    let mut docs = Vec::new();
    let mut sources = Sources::new();
    manifest::read_paths(paths, |name, text| {
        docs.extend(manifest::parse_documents(&name, &text)?);
        let map = SourceMap::parse(&text).map_err(|message| LoadError::Parse {
            path: name.clone(),
            message,
        })?;
        sources.insert(name, map);
        Ok(())
    })?;
    Ok((docs, sources))
}

/// The SARIF 2.1.0 log of `--format sarif`.
pub fn render_sarif(report: &CheckReport, sources: &Sources) -> String {
    let mut rules: Vec<Value> = RuleId::ALL
        .iter()
        .map(|rule| {
            json!({
                "id": rule.as_str(),
                "name": rule_name(rule.as_str()),
                "shortDescription": {"text": rule_description(*rule)},
                "defaultConfiguration": {"level": "error"},
            })
        })
        .collect();
    rules.push(json!({
        "id": WARNING_RULE,
        "name": rule_name(WARNING_RULE),
        "shortDescription": {"text": "A reference check could not judge fully (an object not in the input, or an expansion too long to run)."},
        "defaultConfiguration": {"level": "warning"},
    }));
    let rule_index = |id: &str| rules.iter().position(|r| r["id"] == id);
    let mut results = Vec::new();
    for r in &report.results {
        for f in &r.findings {
            let id = f.rule.as_str();
            results.push(json!({
                "ruleId": id,
                "ruleIndex": rule_index(id),
                "level": level(r.verdict),
                "message": {"text": finding_text(r, f)},
                "locations": [location(sources, r, &f.path)],
                "partialFingerprints": {
                    "hatrackFinding/v1": fingerprint(r, id, f.container.as_deref(), &f.subject)
                },
            }));
        }
        for w in &r.warnings {
            results.push(json!({
                "ruleId": WARNING_RULE,
                "ruleIndex": rule_index(WARNING_RULE),
                "level": "warning",
                "message": {"text": format!("{} {}: {}", r.kind, display_name(r), w.message)},
                "locations": [location(sources, r, &w.path)],
                "partialFingerprints": {
                    "hatrackFinding/v1": fingerprint(r, WARNING_RULE, w.container.as_deref(), &w.path)
                },
            }));
        }
    }
    let notifications: Vec<Value> = report
        .errors
        .iter()
        .map(|e| {
            let mut n = json!({
                "level": "error",
                "message": {"text": match e.document {
                    Some(d) => format!("{} (document {d}): {}", e.file, e.message),
                    None => e.message.clone(),
                }},
            });
            n["locations"] =
                json!([{"physicalLocation": {"artifactLocation": {"uri": uri(&e.file)}}}]);
            n
        })
        .collect();
    let log = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "hatrack",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://hatrack.dev",
                "rules": rules,
            }},
            "columnKind": "unicodeCodePoints",
            "invocations": [{
                "executionSuccessful": report.errors.is_empty(),
                "exitCode": report.exit_code(),
                "toolExecutionNotifications": notifications,
            }],
            "results": results,
        }],
    });
    // Serializing a json! value cannot fail.
    serde_json::to_string_pretty(&log).unwrap_or_else(|_| "{}".into())
}

fn display_name(r: &CheckResult) -> String {
    match &r.namespace {
        Some(ns) => format!("{ns}/{}", r.name),
        None => r.name.clone(),
    }
}

/// The message of a finding: the object, the container, what was found and the fix.
fn finding_text(r: &CheckResult, f: &Finding) -> String {
    let container = f
        .container
        .as_deref()
        .map(|c| format!(", container {c}"))
        .unwrap_or_default();
    format!("{} {}{container}: {}", r.kind, display_name(r), f.message)
}

/// Escapes text for XML 1.0 content and attributes; characters XML 1.0 cannot carry at all
/// (most control characters) are dropped.
fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

/// The JUnit XML report of `--format junit`: a test suite per file, a test case per judged
/// object, a failure per finding of an object that would be denied (findings of objects warn
/// or audit mode admits are in the case's system-out), a skipped case per exempt object, and
/// an errored case per input error.
pub fn render_junit(report: &CheckReport, sources: &Sources) -> String {
    let mut files: Vec<&str> = Vec::new();
    for f in report
        .results
        .iter()
        .map(|r| r.file.as_str())
        .chain(report.errors.iter().map(|e| e.file.as_str()))
    {
        if !files.contains(&f) {
            files.push(f);
        }
    }
    let mut suites = String::new();
    let (mut total, mut total_failures, mut total_errors, mut total_skipped) = (0, 0, 0, 0);
    for file in files {
        let mut cases = String::new();
        let (mut tests, mut failures, mut errors, mut skipped) = (0, 0, 0, 0);
        for r in report.results.iter().filter(|r| r.file == file) {
            tests += 1;
            let line = position(sources, r, "object")
                .map(|p| format!(" line=\"{}\"", p.line))
                .unwrap_or_default();
            let _ = writeln!(
                cases,
                "    <testcase classname=\"{}\" name=\"{}\" file=\"{}\"{line}>",
                xml(&format!("{} (document {})", file, r.document)),
                xml(&format!("{} {}", r.kind, display_name(r))),
                xml(file),
            );
            if r.exempt {
                skipped += 1;
                cases.push_str("      <skipped message=\"exempt: not judged\"/>\n");
            }
            let mut out = String::new();
            for f in &r.findings {
                let at = position(sources, r, &f.path)
                    .map(|p| format!("{file}:{}:{}", p.line, p.column))
                    .unwrap_or_else(|| file.to_string());
                let body = format!("{at}: {}\n{}", f.path, finding_text(r, f));
                if r.verdict == Verdict::Deny {
                    failures += 1;
                    let _ = writeln!(
                        cases,
                        "      <failure type=\"{}\" message=\"{}\">{}</failure>",
                        f.rule.as_str(),
                        xml(&f.message),
                        xml(&body)
                    );
                } else {
                    let verdict = if r.verdict == Verdict::Warn {
                        "warn"
                    } else {
                        "allow"
                    };
                    let _ = writeln!(out, "{} ({verdict}): {body}", f.rule.as_str());
                }
            }
            for w in &r.warnings {
                let _ = writeln!(out, "warning: {}: {}", w.path, w.message);
            }
            if !out.is_empty() {
                let _ = writeln!(cases, "      <system-out>{}</system-out>", xml(&out));
            }
            cases.push_str("    </testcase>\n");
        }
        for e in report.errors.iter().filter(|e| e.file == file) {
            tests += 1;
            errors += 1;
            let name = match e.document {
                Some(d) => format!("document {d}"),
                None => "input".to_string(),
            };
            let _ = write!(
                cases,
                "    <testcase classname=\"{}\" name=\"{}\" file=\"{}\">\n      <error type=\"input-error\" message=\"{}\"/>\n    </testcase>\n",
                xml(file),
                xml(&name),
                xml(file),
                xml(&e.message)
            );
        }
        let _ = write!(
            suites,
            "  <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\">\n{cases}  </testsuite>\n",
            xml(file)
        );
        total += tests;
        total_failures += failures;
        total_errors += errors;
        total_skipped += skipped;
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"hatrack check\" tests=\"{total}\" failures=\"{total_failures}\" errors=\"{total_errors}\" skipped=\"{total_skipped}\">\n{suites}</testsuites>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{CheckOptions, check_documents};

    const INPUT: &str = "\
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: team}
spec:
  containers:
  - name: app
    env:
    - name: AWS_SECRET_ACCESS_KEY
      value: \"<&'\\\"\"
";

    fn run(input: &str) -> (CheckReport, Sources) {
        let docs = crate::manifest::parse_documents("dir/p.yaml", input).unwrap();
        let report = check_documents(&docs, &CheckOptions::default());
        let sources = Sources::from([("dir/p.yaml".into(), SourceMap::parse(input).unwrap())]);
        (report, sources)
    }

    #[test]
    fn sarif_results_carry_rule_level_fix_and_line() {
        let (report, sources) = run(INPUT);
        let log: Value = serde_json::from_str(&render_sarif(&report, &sources)).unwrap();
        let run = &log["runs"][0];
        let result = &run["results"][0];
        assert_eq!(result["ruleId"], "env-static-key");
        assert_eq!(result["level"], "error");
        let index = result["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(
            run["tool"]["driver"]["rules"][index]["id"],
            "env-static-key"
        );
        let region = &result["locations"][0]["physicalLocation"]["region"];
        assert_eq!(
            (region["startLine"].as_u64(), region["startColumn"].as_u64()),
            (Some(8), Some(7))
        );
        assert_eq!(
            result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            "dir/p.yaml"
        );
        assert!(
            result["message"]["text"]
                .as_str()
                .unwrap()
                .starts_with("Pod team/p, container app: ")
        );
    }

    #[test]
    fn junit_fails_denied_objects_once_per_finding_and_escapes() {
        let (report, sources) = run(INPUT);
        let xml = render_junit(&report, &sources);
        assert!(
            xml.contains("tests=\"1\" failures=\"1\" errors=\"0\""),
            "{xml}"
        );
        assert_eq!(xml.matches("<failure ").count(), 1);
        assert!(xml.contains("dir/p.yaml:8:7"), "{xml}");
        assert!(!xml.contains("<&'"), "{xml}");
    }

    #[test]
    fn audit_mode_findings_are_notes_and_pass_in_junit() {
        let (mut report, sources) = run(INPUT);
        report.results[0].verdict = Verdict::Allow;
        let log: Value = serde_json::from_str(&render_sarif(&report, &sources)).unwrap();
        assert_eq!(log["runs"][0]["results"][0]["level"], "note");
        let xml = render_junit(&report, &sources);
        assert!(xml.contains("failures=\"0\""), "{xml}");
        assert!(xml.contains("<system-out>env-static-key (allow)"), "{xml}");
    }

    #[test]
    fn uris_are_relative_and_escaped() {
        assert_eq!(uri("./deploy/a b.yaml"), "deploy/a%20b.yaml");
        assert_eq!(rule_name("env-static-key"), "EnvStaticKey");
        assert_eq!(xml("a\u{1}<b>"), "a&lt;b&gt;");
    }
}
