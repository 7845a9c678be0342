//! Walking a pod spec (as JSON) and applying the rules. Field paths are built only when a
//! finding, warning or error needs one.
//!
//! One walk, [`Cx`], split by job: typed access to the JSON (`access`), reading the pod spec
//! (`pod`), a container's env and commands (`env`, with the kubelet's `$(VAR)` expansion in
//! `expansion`), credentials files (`files`), volumes (`volumes`); findings and lookups here.

use std::collections::HashSet;
use std::sync::Arc;

use super::facts::{Lookup, ObjectFacts, RefKind, ReferenceView};
use super::json::Object;
use super::scan::Hit;
use super::{DetectError, Evaluation, Finding, ObjectRef, RuleId, Target, Warning};
use pod::{CPath, Mount, Volume, pod_metadata};

mod access;
mod env;
mod expansion;
mod files;
mod pod;
mod volumes;

pub(super) fn evaluate(
    target: &Target<'_>,
    spec_path: &[&str],
    containers: Option<&[String]>,
    refs: &dyn ReferenceView,
) -> Result<Evaluation, DetectError> {
    let mut cx = Cx {
        refs,
        object: ObjectRef {
            kind: target.kind.to_string(),
            namespace: Some(target.namespace.to_string()),
            name: target.name.to_string(),
        },
        namespace: target.namespace,
        prefix: spec_path.join("."),
        service_account: String::new(),
        findings: Vec::new(),
        warnings: Vec::new(),
        unreadable: HashSet::new(),
    };
    let spec = cx.pod_spec(target.object, spec_path)?;
    let sa = cx
        .opt_str(spec, "serviceAccountName", || "serviceAccountName".into())?
        .or(cx.opt_str(spec, "serviceAccount", || "serviceAccount".into())?)
        .filter(|s| !s.is_empty())
        .unwrap_or("default");
    cx.service_account = sa.to_string();

    let volumes = cx.volumes(spec)?;
    // Annotations and labels reach a container only through the downward API.
    let meta = pod_metadata(target.object, spec_path);
    let volume_index: std::collections::HashMap<&str, usize> = volumes
        .iter()
        .enumerate()
        .map(|(i, v)| (v.name, i))
        .collect();
    // Per volume, the containers mounting it (each once: a pod has a handful of containers).
    let mut mounted_by: Vec<Vec<&str>> = vec![Vec::new(); volumes.len()];

    for (cp, c) in cx.containers(spec, containers)? {
        let c = cx.obj(c, || cp.to_string())?;
        let name = cx
            .opt_str(c, "name", || format!("{cp}.name"))?
            .unwrap_or("");
        let mounts = cx.mounts(c, &cp)?;
        for m in &mounts {
            if let Some(&vi) = volume_index.get(m.volume)
                && !mounted_by[vi].contains(&name)
            {
                mounted_by[vi].push(name);
            }
        }
        cx.container(c, &cp, name, &mounts, &volumes, meta)?;
    }

    for (vol, users) in volumes.iter().zip(&mounted_by) {
        cx.volume(vol, users);
        cx.downward(vol, meta);
    }

    Ok(Evaluation {
        object: cx.object,
        service_account: cx.service_account,
        findings: cx.findings,
        warnings: cx.warnings,
    })
}

/// The walk of one workload: what it has found so far.
struct Cx<'r> {
    refs: &'r dyn ReferenceView,
    object: ObjectRef,
    namespace: &'r str,
    prefix: String,
    service_account: String,
    findings: Vec<Finding>,
    warnings: Vec<Warning>,
    /// Objects already warned about as unreadable.
    unreadable: HashSet<(RefKind, String)>,
}

/// What a lookup told us, after warnings were issued.
enum Known {
    /// Nothing could be learned (lookups off, or not found).
    Unknown,
    /// Optional reference to an object that does not exist: nothing reaches the pod.
    Absent,
    Found(Arc<ObjectFacts>),
}

