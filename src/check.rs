//! `hatrack check`: what the webhook would deny in a set of manifests, offline.
//!
//! The rules are the webhook's ([`crate::detect`]); Secrets, ConfigMaps and Namespaces found
//! in the input are resolved like the webhook's cluster caches would resolve them.
//! Exit codes: 0 nothing would be denied, 1 something would, 2 input cannot be read or parsed.

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use base64::Engine;
use serde_json::Value;

use crate::detect::{
    self, Evaluation, Finding, InMemoryView, MODE_LABEL, Mode, ObjectRef, RefKind, RuleId, Verdict,
    Warning,
};
use crate::manifest::{self, Document};
use crate::plan::OfflineContext;
use crate::settings::{ClusterArgs, PolicyArgs, Settings, SettingsError};

/// Output formats of `hatrack check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    /// SARIF 2.1.0 (GitHub code scanning): findings at the line of the offending field.
    Sarif,
    /// JUnit XML (CI test tabs): a test case per object, a failure per finding.
    Junit,
}

/// Flags of `hatrack check`.
///
/// The cluster flags are `plan`'s, but optional: `check` runs without a cluster, and only role
/// names and the trust policy size depend on them, so placeholders of realistic length do.
#[derive(Debug, Clone, clap::Args)]
#[command(
    mut_arg("cluster_name", |a| a.required(false).default_value("cluster")),
    mut_arg("account_id", |a| a.required(false).default_value("000000000000")),
    mut_arg("cluster_region", |a| a.default_value("us-east-1")),
    mut_arg("oidc_issuer", |a| a.default_value(
        "https://oidc.eks.us-east-1.amazonaws.com/id/00000000000000000000000000000000"
    )),
    mut_arg("exempt_namespaces", |a| a.default_value(""))
)]
pub struct CheckArgs {
    /// Files, directories (searched recursively for *.yaml, *.yml, *.json) or `-` for stdin.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,

    /// Output format.
    #[arg(long, value_enum, default_value = "text", env = "HATRACK_CHECK_FORMAT")]
    pub format: Format,

    /// `--mode` and `--exempt-namespaces`, as the webhook's.
    #[command(flatten)]
    pub policy: PolicyArgs,

    /// Namespace of objects that do not set `metadata.namespace`.
    #[arg(long, default_value = "default", env = "HATRACK_CHECK_NAMESPACE")]
    pub namespace: String,

    /// The cluster, to validate IAMRoleBindings as `plan` does.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// What `check` judges with.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    pub mode: Mode,
    pub exempt_namespaces: HashSet<String>,
    pub default_namespace: String,
    /// Cluster settings for validating IAMRoleBindings as `plan` does.
    pub settings: Settings,
    /// Kinds beyond the built-in workloads that embed pod templates.
    pub templates: detect::PodTemplates,
    /// The time StaticKeyExemptions of the input are judged at (now).
    pub now: jiff::Timestamp,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            mode: Mode::Enforce,
            // `check` cannot break a cluster: it judges every namespace unless told otherwise.
            exempt_namespaces: HashSet::new(),
            default_namespace: "default".into(),
            settings: Settings::example(),
            templates: detect::PodTemplates::default(),
            now: jiff::Timestamp::now(),
        }
    }
}

impl CheckOptions {
    /// The options of a `check` command line; cluster flags that cannot work are an error.
    pub fn from_args(args: &CheckArgs) -> Result<Self, SettingsError> {
        Ok(Self {
            mode: args.policy.mode,
            exempt_namespaces: args.policy.exempt_namespace_set(),
            default_namespace: args.namespace.clone(),
            settings: args.cluster.settings()?,
            templates: detect::PodTemplates::default(),
            now: jiff::Timestamp::now(),
        })
    }
}

/// The judgement of one object.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckResult {
    pub file: String,
    /// One-based document number in the file.
    pub document: usize,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub verdict: Verdict,
    /// The mode the object was judged in (`null` when exempt).
    pub mode: Option<Mode>,
    pub exempt: bool,
    pub findings: Vec<Finding>,
    pub warnings: Vec<Warning>,
    /// The StaticKeyExemption of the input that covers the workload: active, it admits the
    /// findings; expired, the workload was judged again.
    pub exemption: Option<crate::exemption::Reported>,
}

