//! `check`'s output: the JSON document and the human-readable report (SARIF and JUnit are in
//! [`crate::check_formats`]).

use super::{CheckReport, InputError};
use crate::detect::{Mode, ObjectRef, RuleId, Verdict, Warning};

/// The JSON document of `--format json`.
pub fn render_json(report: &CheckReport) -> String {
    #[derive(serde::Serialize)]
    struct JsonFinding<'a> {
        rule: RuleId,
        container: &'a Option<String>,
        path: &'a str,
        message: &'a str,
    }
    #[derive(serde::Serialize)]
    struct JsonResult<'a> {
        file: &'a str,
        document: usize,
        kind: &'a str,
        namespace: &'a Option<String>,
        name: &'a str,
        verdict: Verdict,
        mode: Option<Mode>,
        exempt: bool,
        findings: Vec<JsonFinding<'a>>,
        warnings: &'a [Warning],
        #[serde(skip_serializing_if = "Option::is_none")]
        exemption: &'a Option<crate::exemption::Reported>,
    }
    #[derive(serde::Serialize)]
    struct Json<'a> {
        results: Vec<JsonResult<'a>>,
        errors: &'a [InputError],
        summary: Summary,
    }
    #[derive(serde::Serialize)]
    struct Summary {
        deny: usize,
        warn: usize,
        allow: usize,
        ignored: usize,
        exit_code: u8,
    }
    let json = Json {
        results: report
            .results
            .iter()
            .map(|r| JsonResult {
                file: &r.file,
                document: r.document,
                kind: &r.kind,
                namespace: &r.namespace,
                name: &r.name,
                verdict: r.verdict,
                mode: r.mode,
                exempt: r.exempt,
                findings: r
                    .findings
                    .iter()
                    .map(|f| JsonFinding {
                        rule: f.rule,
                        container: &f.container,
                        path: &f.path,
                        message: &f.message,
                    })
                    .collect(),
                warnings: &r.warnings,
                exemption: &r.exemption,
            })
            .collect(),
        errors: &report.errors,
        summary: Summary {
            deny: report.count(Verdict::Deny),
            warn: report.count(Verdict::Warn),
            allow: report.count(Verdict::Allow),
            ignored: report.ignored,
            exit_code: report.exit_code(),
        },
    };
    // Serialising plain structs of strings cannot fail; fall back to an empty document anyway.
    serde_json::to_string_pretty(&json).unwrap_or_else(|_| "{}".into())
}

struct Style {
    color: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

/// The human-readable report of `--format text`.
pub fn render_text(report: &CheckReport, color: bool) -> String {
    use std::fmt::Write as _;
    let st = Style { color };
    let mut out = String::new();
    for r in &report.results {
        let (label, code) = match r.verdict {
            Verdict::Deny => ("DENY ", "1;31"),
            Verdict::Warn => ("WARN ", "1;33"),
            Verdict::Allow => ("ok   ", "32"),
        };
        let obj = ObjectRef {
            kind: r.kind.clone(),
            namespace: r.namespace.clone(),
            name: r.name.clone(),
        };
        let mut note = String::new();
        if r.exempt {
            note.push_str("  (exempt namespace, not judged)");
        } else if let Some(e) = &r.exemption {
            let x = &e.exemption;
            let _ = match e.state {
                crate::exemption::State::Active => write!(
                    note,
                    "  (exempt until {} by StaticKeyExemption {}, granted by {}: {})",
                    x.expires, x.name, x.granted_by, x.reason
                ),
                crate::exemption::State::Expired => write!(
                    note,
                    "  (StaticKeyExemption {} expired at {}: judged again)",
                    x.name, x.expires
                ),
            };
        } else if let Some(mode) = r.mode.filter(|m| *m != Mode::Enforce) {
            let _ = write!(note, "  (mode {mode})");
        }
        let _ = writeln!(
            out,
            "{} {} {}  {}{}",
            st.paint(code, label),
            obj.kind,
            st.paint("1", &obj.display_name()),
            st.paint("2", &format!("{} (document {})", r.file, r.document)),
            note
        );
        for f in &r.findings {
            let container = f
                .container
                .as_deref()
                .map(|c| format!("  container {c}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "      {} {}{}  {}",
                st.paint(code, "✗"),
                st.paint("1", f.rule.as_str()),
                container,
                st.paint("2", &f.path)
            );
            match f.message.rsplit_once("; ") {
                Some((what, fix)) => {
                    let _ = writeln!(out, "        {what}");
                    let _ = writeln!(out, "        {} {fix}", st.paint("36", "fix:"));
                }
                None => {
                    let _ = writeln!(out, "        {}", f.message);
                }
            }
        }
        for w in &r.warnings {
            let _ = writeln!(
                out,
                "      {} {}  {}",
                st.paint("33", "!"),
                st.paint("33", "warning"),
                st.paint("2", &w.path)
            );
            let _ = writeln!(out, "        {}", w.message);
        }
    }
    let findings: usize = report.results.iter().map(|r| r.findings.len()).sum();
    let _ = writeln!(
        out,
        "\n{} objects judged: {} denied, {} warned, {} allowed; {} finding{}{}{}",
        report.results.len(),
        report.count(Verdict::Deny),
        report.count(Verdict::Warn),
        report.count(Verdict::Allow),
        findings,
        if findings == 1 { "" } else { "s" },
        if report.ignored > 0 {
            format!("; other objects ignored: {}", report.ignored)
        } else {
            String::new()
        },
        if report.errors.is_empty() {
            String::new()
        } else {
            format!("; input errors: {}", report.errors.len())
        },
    );
    out
}

/// Input errors, one a line: `error: FILE (document N): MESSAGE`.
pub fn render_errors(report: &CheckReport, color: bool) -> String {
    let st = Style { color };
    report
        .errors
        .iter()
        .map(|e| {
            match e.document {
                Some(d) => format!(
                    "{} {} (document {d}): {}\n",
                    st.paint("1;31", "error:"),
                    e.file,
                    e.message
                ),
                // Load errors already name the file.
                None => format!("{} {}\n", st.paint("1;31", "error:"), e.message),
            }
        })
        .collect()
}
