//! A container's env, `envFrom` and commands: credential-named variables, keys in literal
//! values (also after the kubelet's `$(VAR)` expansion), values taken from Secrets and
//! ConfigMaps, and the credentials and config files the env names.

use std::borrow::Cow;

use super::super::DetectError;
use super::super::expand;
use super::super::facts::{KeyClass, ObjectFacts, RefKind, classify_value};
use super::super::json::Object;
use super::super::scan;
use super::super::{RuleId, Warning};
use super::expansion::{Env, Expansion};
use super::pod::{CPath, field_values};
use super::{Cx, Known, keys_hold, ref_rule};

/// The string fields of a container that custom kinds run as a script (Tekton, Argo).
const SCRIPT_FIELDS: [&str; 2] = ["script", "source"];

/// The variables that name a file the SDKs read keys from: the shared credentials file (the
/// Java SDK v1 also reads `AWS_CREDENTIAL_PROFILES_FILE`), and the config file.
const SHARED_CREDENTIALS_FILES: [&str; 2] = [
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CREDENTIAL_PROFILES_FILE",
];
const CONFIG_FILE: &str = "AWS_CONFIG_FILE";

/// Whether `var` names the shared credentials file (case-insensitively).
pub(super) fn names_shared_credentials_file(var: &str) -> bool {
    SHARED_CREDENTIALS_FILES
        .iter()
        .any(|n| var.eq_ignore_ascii_case(n))
}

/// One `env[]` entry as written: (name, `value`, `valueFrom`).
pub(super) type EnvEntry<'v> = (&'v str, Option<&'v str>, Option<&'v Object<'v>>);

/// A file the SDKs read static keys from, named by the env: (env index, variable, path as
/// written).
pub(super) type NamedFile<'v> = (usize, &'v str, String);

/// What a container runs with, as written, and its `$(VAR)` expansion.
pub(super) struct ContainerEnv<'v> {
    pub(super) entries: Vec<EnvEntry<'v>>,
    command: Vec<&'v str>,
    args: Vec<&'v str>,
    handlers: Vec<ExecHandler<'v>>,
    /// Scripts the container runs that custom kinds add to it: a Tekton step's `script`, an
    /// Argo script template's `source` (built-in containers have neither field).
    scripts: Vec<(&'static str, &'v str)>,
    pub(super) working_dir: &'v str,
    /// Whether some string refers to a var (the expansion is worked out only then).
    expanding: bool,
    pub(super) exp: Expansion,
}