/// Input that cannot be judged (exit 2).
#[derive(Debug, Clone, serde::Serialize)]
pub struct InputError {
    pub file: String,
    pub document: Option<usize>,
    pub message: String,
}

/// Everything `check` found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CheckReport {
    pub results: Vec<CheckResult>,
    pub errors: Vec<InputError>,
    /// Objects that are neither workloads nor IAMRoleBindings (Secrets, Services, …).
    pub ignored: usize,
}

impl CheckReport {
    pub fn exit_code(&self) -> u8 {
        if !self.errors.is_empty() {
            2
        } else if self.results.iter().any(|r| r.verdict == Verdict::Deny) {
            1
        } else {
            0
        }
    }

    fn count(&self, v: Verdict) -> usize {
        self.results.iter().filter(|r| r.verdict == v).count()
    }
}

/// Validates an IAMRoleBinding found in the input exactly as `plan` does (spec, IAM limits,
/// and the IAMGuardrails and Namespaces of the input); any problem denies it.
fn validate_role_binding(
    doc: &Document,
    offline: &OfflineContext,
    settings: &Settings,
) -> Vec<Finding> {
    match offline.plan(doc, settings) {
        Ok(_) => Vec::new(),
        Err(problems) => problems
            .into_iter()
            .map(|p| {
                let message = match &p.guardrail {
                    Some(g) => format!("violates IAMGuardrail {g}: {}", p.message),
                    None => p.message,
                };
                role_binding_finding(doc, &p.field, message)
            })
            .collect(),
    }
}

/// A finding of rule `invalid-role-binding` for an IAMRoleBinding document: `path` is the
/// field (`spec.policies[0].arn`), `message` what is wrong and how to fix it.
pub fn role_binding_finding(doc: &Document, path: &str, message: String) -> Finding {
    Finding {
        rule: RuleId::InvalidRoleBinding,
        object: ObjectRef {
            kind: doc.kind().to_string(),
            namespace: doc.namespace().map(str::to_string),
            name: doc.name().to_string(),
        },
        container: None,
        path: path.to_string(),
        message,
        subject: path.to_string(),
    }
}

fn is_role_binding(doc: &Document) -> bool {
    crate::plan::is_role_binding(doc)
}

