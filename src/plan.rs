//! `hatrack plan`: the IAM role each IAMRoleBinding in a set of manifests would produce,
//! computed offline with the same code the controller uses.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::crd::IAMRoleBinding;
use crate::manifest::{self, Document};
use crate::role::{self, DesiredRole, SpecError};
use crate::settings::{ClusterArgs, Settings};

/// Flags of `hatrack plan`.
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// Namespace assumed for bindings whose metadata has none (as `kubectl apply` would).
    #[arg(long, env = "HATRACK_DEFAULT_NAMESPACE", default_value = "default")]
    pub default_namespace: String,

    /// Files, directories (searched recursively for *.yaml, *.yml, *.json) or `-` for stdin.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

/// Whether a manifest is an IAMRoleBinding of any hatrack.dev version.
pub fn is_role_binding(doc: &Document) -> bool {
    doc.kind() == "IAMRoleBinding"
        && doc
            .api_version()
            .starts_with(&format!("{}/", crate::crd::GROUP))
}

/// Reads an IAMRoleBinding manifest into the typed resource. Type errors name the field.
pub fn read_binding(
    doc: &Document,
    default_namespace: &str,
) -> Result<IAMRoleBinding, Vec<SpecError>> {
    let mut binding: IAMRoleBinding =
        serde_path_to_error::deserialize(&doc.object).map_err(|e| {
            vec![SpecError {
                field: e.path().to_string(),
                message: e.inner().to_string(),
            }]
        })?;
    if binding
        .metadata
        .namespace
        .as_deref()
        .unwrap_or("")
        .is_empty()
    {
        binding.metadata.namespace = Some(default_namespace.to_string());
    }
    Ok(binding)
}

/// The role a binding manifest would produce, or why it cannot.
pub fn plan_document(
    doc: &Document,
    settings: &Settings,
    default_namespace: &str,
) -> Result<DesiredRole, Vec<SpecError>> {
    let binding = read_binding(doc, default_namespace)?;
    role::desired_role(&binding, settings)
}

/// Formats spec errors as `FILE (document N): Kind ns/name: field: message` lines.
pub fn describe_errors(doc: &Document, errors: &[SpecError]) -> String {
    let object = format!(
        "{} {}/{}",
        doc.kind(),
        doc.namespace().unwrap_or("-"),
        doc.name()
    );
    errors
        .iter()
        .map(|e| format!("{}: {object}: {e}", doc.location()))
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn run(args: PlanArgs) -> ExitCode {
    let settings = match args.cluster.settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("hatrack plan: {e}");
            return ExitCode::from(2);
        }
    };
    let docs = match manifest::load_paths(&args.paths) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("hatrack plan: {e}");
            return ExitCode::from(2);
        }
    };
    let mut roles = Vec::new();
    let mut invalid = false;
    for doc in docs.iter().filter(|d| is_role_binding(d)) {
        match plan_document(doc, &settings, &args.default_namespace) {
            Ok(role) => roles.push(role),
            Err(errors) => {
                invalid = true;
                eprintln!("{}", describe_errors(doc, &errors));
            }
        }
    }
    if invalid {
        return ExitCode::from(1);
    }
    match serde_json::to_string_pretty(&roles) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hatrack plan: cannot serialise the plan: {e}");
            ExitCode::from(2)
        }
    }
}