impl Cx<'_> {
    /// Reads a container's env (every entry first: `$(VAR)` expansion needs them all), its
    /// commands and working directory, and works out the expansion when some string refers
    /// to a var.
    pub(super) fn container_env<'v>(
        &self,
        c: &'v Object<'v>,
        cp: &CPath<'_>,
    ) -> Result<ContainerEnv<'v>, DetectError> {
        let env = self.arr(c, "env", || format!("{cp}.env"))?;
        // Read every entry first: `$(VAR)` expansion needs them all.
        let mut entries = Vec::with_capacity(env.len());
        for (ei, e) in env.iter().enumerate() {
            let at = || format!("{cp}.env[{ei}]");
            let e = self.obj(e, at)?;
            let var = self
                .opt_str(e, "name", || format!("{}.name", at()))?
                .unwrap_or("");
            let value = self.opt_str(e, "value", || format!("{}.value", at()))?;
            let value_from = self.opt_obj(e, "valueFrom", || format!("{}.valueFrom", at()))?;
            entries.push((var, value, value_from));
        }
        let command = self.strings(c, "command", || format!("{cp}.command"))?;
        let args = self.strings(c, "args", || format!("{cp}.args"))?;
        let handlers = self.exec_handlers(c, cp)?;
        let mut scripts = Vec::new();
        for field in SCRIPT_FIELDS {
            if let Some(script) = self.opt_str(c, field, || format!("{cp}.{field}"))? {
                scripts.push((field, script));
            }
        }
        let working_dir = self
            .opt_str(c, "workingDir", || format!("{cp}.workingDir"))?
            .unwrap_or("");

        // The kubelet's `$(VAR)` expansion, worked out only when some string refers to a var.
        let refers = expand::refers;
        let expanding = entries.iter().any(|(_, v, _)| v.is_some_and(refers))
            || command.iter().chain(&args).any(|t| refers(t))
            || handlers.iter().any(|h| h.2.iter().any(|t| refers(t)));
        let mut exp = Expansion::default();
        if expanding {
            exp.run(&entries);
        }
        Ok(ContainerEnv {
            entries,
            command,
            args,
            handlers,
            scripts,
            working_dir,
            expanding,
            exp,
        })
    }

    /// The findings of `env[]`; returns the files it names that the SDKs read keys from.
    pub(super) fn env_vars<'v>(
        &mut self,
        ce: &ContainerEnv<'v>,
        cp: &CPath<'_>,
        cont: Option<&str>,
        meta: Option<&Object<'_>>,
    ) -> Result<Vec<NamedFile<'v>>, DetectError> {
        let mut aws_files = Vec::new();
        for (ei, &(var, value, value_from)) in ce.entries.iter().enumerate() {
            let at = || format!("{cp}.env[{ei}]");
            // The value the process gets, when expansion changed it.
            let expanded = ce.exp.env.get(ei).and_then(Option::as_deref);
            let runtime = expanded.or(value);

            if (names_shared_credentials_file(var) || var.eq_ignore_ascii_case(CONFIG_FILE))
                && let Some(v) = runtime.filter(|v| !v.is_empty())
            {
                aws_files.push((ei, var, v.to_string()));
            }

            if scan::is_credential_name(var) {
                let source = match (runtime, value_from) {
                    (_, Some(vf)) => {
                        let exact = scan::is_exact_credential_name(var);
                        self.credential_source(vf, exact, cont, at)?
                    }
                    (Some(v), None) if scan::is_credential_value(var, v) => {
                        Some("a literal value".into())
                    }
                    _ => None,
                };
                if let Some(source) = source {
                    self.push(
                        RuleId::EnvStaticKey,
                        cont,
                        at(),
                        format!("env {var} sets a static AWS credential from {source}"),
                        format!("env {var}"),
                    );
                }
                continue;
            }

            // A literal under a name that says it holds AWS's secret key, in the shape of one
            // (`AWS_S3_SECRET_ACCESS_KEY`): judged as that key in a Secret or ConfigMap is.
            if let Some(v) = runtime
                && classify_value(var, v.as_bytes()) == KeyClass::AwsSecretKey
            {
                self.push(
                    RuleId::EnvStaticKey,
                    cont,
                    at(),
                    format!("env {var} sets an AWS secret access key (its name and shape say so) from a literal value"),
                    format!("env {var}"),
                );
                continue;
            }

            if let Some(v) = value {
                if let Some(hit) = scan::find_credentials(v) {
                    self.literal(hit, cont, at(), &format!("env {var} value"), "env", var);
                } else if let Some(x) = expanded
                    && let Some(hit) = scan::find_credentials(x)
                {
                    let place = format!("env {var} value (after the kubelet's $(VAR) expansion)");
                    self.literal(hit, cont, at(), &place, "env", var);
                }
            }
            if let Some(vf) = value_from {
                self.key_ref(vf, var, cont, at)?;
                if let Some(fr) =
                    self.opt_obj(vf, "fieldRef", || format!("{}.valueFrom.fieldRef", at()))?
                    && let Some(fp) = self.opt_str(fr, "fieldPath", || {
                        format!("{}.valueFrom.fieldRef.fieldPath", at())
                    })?
                {
                    for (_, value) in field_values(meta, fp) {
                        if let Some(hit) = scan::find_credentials(value) {
                            let place = format!("env {var} (from {fp})");
                            self.literal(hit, cont, at(), &place, "env", var);
                        }
                    }
                }
            }
        }
        Ok(aws_files)
    }

    /// The findings of `envFrom[]`: the Secrets and ConfigMaps it imports.
    pub(super) fn env_froms(
        &mut self,
        c: &Object<'_>,
        cp: &CPath<'_>,
        cont: Option<&str>,
    ) -> Result<(), DetectError> {
        let env_from = self.arr(c, "envFrom", || format!("{cp}.envFrom"))?;
        for (ei, e) in env_from.iter().enumerate() {
            let at = || format!("{cp}.envFrom[{ei}]");
            let e = self.obj(e, at)?;
            let prefix = self
                .opt_str(e, "prefix", || format!("{}.prefix", at()))?
                .unwrap_or("");
            for (field, kind) in [
                ("secretRef", RefKind::Secret),
                ("configMapRef", RefKind::ConfigMap),
            ] {
                if let Some(r) = self.opt_obj(e, field, || format!("{}.{field}", at()))? {
                    let name = self
                        .opt_str(r, "name", || format!("{}.{field}.name", at()))?
                        .unwrap_or("");
                    let optional =
                        self.opt_bool(r, "optional", || format!("{}.{field}.optional", at()))?;
                    if let Known::Found(facts) = self.lookup(kind, name, optional, cont, at) {
                        self.env_from(&facts, kind, name, prefix, cont, at());
                    }
                }
            }
        }
        Ok(())
    }

    /// Keys in `command`, `args`, exec handlers and scripts, as written and as expanded (the
    /// kubelet does not expand scripts: their tools substitute their own parameters).
    pub(super) fn commands(&mut self, ce: &mut ContainerEnv<'_>, cp: &CPath<'_>, name: &str) {
        let cont = Some(name);
        let ContainerEnv {
            command,
            args,
            handlers,
            scripts,
            expanding,
            exp,
            ..
        } = ce;
        for &(field, text) in scripts.iter() {
            if let Some(hit) = scan::find_credentials(text) {
                self.literal(hit, cont, format!("{cp}.{field}"), field, field, "");
            }
        }
        let expanding = *expanding;
        // `command` and `args`, expanded with the container's final env; probe exec commands,
        // expanded with the static env values only; lifecycle hooks' exec commands, which the
        // kubelet runs as written.
        let mut lists: Vec<(Cow<'_, str>, &[&str], Env)> = vec![
            (Cow::Borrowed("command"), command, Env::Runtime),
            (Cow::Borrowed("args"), args, Env::Runtime),
        ];
        for (field, env, list) in handlers.iter() {
            lists.push((Cow::Owned(format!("{field}.exec.command")), list, *env));
        }
        for (field, list, env) in lists {
            for (ai, text) in list.iter().enumerate() {
                let at = || format!("{cp}.{field}[{ai}]");
                if let Some(hit) = scan::find_credentials(text) {
                    self.literal(hit, cont, at(), &field, &field, "");
                } else if expanding
                    && let Some(x) = exp.expand(text, env)
                    && let Some(hit) = scan::find_credentials(&x)
                {
                    let place = format!("{field} (after the kubelet's $(VAR) expansion)");
                    self.literal(hit, cont, at(), &place, &field, "");
                }
            }
        }
        if exp.too_long {
            self.warnings.push(Warning {
                container: cont.map(str::to_string),
                path: format!("{}.{cp}", self.prefix),
                message: format!(
                    "the $(VAR) expansion of container '{name}' exceeds what Linux passes to a process (128 KiB a string, 6 MiB in all), so it cannot start as written; hatrack scanned what it wrote and stopped expanding"
                ),
            });
        }
    }

    /// The exec commands of a container's lifecycle hooks and probes: (field path, the env
    /// the kubelet expands them with, the command).
    fn exec_handlers<'v>(
        &self,
        c: &'v Object<'v>,
        cp: &CPath<'_>,
    ) -> Result<Vec<ExecHandler<'v>>, DetectError> {
        let mut out = Vec::new();
        let mut handler = |h: &'v Object<'v>, field: String, env: Env| {
            let Some(exec) = self.opt_obj(h, "exec", || format!("{cp}.{field}.exec"))? else {
                return Ok(());
            };
            let list = self.strings(exec, "command", || format!("{cp}.{field}.exec.command"))?;
            if !list.is_empty() {
                out.push((field, env, list));
            }
            Ok::<(), DetectError>(())
        };
        if let Some(lc) = self.opt_obj(c, "lifecycle", || format!("{cp}.lifecycle"))? {
            for hook in ["postStart", "preStop"] {
                if let Some(h) = self.opt_obj(lc, hook, || format!("{cp}.lifecycle.{hook}"))? {
                    handler(h, format!("lifecycle.{hook}"), Env::None)?;
                }
            }
        }
        for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
            if let Some(h) = self.opt_obj(c, probe, || format!("{cp}.{probe}"))? {
                handler(h, probe.to_string(), Env::Static)?;
            }
        }
        Ok(out)
    }

    /// The first of `valueFrom.secretKeyRef` / `configMapKeyRef`: what it reads.
    fn key_ref_of<'v>(
        &self,
        vf: &'v Object<'v>,
        at: impl Fn() -> String + Copy,
    ) -> Result<Option<KeyRef<'v>>, DetectError> {
        for (field, kind) in [
            ("secretKeyRef", RefKind::Secret),
            ("configMapKeyRef", RefKind::ConfigMap),
        ] {
            let Some(r) = self.opt_obj(vf, field, || format!("{}.valueFrom.{field}", at()))? else {
                continue;
            };
            let name = self
                .opt_str(r, "name", || format!("{}.valueFrom.{field}.name", at()))?
                .unwrap_or("");
            let key = self
                .opt_str(r, "key", || format!("{}.valueFrom.{field}.key", at()))?
                .unwrap_or("");
            let optional = self.opt_bool(r, "optional", || {
                format!("{}.valueFrom.{field}.optional", at())
            })?;
            return Ok(Some(KeyRef {
                kind,
                name,
                key,
                optional,
            }));
        }
        Ok(None)
    }

    /// The key a `valueFrom` reads, and what the lookup of its object told (`None` without
    /// `secretKeyRef` or `configMapKeyRef`).
    fn key_ref_lookup<'v>(
        &mut self,
        vf: &'v Object<'v>,
        cont: Option<&str>,
        at: impl Fn() -> String + Copy,
    ) -> Result<Option<(KeyRef<'v>, Known)>, DetectError> {
        let Some(r) = self.key_ref_of(vf, at)? else {
            return Ok(None);
        };
        let known = self.lookup(r.kind, r.name, r.optional, cont, at);
        Ok(Some((r, known)))
    }

    /// Where a credential-named env var gets a value from (for messages), or `None` when it
    /// gets none: an empty value of a readable Secret or ConfigMap, or an optional reference
    /// to a key or object that does not exist (the kubelet then does not set the variable).
    /// Anything else an exact name (`AWS_SESSION_TOKEN`) says is a credential, whatever the
    /// value; a longer name that ends in one (`DISABLE_AWS_SESSION_TOKEN`) only when the value
    /// that can be read is key material, as its literal would be.
    fn credential_source(
        &mut self,
        vf: &Object<'_>,
        exact_name: bool,
        cont: Option<&str>,
        at: impl Fn() -> String + Copy,
    ) -> Result<Option<String>, DetectError> {
        let Some((
            KeyRef {
                kind,
                name,
                key,
                optional,
            },
            known,
        )) = self.key_ref_lookup(vf, cont, at)?
        else {
            return Ok(Some("valueFrom".into()));
        };
        let source = format!("{} '{name}' key '{key}'", kind.as_str());
        Ok(match known {
            Known::Absent => None,
            Known::Unknown => Some(source),
            Known::Found(facts) => match facts.key(key) {
                Some(k) if k.class == KeyClass::Empty => None,
                Some(k) if !exact_name && !k.class.is_credential() => None,
                None if optional => None,
                _ => Some(source),
            },
        })
    }

    /// `env[].valueFrom.secretKeyRef` / `configMapKeyRef` of a var whose name is harmless:
    /// judged by what the referenced value holds.
    fn key_ref(
        &mut self,
        vf: &Object<'_>,
        var: &str,
        cont: Option<&str>,
        at: impl Fn() -> String + Copy,
    ) -> Result<(), DetectError> {
        let Some((
            KeyRef {
                kind, name, key, ..
            },
            known,
        )) = self.key_ref_lookup(vf, cont, at)?
        else {
            return Ok(());
        };
        if let Known::Found(facts) = known
            && let Some(k) = facts.key(key).filter(|k| k.class.is_credential())
        {
            self.push(
                ref_rule(kind),
                cont,
                at(),
                format!(
                    "env {var} takes key '{key}' of {} '{name}', which holds {}",
                    kind.as_str(),
                    k.class.describe()
                ),
                format!("env {var} {} {name} {key}", kind.as_str()),
            );
        }
        Ok(())
    }

    fn env_from(
        &mut self,
        facts: &ObjectFacts,
        kind: RefKind,
        name: &str,
        prefix: &str,
        cont: Option<&str>,
        at: String,
    ) {
        let mut named = Vec::new();
        let mut material = Vec::new();
        for k in &facts.keys {
            if k.class == KeyClass::Empty {
                // An empty credential env var is unset for the SDKs.
                continue;
            }
            let full = format!("{prefix}{}", k.name);
            if scan::is_exact_credential_name(&full)
                || (k.class.is_credential() && scan::is_credential_name(&full))
            {
                named.push(full);
            } else if k.class.is_credential() {
                material.push(full);
            }
        }
        if !named.is_empty() {
            self.push(
                RuleId::EnvFromCredentialKeys,
                cont,
                at.clone(),
                format!(
                    "envFrom imports {} '{name}', which sets the AWS credential env vars {}",
                    kind.as_str(),
                    named.join(", ")
                ),
                format!("envFrom {} {name} names", kind.as_str()),
            );
        }
        if !material.is_empty() {
            self.push(
                ref_rule(kind),
                cont,
                at,
                format!(
                    "envFrom imports {} '{name}', whose {} AWS key material",
                    kind.as_str(),
                    keys_hold(&material)
                ),
                format!("envFrom {} {name} material", kind.as_str()),
            );
        }
    }
}

/// An exec command of a lifecycle hook or probe: its field path, the env it is expanded with,
/// the command.
type ExecHandler<'v> = (String, Env, Vec<&'v str>);

/// One `valueFrom.secretKeyRef` or `configMapKeyRef`.
struct KeyRef<'v> {
    kind: RefKind,
    name: &'v str,
    key: &'v str,
    optional: bool,
}