/// Judges documents (the library entry point of `check`; pure).
pub fn check_documents(docs: &[Document], opts: &CheckOptions) -> CheckReport {
    let mut report = CheckReport::default();
    let (view, errors) = view_from_documents(docs, &opts.default_namespace);
    report.errors = errors;
    let (offline, guardrail_errors) = OfflineContext::from_documents(docs, &opts.default_namespace);
    let exemptions = exemptions_from_documents(docs, &mut report.errors);
    for (doc, errs) in guardrail_errors {
        report.errors.push(InputError {
            file: doc.file.clone(),
            document: Some(doc.index + 1),
            message: format!(
                "IAMGuardrail {}: {}",
                doc.name(),
                errs.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        });
    }

    for doc in docs {
        let kind = doc.kind();
        let namespace = doc.namespace().unwrap_or(&opts.default_namespace);
        if is_role_binding(doc) {
            let findings = validate_role_binding(doc, &offline, &opts.settings);
            let warnings = offline
                .unchecked(doc)
                .map(|message| Warning {
                    container: None,
                    path: "spec.managedPolicyArns".into(),
                    message,
                })
                .into_iter()
                .collect();
            let verdict = if findings.is_empty() {
                Verdict::Allow
            } else {
                Verdict::Deny
            };
            report.results.push(CheckResult {
                file: doc.file.clone(),
                document: doc.index + 1,
                kind: kind.into(),
                namespace: Some(namespace.into()),
                name: doc.name().into(),
                verdict,
                mode: Some(Mode::Enforce),
                exempt: false,
                findings,
                warnings,
                // IAMRoleBindings are never exempt.
                exemption: None,
            });
            continue;
        }
        let group = detect::templates::group_of(doc.api_version());
        if !opts.templates.is_workload(group, kind) {
            report.ignored += 1;
            continue;
        }
        let name = detect::object_name(&doc.object);
        let mut result = CheckResult {
            file: doc.file.clone(),
            document: doc.index + 1,
            kind: kind.into(),
            namespace: Some(namespace.into()),
            name: name.into(),
            verdict: Verdict::Allow,
            mode: None,
            exempt: false,
            findings: Vec::new(),
            warnings: Vec::new(),
            exemption: None,
        };
        if opts.exempt_namespaces.contains(namespace) {
            result.exempt = true;
            report.results.push(result);
            continue;
        }
        let arena = bumpalo::Bump::new();
        let json = detect::Json::from_value(&doc.object, &arena);
        let target = detect::Target {
            kind,
            namespace,
            name,
            object: &json,
        };
        match detect::evaluate_with(&target, group, &opts.templates, &view) {
            Ok(Some(eval)) => {
                let mode =
                    detect::ReferenceView::namespace_mode(&view, namespace).unwrap_or(opts.mode);
                let mut decision = detect::decide(mode, &eval, None);
                let applied =
                    crate::exemption::applicable(&exemptions, kind, namespace, name, opts.now);
                if let Some(a) = &applied
                    && a.state == crate::exemption::State::Active
                {
                    decision.verdict = Verdict::Allow;
                }
                result.exemption = applied.map(|a| a.reported());
                let Evaluation {
                    findings, warnings, ..
                } = eval;
                result.verdict = decision.verdict;
                result.mode = Some(mode);
                result.findings = findings;
                result.warnings = warnings;
                report.results.push(result);
            }
            Ok(None) => report.ignored += 1,
            Err(e) => report.errors.push(InputError {
                file: doc.file.clone(),
                document: Some(doc.index + 1),
                message: e.to_string(),
            }),
        }
    }
    report
}

/// The StaticKeyExemptions of the input; one that cannot be read is an input error.
fn exemptions_from_documents(
    docs: &[Document],
    errors: &mut Vec<InputError>,
) -> Vec<crate::exemption::Exemption> {
    let mut out = Vec::new();
    for doc in docs {
        if doc.kind() != "StaticKeyExemption" || !doc.api_version().starts_with("hatrack.dev/") {
            continue;
        }
        match serde_json::from_value::<crate::crd::StaticKeyExemption>(doc.object.clone()) {
            Ok(e) => out.push(crate::exemption::Exemption::from_resource(&e)),
            Err(e) => errors.push(InputError {
                file: doc.file.clone(),
                document: Some(doc.index + 1),
                message: format!("StaticKeyExemption {}: {e}", doc.name()),
            }),
        }
    }
    out
}

/// The Secrets, ConfigMaps and Namespace modes of the input, as facts (what the webhook's
/// watch caches would hold), and the documents among them that cannot be read.
pub fn view_from_documents(
    docs: &[Document],
    default_namespace: &str,
) -> (InMemoryView, Vec<InputError>) {
    let mut view = InMemoryView::new();
    // The input is not the whole cluster: a Secret it does not hold may exist.
    view.set_partial(true);
    let mut errors = Vec::new();
    for doc in docs {
        let ns = doc.namespace().unwrap_or(default_namespace);
        let mut fail = |message: String| {
            errors.push(InputError {
                file: doc.file.clone(),
                document: Some(doc.index + 1),
                message,
            })
        };
        match doc.kind() {
            "Secret" => match secret_data(&doc.object) {
                Ok(data) => view.insert(
                    RefKind::Secret,
                    ns,
                    doc.name(),
                    detect::classify_data(data.iter().map(|(k, v)| (k.as_str(), v.as_slice()))),
                ),
                Err(msg) => fail(format!("Secret {}: {msg}", doc.name())),
            },
            "ConfigMap" => match configmap_data(&doc.object) {
                Ok(data) => view.insert(
                    RefKind::ConfigMap,
                    ns,
                    doc.name(),
                    detect::classify_data(data.iter().map(|(k, v)| (k.as_str(), v.as_slice()))),
                ),
                Err(msg) => fail(format!("ConfigMap {}: {msg}", doc.name())),
            },
            "Namespace" => {
                let label = doc
                    .object
                    .pointer("/metadata/labels")
                    .and_then(|l| l.get(MODE_LABEL));
                match label.map(|l| l.as_str().map(str::parse::<Mode>)) {
                    None => {}
                    Some(Some(Ok(mode))) => view.set_namespace_mode(doc.name(), mode),
                    Some(Some(Err(e))) => {
                        fail(format!("Namespace {}: label {MODE_LABEL}: {e}", doc.name()))
                    }
                    Some(None) => fail(format!(
                        "Namespace {}: label {MODE_LABEL} must be a string",
                        doc.name()
                    )),
                }
            }
            _ => {}
        }
    }
    (view, errors)
}

type Data = Vec<(String, Vec<u8>)>;

fn string_map(object: &Value, field: &str, out: &mut Data, decode: bool) -> Result<(), String> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Object(m)) => {
            for (k, v) in m {
                // The API server accepts a null value and stores the key with an empty one.
                if v.is_null() {
                    out.push((k.clone(), Vec::new()));
                    continue;
                }
                let Some(s) = v.as_str() else {
                    return Err(format!(
                        "{field}.{k}: expected a string, found {}",
                        manifest::json_type_name(v)
                    ));
                };
                let bytes = if decode {
                    base64::engine::general_purpose::STANDARD
                        .decode(s.trim())
                        .map_err(|e| format!("{field}.{k}: not valid base64: {e}"))?
                } else {
                    s.as_bytes().to_vec()
                };
                out.push((k.clone(), bytes));
            }
            Ok(())
        }
        Some(other) => Err(format!(
            "{field}: expected a mapping, found {}",
            manifest::json_type_name(other)
        )),
    }
}