impl Cx<'_> {
    /// One container's findings: its env, `envFrom`, commands, and the credentials files it
    /// can read, in that order.
    fn container(
        &mut self,
        c: &Object<'_>,
        cp: &CPath<'_>,
        name: &str,
        mounts: &[Mount<'_>],
        volumes: &[Volume<'_>],
        meta: Option<&Object<'_>>,
    ) -> Result<(), DetectError> {
        let cont = Some(name);
        let mut ce = self.container_env(c, cp)?;
        let named_files = self.env_vars(&ce, cp, cont, meta)?;
        self.env_froms(c, cp, cont)?;
        self.commands(&mut ce, cp, name);
        self.named_credentials_files(named_files, &ce, cp, cont, mounts, volumes);
        self.default_credentials_files(&ce, cp, cont, mounts, volumes);
        Ok(())
    }

    // ---- findings and lookups --------------------------------------------------------------

    pub(super) fn fix(&self) -> String {
        format!(
            "give ServiceAccount '{}' an IAM role with an IAMRoleBinding instead",
            self.service_account
        )
    }

    pub(super) fn push(
        &mut self,
        rule: RuleId,
        container: Option<&str>,
        path: String,
        what: String,
        subject: String,
    ) {
        let message = format!("{what}; {}", self.fix());
        self.findings.push(Finding {
            rule,
            object: self.object.clone(),
            container: container.map(str::to_string),
            path: format!("{}.{}", self.prefix, path),
            message,
            subject,
        });
    }

    /// Looks a reference up; warns (once per object) when it cannot be read.
    pub(super) fn lookup(
        &mut self,
        kind: RefKind,
        name: &str,
        optional: bool,
        container: Option<&str>,
        path: impl FnOnce() -> String,
    ) -> Known {
        match self.refs.lookup(kind, self.namespace, name) {
            Lookup::Found(f) => Known::Found(f),
            // `--lookups off`: whether an optional object exists is not knowable, so it is
            // judged as `check` judges one absent from its input (a warning).
            Lookup::Disabled if optional => {
                self.warn_unreadable(kind, name, container, path, |object| {
                    format!(
                        "optional {object} is not read (lookups are off): nothing is set from it if it does not exist; if it does, what it holds is not judged"
                    )
                });
                Known::Absent
            }
            Lookup::Disabled => Known::Unknown,
            Lookup::Missing if optional => {
                // The kubelet sets nothing from an optional reference to an object that does
                // not exist. Offline, the object may exist in the cluster all the same.
                if self.refs.partial() {
                    self.warn_unreadable(kind, name, container, path, |object| {
                        format!(
                            "optional {object} is not in the input: nothing is set from it if it does not exist in the cluster; if it does, the webhook judges what it holds"
                        )
                    });
                }
                Known::Absent
            }
            Lookup::Missing => {
                self.warn_unreadable(kind, name, container, path, |object| {
                    format!(
                        "{object} could not be read (it does not exist yet, or is not in the input); references to it are judged by env var names only"
                    )
                });
                Known::Unknown
            }
        }
    }

    /// A warning about an object hatrack cannot read, the first time it meets it; `message`
    /// gets the object as `kind namespace/name`.
    fn warn_unreadable(
        &mut self,
        kind: RefKind,
        name: &str,
        container: Option<&str>,
        path: impl FnOnce() -> String,
        message: impl FnOnce(&str) -> String,
    ) {
        if self.unreadable.insert((kind, name.to_string())) {
            let object = format!("{} {}/{}", kind.as_str(), self.namespace, name);
            self.warnings.push(Warning {
                container: container.map(str::to_string),
                path: format!("{}.{}", self.prefix, path()),
                message: message(&object),
            });
        }
    }

    /// A key found in a literal (`place`, for the message).
    pub(super) fn literal(
        &mut self,
        hit: Hit,
        cont: Option<&str>,
        at: String,
        place: &str,
        subject_kind: &str,
        var: &str,
    ) {
        let rule = match hit {
            Hit::AccessKeyId { .. } => RuleId::LiteralAccessKey,
            Hit::SecretAssignment { .. } => RuleId::LiteralSecretKey,
        };
        let what = format!("{place} contains {}", hit.describe());
        let subject = match &hit {
            Hit::AccessKeyId { masked } => format!("{subject_kind} {var} {masked}"),
            Hit::SecretAssignment { name } => format!("{subject_kind} {var} {name}"),
        };
        self.push(rule, cont, at, what, subject);
    }
}

/// `key 'a' holds` / `keys 'a', 'b' hold`.
pub(super) fn keys_hold<S: AsRef<str>>(keys: &[S]) -> String {
    let quoted: Vec<String> = keys.iter().map(|k| format!("'{}'", k.as_ref())).collect();
    if quoted.len() == 1 {
        format!("key {} holds", quoted[0])
    } else {
        format!("keys {} hold", quoted.join(", "))
    }
}

/// The rule for AWS keys in a referenced object of this kind.
pub(super) fn ref_rule(kind: RefKind) -> RuleId {
    match kind {
        RefKind::Secret => RuleId::CredentialsInReferencedSecret,
        RefKind::ConfigMap => RuleId::CredentialsInReferencedConfigMap,
    }
}
