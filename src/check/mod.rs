//! `hatrack check`: what the webhook would deny in a set of manifests, offline.
//!
//! The rules are the webhook's ([`crate::detect`]); Secrets, ConfigMaps and Namespaces found
//! in the input are resolved like the webhook's cluster caches would resolve them.
//! Exit codes: 0 nothing would be denied, 1 something would, 2 input cannot be read or parsed.
//!
//! This file: flags, options, judging the documents and running the command; [`inputs`]:
//! the cluster objects of the input as facts; [`render`]: text and JSON output.

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::detect::PolicyArgs;
use crate::detect::{self, Evaluation, Finding, Mode, ObjectRef, RuleId, Verdict, Warning};
use crate::manifest::{self, Document};
use crate::plan::OfflineContext;
use crate::settings::{ClusterArgs, Settings, SettingsError};

mod inputs;
mod render;
#[cfg(test)]
mod tests;

use inputs::exemptions_from_documents;
pub use inputs::view_from_documents;
pub use render::{render_errors, render_json, render_text};

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

impl CheckResult {
    /// A workload's row before it is judged: allowed, nothing found.
    pub fn unjudged(file: &str, document: usize, kind: &str, namespace: &str, name: &str) -> Self {
        CheckResult {
            file: file.to_string(),
            document,
            kind: kind.into(),
            namespace: Some(namespace.into()),
            name: name.into(),
            verdict: Verdict::Allow,
            mode: None,
            exempt: false,
            findings: Vec::new(),
            warnings: Vec::new(),
            exemption: None,
        }
    }
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

/// Judges an IAMRoleBinding found in the input exactly as `plan` does (the judge, with the
/// input's IAMGuardrails, IAMAccounts, Namespaces and earlier bindings' ServiceAccount claims);
/// any problem denies it. Also returns what could not be checked offline.
fn validate_role_binding(
    doc: &Document,
    offline: &OfflineContext,
    settings: &Settings,
) -> (Vec<Finding>, Option<String>) {
    match offline.plan(doc, settings) {
        (Ok(_), unchecked) => (Vec::new(), unchecked),
        (Err(problems), unchecked) => (
            problems
                .into_iter()
                .map(|p| {
                    let message = match &p.guardrail {
                        Some(g) => format!("violates IAMGuardrail {g}: {}", p.message),
                        None => p.message,
                    };
                    role_binding_finding(doc, &p.field, message)
                })
                .collect(),
            unchecked,
        ),
    }
}

/// A finding of rule `invalid-role-binding` for an IAMRoleBinding document: `path` is the
/// field (`spec.managedPolicyArns[0]`), `message` what is wrong and how to fix it.
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
            let (findings, unchecked) = validate_role_binding(doc, &offline, &opts.settings);
            let warnings = unchecked
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
            // IAMRoleBindings are never exempt.
            report.results.push(CheckResult {
                verdict,
                mode: Some(Mode::Enforce),
                findings,
                warnings,
                ..CheckResult::unjudged(&doc.file, doc.index + 1, kind, namespace, doc.name())
            });
            continue;
        }
        // A manifest without an apiVersion (kubectl would refuse it) is still judged as the
        // built-in kind its name says, never let through unread.
        let group = match doc.api_version() {
            "" => detect::builtin_group(kind).unwrap_or(""),
            api_version => detect::templates::group_of(api_version),
        };
        if !opts.templates.is_workload(group, kind) {
            report.ignored += 1;
            continue;
        }
        let name = detect::object_name(&doc.object);
        let result = CheckResult::unjudged(&doc.file, doc.index + 1, kind, namespace, name);
        let mode = detect::mode_in(namespace, opts.mode, &opts.exempt_namespaces, &view);
        judge_workload(&mut report, result, mode, &exemptions, opts.now, || {
            let arena = bumpalo::Bump::new();
            let json = detect::Json::from_value(&doc.object, &arena);
            let target = detect::Target {
                kind,
                namespace,
                name,
                object: &json,
            };
            detect::evaluate_with(&target, group, &opts.templates, &view)
        });
    }
    report
}

/// Judges one workload as the webhook would, into `report` (`check` and `audit` both): exempt
/// when `mode` is `None` (an exempt namespace), else `evaluate`d and decided in `mode`, the
/// StaticKeyExemption that covers it at `now` applied; a kind the rules do not judge is
/// counted as ignored, one they cannot read is an input error.
pub fn judge_workload(
    report: &mut CheckReport,
    mut result: CheckResult,
    mode: Option<Mode>,
    exemptions: &[crate::exemption::Exemption],
    now: jiff::Timestamp,
    evaluate: impl FnOnce() -> Result<Option<Evaluation>, detect::DetectError>,
) {
    let Some(mode) = mode else {
        result.exempt = true;
        report.results.push(result);
        return;
    };
    match evaluate() {
        Ok(Some(eval)) => {
            let namespace = result.namespace.as_deref().unwrap_or_default();
            let applied = crate::exemption::applicable(
                exemptions,
                &result.kind,
                namespace,
                &result.name,
                now,
            );
            let decision = crate::exemption::apply(
                detect::decide(mode, &eval, None),
                applied.as_ref().map(|a| (a.exemption, a.state)),
                eval.findings.len(),
            );
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
            document: Some(result.document),
            file: result.file,
            message: e.to_string(),
        }),
    }
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