fn secret_data(object: &Value) -> Result<Data, String> {
    let mut out = Vec::new();
    string_map(object, "data", &mut out, true)?;
    let mut string_data = Vec::new();
    string_map(object, "stringData", &mut string_data, false)?;
    // The API server writes stringData over data: a key in both holds the stringData value.
    for (k, v) in string_data {
        match out.iter_mut().find(|(name, _)| *name == k) {
            Some(entry) => entry.1 = v,
            None => out.push((k, v)),
        }
    }
    Ok(out)
}

fn configmap_data(object: &Value) -> Result<Data, String> {
    let mut out = Vec::new();
    string_map(object, "data", &mut out, false)?;
    string_map(object, "binaryData", &mut out, true)?;
    Ok(out)
}

// ---- output --------------------------------------------------------------------------------

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

/// Runs `hatrack check`.
pub fn run(args: CheckArgs) -> ExitCode {
    let stdout = std::io::stdout();
    let color = stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let mut out = stdout.lock();
    let mut err = std::io::stderr().lock();
    ExitCode::from(run_to(&args, &mut out, &mut err, color))
}

/// Runs `hatrack check`, writing the report to `out` and input errors to `err` (in JSON
/// output they are part of the document); returns the exit code.
pub fn run_to(args: &CheckArgs, out: &mut dyn Write, err: &mut dyn Write, color: bool) -> u8 {
    // SARIF and JUnit point at lines: they read the sources' positions too.
    let loaded = match args.format {
        Format::Sarif | Format::Junit => crate::check_formats::load_with_sources(&args.paths),
        Format::Text | Format::Json => {
            manifest::load_paths(&args.paths).map(|d| (d, Default::default()))
        }
    };
    let (docs, sources) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => {
            let report = CheckReport {
                errors: vec![InputError {
                    file: match &e {
                        manifest::LoadError::Read { path, .. }
                        | manifest::LoadError::Parse { path, .. } => path.clone(),
                    },
                    document: None,
                    message: e.to_string(),
                }],
                ..Default::default()
            };
            write_report(args.format, &report, &Default::default(), out, err, color);
            return 2;
        }
    };
    let mut opts = match CheckOptions::from_args(args) {
        Ok(o) => o,
        Err(e) => {
            let _ = writeln!(err, "hatrack check: {e}");
            return 2;
        }
    };
    match args.policy.pod_templates() {
        Ok(t) => opts.templates = t,
        Err(e) => {
            let _ = writeln!(err, "hatrack check: --pod-templates: {e}");
            return 2;
        }
    }
    let report = check_documents(&docs, &opts);
    write_report(args.format, &report, &sources, out, err, color);
    report.exit_code()
}

