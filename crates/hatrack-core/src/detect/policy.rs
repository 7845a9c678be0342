//! From findings to an admission decision: modes, UPDATE handling, the deny message and the
//! warnings. Pure; shared by the webhook and `hatrack check`.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use super::{Evaluation, Finding};

/// What the webhook does with findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Deny the request.
    Enforce,
    /// Allow it, and return the findings as admission warnings.
    Warn,
    /// Allow it silently; log and count the findings.
    Audit,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Warn => "warn",
            Mode::Audit => "audit",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "enforce" => Ok(Mode::Enforce),
            "warn" => Ok(Mode::Warn),
            "audit" => Ok(Mode::Audit),
            other => Err(format!(
                "unknown mode {other:?} (expected enforce, warn or audit)"
            )),
        }
    }
}

/// The outcome for one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Admitted with nothing to say.
    Allow,
    /// Admitted, with warnings for the client.
    Warn,
    /// Refused.
    Deny,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Warn => "warn",
            Verdict::Deny => "deny",
        }
    }
}

/// What to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    /// The message of a denial.
    pub message: Option<String>,
    /// Admission warnings for the client.
    pub warnings: Vec<String>,
    /// Findings the decision denies (new ones on UPDATE).
    pub denied: Vec<Finding>,
}

impl Decision {
    pub fn allowed(&self) -> bool {
        self.verdict != Verdict::Deny
    }
}

/// The mode a workload in `namespace` is judged in: `None` in an exempt namespace (not judged
/// at all), else the mode its namespace's label asks for, else `mode`. The webhook and
/// `check` both ask this.
pub fn mode_in(
    namespace: &str,
    mode: Mode,
    exempt_namespaces: &HashSet<String>,
    refs: &dyn super::ReferenceView,
) -> Option<Mode> {
    if exempt_namespaces.contains(namespace) {
        return None;
    }
    Some(labelled_mode(namespace, mode, refs))
}

/// The mode `namespace`'s label asks for, else `mode` (exempt namespaces not considered).
pub fn labelled_mode(namespace: &str, mode: Mode, refs: &dyn super::ReferenceView) -> Mode {
    refs.namespace_mode(namespace).unwrap_or(mode)
}

/// Decides on an evaluation in `mode`. On UPDATE, `old` is the evaluation of the old object:
/// only findings it did not already have are denied, and the old ones become warnings, so an
/// existing violator can still scale, roll back or change its image.
pub fn decide(mode: Mode, eval: &Evaluation, old: Option<&Evaluation>) -> Decision {
    let previous: HashSet<_> = old
        .map(|o| o.findings.iter().map(Finding::identity).collect())
        .unwrap_or_default();
    let (existing, new): (Vec<&Finding>, Vec<&Finding>) = eval
        .findings
        .iter()
        .partition(|f| previous.contains(&f.identity()));

    let reference_warnings = || {
        eval.warnings
            .iter()
            .map(|w| format!("hatrack: {}", w.message))
    };
    match mode {
        Mode::Enforce if !new.is_empty() => Decision {
            verdict: Verdict::Deny,
            message: Some(deny_message(eval, &new)),
            warnings: existing
                .iter()
                .map(|f| warning_line(f, true))
                .chain(reference_warnings())
                .collect(),
            denied: new.into_iter().cloned().collect(),
        },
        Mode::Enforce | Mode::Warn => {
            let warnings: Vec<String> = existing
                .iter()
                .map(|f| warning_line(f, true))
                .chain(new.iter().map(|f| warning_line(f, false)))
                .chain(reference_warnings())
                .collect();
            Decision {
                verdict: if warnings.is_empty() {
                    Verdict::Allow
                } else {
                    Verdict::Warn
                },
                message: None,
                warnings,
                denied: Vec::new(),
            }
        }
        Mode::Audit => Decision {
            verdict: Verdict::Allow,
            message: None,
            warnings: Vec::new(),
            denied: Vec::new(),
        },
    }
}

fn deny_message(eval: &Evaluation, denied: &[&Finding]) -> String {
    let mut msg = format!(
        "hatrack: {} {} carries static AWS keys ({} finding{}); give ServiceAccount '{}' an IAM role with an IAMRoleBinding instead:",
        eval.object.kind,
        eval.object.display_name(),
        denied.len(),
        if denied.len() == 1 { "" } else { "s" },
        eval.service_account,
    );
    for f in denied {
        msg.push_str("\n- ");
        msg.push_str(&f.summary());
    }
    msg
}

fn warning_line(f: &Finding, existing: bool) -> String {
    if existing {
        format!("hatrack (already present, not denied): {}", f.summary())
    } else {
        format!("hatrack: {}", f.summary())
    }
}