pub fn write_report(
    format: Format,
    report: &CheckReport,
    sources: &crate::check_formats::Sources,
    out: &mut dyn Write,
    err: &mut dyn Write,
    color: bool,
) {
    // A closed stdout (e.g. `| head`) must not turn into a panic: write errors are ignored.
    match format {
        Format::Json => {
            let _ = out.write_all((render_json(report) + "\n").as_bytes());
        }
        Format::Sarif => {
            let sarif = crate::check_formats::render_sarif(report, sources);
            let _ = out.write_all((sarif + "\n").as_bytes());
        }
        Format::Junit => {
            let _ = out.write_all(crate::check_formats::render_junit(report, sources).as_bytes());
        }
        Format::Text => {
            if !report.results.is_empty() || report.errors.is_empty() {
                let _ = out.write_all(render_text(report, color).as_bytes());
            }
            let _ = err.write_all(render_errors(report, false).as_bytes());
        }
    }
    let _ = out.flush();
    let _ = err.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs(yaml: &str) -> Vec<Document> {
        manifest::parse_documents("t.yaml", yaml).unwrap()
    }

    const WORKLOAD: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: app, namespace: team}
spec:
  template:
    spec:
      containers:
      - name: app
        envFrom:
        - secretRef: {name: creds}
"#;

    #[test]
    fn resolves_secrets_from_the_input_and_denies() {
        let input = format!(
            "{WORKLOAD}---\napiVersion: v1\nkind: Secret\nmetadata: {{name: creds, namespace: team}}\ndata:\n  AWS_ACCESS_KEY_ID: {}\n",
            base64::engine::general_purpose::STANDARD.encode("AKIAZ7Q3EXAMPLEK3Y4N")
        );
        let report = check_documents(&docs(&input), &CheckOptions::default());
        assert_eq!(report.results.len(), 1);
        assert_eq!(report.results[0].verdict, Verdict::Deny);
        assert_eq!(
            report.results[0].findings[0].rule,
            RuleId::EnvFromCredentialKeys
        );
        assert_eq!(report.ignored, 1);
        assert_eq!(report.exit_code(), 1);
    }

    #[test]
    fn warns_when_a_referenced_secret_is_not_in_the_input() {
        let report = check_documents(&docs(WORKLOAD), &CheckOptions::default());
        assert_eq!(report.results[0].verdict, Verdict::Warn);
        assert_eq!(report.exit_code(), 0);
        assert!(render_text(&report, false).contains("could not be read"));
    }

    #[test]
    fn namespace_label_in_the_input_sets_the_mode() {
        let input = format!(
            "{WORKLOAD}---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: team\n  labels: {{hatrack.dev/static-keys: audit}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: creds, namespace: team}}\nstringData: {{aws_secret_access_key: x}}\n"
        );
        let report = check_documents(&docs(&input), &CheckOptions::default());
        assert_eq!(report.results[0].mode, Some(Mode::Audit));
        assert_eq!(report.results[0].verdict, Verdict::Allow);
        assert_eq!(report.results[0].findings.len(), 1);
    }

    #[test]
    fn invalid_base64_in_a_secret_is_an_input_error() {
        let input = "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {k: '!!!'}\n";
        let report = check_documents(&docs(input), &CheckOptions::default());
        assert_eq!(report.exit_code(), 2);
        assert!(
            report.errors[0]
                .message
                .contains("data.k: not valid base64")
        );
        assert_eq!(report.errors[0].document, Some(1));
    }

    #[test]
    fn role_binding_findings_deny_and_render() {
        let d = docs(
            "apiVersion: hatrack.dev/v1alpha1\nkind: IAMRoleBinding\nmetadata: {name: rb, namespace: team}\n",
        );
        let f = role_binding_finding(&d[0], "spec.serviceAccountName", "must not be empty".into());
        assert_eq!(f.rule, RuleId::InvalidRoleBinding);
        assert_eq!(f.object.name, "rb");
        // A binding without a spec is invalid, as `plan` says.
        let report = check_documents(&d, &CheckOptions::default());
        assert_eq!(report.results[0].kind, "IAMRoleBinding");
        assert_eq!(report.results[0].verdict, Verdict::Deny);
        let finding = &report.results[0].findings[0];
        assert_eq!(
            (finding.path.as_str(), finding.message.as_str()),
            ("object", "missing field `spec`")
        );
    }

    #[test]
    fn role_bindings_are_validated_like_plan_including_guardrails() {
        let valid = "apiVersion: hatrack.dev/v1alpha1\nkind: IAMRoleBinding\nmetadata: {name: rb, namespace: team}\nspec: {serviceAccounts: [api], managedPolicyArns: [arn:aws:iam::aws:policy/AdministratorAccess]}\n";
        let report = check_documents(&docs(valid), &CheckOptions::default());
        assert_eq!(report.results[0].verdict, Verdict::Allow);
        let guarded = format!(
            "{valid}---\napiVersion: hatrack.dev/v1alpha1\nkind: IAMGuardrail\nmetadata: {{name: no-admin}}\nspec: {{allowedManagedPolicyArns: [\"arn:aws:iam::aws:policy/ReadOnly*\"]}}\n"
        );
        let report = check_documents(&docs(&guarded), &CheckOptions::default());
        let rb = report
            .results
            .iter()
            .find(|r| r.kind == "IAMRoleBinding")
            .unwrap();
        assert_eq!(rb.verdict, Verdict::Deny);
        assert_eq!(rb.findings[0].path, "spec.managedPolicyArns[0]");
        assert!(
            rb.findings[0]
                .message
                .contains("violates IAMGuardrail no-admin"),
            "{}",
            rb.findings[0].message
        );
        assert_eq!(report.exit_code(), 1);
    }

    #[derive(clap::Parser)]
    struct CheckCli {
        #[command(flatten)]
        args: CheckArgs,
    }

    fn parse_check(argv: &[&str]) -> CheckOptions {
        use clap::Parser;
        let cli =
            CheckCli::try_parse_from(std::iter::once("check").chain(argv.iter().copied())).unwrap();
        CheckOptions::from_args(&cli.args).unwrap()
    }

    #[test]
    fn check_flags_default_to_the_offline_options_and_share_the_webhook_policy_flags() {
        let defaults = parse_check(&["deploy/"]);
        let expected = CheckOptions::default();
        assert_eq!(defaults.mode, expected.mode);
        assert_eq!(defaults.exempt_namespaces, expected.exempt_namespaces);
        assert_eq!(defaults.default_namespace, expected.default_namespace);
        // The cluster flags are optional for `check` and default to placeholders.
        assert_eq!(defaults.settings.cluster_name, "cluster");
        assert_eq!(defaults.settings.account_id, "000000000000");
        assert_eq!(
            defaults.settings.oidc_issuer_host_path.as_deref(),
            Some("oidc.eks.us-east-1.amazonaws.com/id/00000000000000000000000000000000")
        );

        let set = parse_check(&[
            "--mode",
            "warn",
            "--exempt-namespaces",
            "a, ,b",
            "--cluster-name",
            "prod",
            "--account-id",
            "111122223333",
            "--trust-policy-max-chars",
            "4096",
            "x.yaml",
        ]);
        assert_eq!(set.mode, Mode::Warn);
        assert_eq!(
            set.exempt_namespaces,
            HashSet::from(["a".to_string(), "b".to_string()])
        );
        assert_eq!(set.settings.cluster_name, "prod");
        assert_eq!(set.settings.account_id, "111122223333");
        assert_eq!(set.settings.trust_policy_max_chars, 4096);
    }

    #[test]
    fn kube_system_is_judged_by_default() {
        let input = format!(
            "{}---\napiVersion: v1\nkind: Secret\nmetadata: {{name: creds, namespace: kube-system}}\nstringData: {{AWS_ACCESS_KEY_ID: AKIAZ7Q3EXAMPLEK3Y4N}}\n",
            WORKLOAD.replace("namespace: team", "namespace: kube-system")
        );
        let report = check_documents(&docs(&input), &CheckOptions::default());
        assert!(!report.results[0].exempt);
        assert_eq!(report.results[0].verdict, Verdict::Deny);
        assert!(parse_check(&["x.yaml"]).exempt_namespaces.is_empty());
    }

    #[test]
    fn null_secret_values_are_read_as_empty() {
        let input = format!(
            "{WORKLOAD}---\napiVersion: v1\nkind: Secret\nmetadata: {{name: creds, namespace: team}}\ndata: {{AWS_ACCESS_KEY_ID: null, other: null}}\nstringData: {{x: null}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\ndata: {{k: null}}\n"
        );
        let report = check_documents(&docs(&input), &CheckOptions::default());
        assert_eq!(report.exit_code(), 0, "{:?}", report.errors);
        assert_eq!(report.results[0].verdict, Verdict::Allow);
    }

    #[test]
    fn exempt_namespaces_are_not_judged() {
        let input = WORKLOAD.replace("namespace: team", "namespace: kube-system");
        let opts = CheckOptions {
            exempt_namespaces: HashSet::from(["kube-system".to_string()]),
            ..CheckOptions::default()
        };
        let report = check_documents(&docs(&input), &opts);
        assert!(report.results[0].exempt);
        assert_eq!(report.results[0].verdict, Verdict::Allow);
        assert!(report.results[0].warnings.is_empty());
    }

    fn exemption(name: &str, target: &str, expires: &str) -> String {
        format!(
            "---\napiVersion: hatrack.dev/v1alpha1\nkind: StaticKeyExemption\nmetadata: {{name: {name}}}\nspec: {{namespace: team, {target}grantedBy: alice@platform, reason: TICKET-7 IRSA migration, expires: '{expires}'}}\n"
        )
    }

    const KEYS: &str = "---\napiVersion: v1\nkind: Secret\nmetadata: {name: creds, namespace: team}\nstringData: {AWS_ACCESS_KEY_ID: AKIAZ7Q3EXAMPLEK3Y4N}\n";

    #[test]
    fn an_active_exemption_of_the_input_admits_and_an_expired_one_is_enforced() {
        let active = format!(
            "{WORKLOAD}{KEYS}{}",
            exemption(
                "legacy",
                "kind: Deployment, name: app, ",
                "2999-01-01T00:00:00Z"
            )
        );
        let report = check_documents(&docs(&active), &CheckOptions::default());
        let r = &report.results[0];
        assert_eq!(r.verdict, Verdict::Allow);
        assert_eq!(r.findings.len(), 1, "findings are still reported");
        let e = r.exemption.as_ref().unwrap();
        assert_eq!(e.state, crate::exemption::State::Active);
        assert_eq!(report.exit_code(), 0);
        let text = render_text(&report, false);
        assert!(
            text.contains("exempt until 2999-01-01T00:00:00Z by StaticKeyExemption legacy, granted by alice@platform: TICKET-7 IRSA migration"),
            "{text}"
        );
        assert!(render_json(&report).contains("\"grantedBy\": \"alice@platform\""));

        let expired = format!(
            "{WORKLOAD}{KEYS}{}",
            exemption("legacy", "", "2020-01-01T00:00:00Z")
        );
        let report = check_documents(&docs(&expired), &CheckOptions::default());
        let r = &report.results[0];
        assert_eq!(r.verdict, Verdict::Deny);
        assert_eq!(
            r.exemption.as_ref().unwrap().state,
            crate::exemption::State::Expired
        );
        assert!(render_text(&report, false).contains("expired at 2020-01-01T00:00:00Z"));

        // Another workload's exemption changes nothing.
        let other = format!(
            "{WORKLOAD}{KEYS}{}",
            exemption("other", "name: other, ", "2999-01-01T00:00:00Z")
        );
        let report = check_documents(&docs(&other), &CheckOptions::default());
        assert_eq!(report.results[0].verdict, Verdict::Deny);
        assert!(report.results[0].exemption.is_none());
    }

    #[test]
    fn role_bindings_are_never_exempt() {
        let input = format!(
            "apiVersion: hatrack.dev/v1alpha1\nkind: IAMRoleBinding\nmetadata: {{name: rb, namespace: team}}\n{}",
            exemption(
                "rb",
                "kind: IAMRoleBinding, name: rb, ",
                "2999-01-01T00:00:00Z"
            )
        );
        let report = check_documents(&docs(&input), &CheckOptions::default());
        assert_eq!(report.results[0].verdict, Verdict::Deny);
        assert!(report.results[0].exemption.is_none());
    }

    #[test]
    fn an_unreadable_exemption_is_an_input_error() {
        let input = "apiVersion: hatrack.dev/v1alpha1\nkind: StaticKeyExemption\nmetadata: {name: x}\nspec: {namespace: team}\n";
        let report = check_documents(&docs(input), &CheckOptions::default());
        assert_eq!(report.exit_code(), 2);
        assert!(report.errors[0].message.contains("StaticKeyExemption x"));
    }

    #[test]
    fn malformed_workload_is_an_input_error_with_position() {
        let input = "kind: Pod\nmetadata: {name: p}\nspec: {containers: 5}\n";
        let report = check_documents(&docs(input), &CheckOptions::default());
        assert_eq!(report.exit_code(), 2);
        let text = render_errors(&report, false);
        assert!(
            text.contains("error: t.yaml (document 1): Pod p: spec.containers: expected an array"),
            "{text}"
        );
    }
}
