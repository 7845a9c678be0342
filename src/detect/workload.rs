//! Walking a pod spec (as JSON) and applying the rules. Field paths are built only when a
//! finding, warning or error needs one.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::json::{Json, Object, field};

use super::expand;
use super::facts::{KeyClass, KeyFact, Lookup, ObjectFacts, RefKind, ReferenceView};
use super::scan::{self, Hit};
use super::{DetectError, Evaluation, Finding, ObjectRef, RuleId, Target, Warning};

const CONTAINER_KINDS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];
const SHARED_CREDENTIALS_FILE: &str = "AWS_SHARED_CREDENTIALS_FILE";
const CONFIG_FILE: &str = "AWS_CONFIG_FILE";

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

/// Where a container is, below the pod spec: `containers[0]`, `templates[2].container`.
struct CPath<'a> {
    base: Cow<'a, str>,
    field: &'a str,
    index: Option<usize>,
}

impl std::fmt::Display for CPath<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.index {
            Some(i) => write!(f, "{}{}[{i}]", self.base, self.field),
            None => write!(f, "{}{}", self.base, self.field),
        }
    }
}

/// A reference from a volume to a Secret or ConfigMap.
struct VolRef<'a> {
    kind: RefKind,
    name: &'a str,
    /// Keys projected by `items`, with the file path each gets (all keys, each under its own
    /// name, when `None`).
    items: Option<Vec<(&'a str, &'a str)>>,
    optional: bool,
    /// Index in `projected.sources`.
    source: Option<usize>,
}

struct Volume<'a> {
    index: usize,
    name: &'a str,
    refs: Vec<VolRef<'a>>,
    /// Files from the pod's own fields (`downwardAPI` items): (field path of the item, file
    /// path in the volume, `fieldRef.fieldPath`).
    fields: Vec<(String, &'a str, &'a str)>,
    /// The volume's source kind when hatrack cannot know what it holds (`emptyDir`,
    /// `hostPath`, `persistentVolumeClaim`, `csi`, …).
    opaque: Option<&'a str>,
}

struct Mount<'a> {
    volume: &'a str,
    path: &'a str,
    /// `subPath` (or `subPathExpr`, unexpanded): the part of the volume mounted at `path`.
    sub_path: &'a str,
}

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

impl<'r> Cx<'r> {
    // ---- typed access with errors that name the field -------------------------------------

    fn malformed(&self, path: String, expected: &'static str, found: &Json<'_>) -> DetectError {
        DetectError::Malformed {
            kind: self.object.kind.clone(),
            name: self.object.name.clone(),
            path: format!("{}.{}", self.prefix, path),
            expected,
            found: found.type_name(),
        }
    }

    fn obj<'v>(
        &self,
        v: &'v Json<'v>,
        at: impl FnOnce() -> String,
    ) -> Result<&'v Object<'v>, DetectError> {
        v.as_object()
            .ok_or_else(|| self.malformed(at(), "a mapping", v))
    }

    fn arr<'v>(
        &self,
        m: &'v Object<'v>,
        key: &str,
        at: impl FnOnce() -> String,
    ) -> Result<&'v [Json<'v>], DetectError> {
        match field(m, key) {
            None | Some(Json::Null) => Ok(&[]),
            Some(Json::Array(a)) => Ok(a),
            Some(other) => Err(self.malformed(at(), "an array", other)),
        }
    }

    fn opt_obj<'v>(
        &self,
        m: &'v Object<'v>,
        key: &str,
        at: impl FnOnce() -> String,
    ) -> Result<Option<&'v Object<'v>>, DetectError> {
        match field(m, key) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::Object(o)) => Ok(Some(o)),
            Some(other) => Err(self.malformed(at(), "a mapping", other)),
        }
    }

    fn opt_str<'v>(
        &self,
        m: &'v Object<'v>,
        key: &str,
        at: impl FnOnce() -> String,
    ) -> Result<Option<&'v str>, DetectError> {
        match field(m, key) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::Str(s)) => Ok(Some(s)),
            Some(other) => Err(self.malformed(at(), "a string", other)),
        }
    }

    fn opt_bool(
        &self,
        m: &Object<'_>,
        key: &str,
        at: impl FnOnce() -> String,
    ) -> Result<bool, DetectError> {
        match field(m, key) {
            None | Some(Json::Null) => Ok(false),
            Some(Json::Bool(b)) => Ok(*b),
            Some(other) => Err(self.malformed(at(), "a boolean", other)),
        }
    }

    fn pod_spec<'v>(
        &self,
        object: &'v Json<'v>,
        path: &[&str],
    ) -> Result<&'v Object<'v>, DetectError> {
        let mut cur = object;
        for (i, seg) in path.iter().enumerate() {
            let here = || path[..=i].join(".");
            let m = cur.as_object().ok_or_else(|| DetectError::Malformed {
                kind: self.object.kind.clone(),
                name: self.object.name.clone(),
                path: if i == 0 {
                    "(object)".into()
                } else {
                    path[..i].join(".")
                },
                expected: "a mapping",
                found: cur.type_name(),
            })?;
            cur = match field(m, seg) {
                Some(v) if !v.is_null() => v,
                _ => {
                    return Err(DetectError::NoPodTemplate {
                        kind: self.object.kind.clone(),
                        name: self.object.name.clone(),
                        path: here(),
                    });
                }
            };
        }
        cur.as_object().ok_or_else(|| DetectError::Malformed {
            kind: self.object.kind.clone(),
            name: self.object.name.clone(),
            path: path.join("."),
            expected: "a mapping",
            found: cur.type_name(),
        })
    }

    // ---- findings -------------------------------------------------------------------------

    fn fix(&self) -> String {
        format!(
            "give ServiceAccount '{}' an IAM role with an IAMRoleBinding instead",
            self.service_account
        )
    }

    fn push(
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
    fn lookup(
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
                if self.unreadable.insert((kind, name.to_string())) {
                    self.warnings.push(Warning {
                        container: container.map(str::to_string),
                        path: format!("{}.{}", self.prefix, path()),
                        message: format!(
                            "optional {} {}/{} is not read (lookups are off): nothing is set from it if it does not exist; if it does, what it holds is not judged",
                            kind.as_str(),
                            self.namespace,
                            name
                        ),
                    });
                }
                Known::Absent
            }
            Lookup::Disabled => Known::Unknown,
            Lookup::Missing if optional => {
                // The kubelet sets nothing from an optional reference to an object that does
                // not exist. Offline, the object may exist in the cluster all the same.
                if self.refs.partial() && self.unreadable.insert((kind, name.to_string())) {
                    self.warnings.push(Warning {
                        container: container.map(str::to_string),
                        path: format!("{}.{}", self.prefix, path()),
                        message: format!(
                            "optional {} {}/{} is not in the input: nothing is set from it if it does not exist in the cluster; if it does, the webhook judges what it holds",
                            kind.as_str(),
                            self.namespace,
                            name
                        ),
                    });
                }
                Known::Absent
            }
            Lookup::Missing => {
                if self.unreadable.insert((kind, name.to_string())) {
                    self.warnings.push(Warning {
                        container: container.map(str::to_string),
                        path: format!("{}.{}", self.prefix, path()),
                        message: format!(
                            "{} {}/{} could not be read (it does not exist yet, or is not in the input); references to it are judged by env var names only",
                            kind.as_str(),
                            self.namespace,
                            name
                        ),
                    });
                }
                Known::Unknown
            }
        }
    }

    // ---- pod-level parsing -----------------------------------------------------------------

    /// The containers of a pod spec: its three lists, or, for a custom resource, the fields
    /// its entry names (`templates[].container`, `steps[]`: `[]` steps over an array's items;
    /// a trailing `[]` is a list of containers, otherwise the field is one container).
    fn containers<'v, 'p>(
        &self,
        spec: &'v Object<'v>,
        paths: Option<&'p [String]>,
    ) -> Result<Vec<(CPath<'p>, &'v Json<'v>)>, DetectError> {
        let mut out = Vec::new();
        let Some(paths) = paths else {
            for ckind in CONTAINER_KINDS {
                for (ci, c) in self
                    .arr(spec, ckind, || ckind.to_string())?
                    .iter()
                    .enumerate()
                {
                    let base = Cow::Borrowed("");
                    out.push((
                        CPath {
                            base,
                            field: ckind,
                            index: Some(ci),
                        },
                        c,
                    ));
                }
            }
            return Ok(out);
        };
        for path in paths {
            let segs: Vec<&str> = path.split('.').collect();
            self.walk_containers(spec, &segs, String::new(), &mut out)?;
        }
        Ok(out)
    }

    fn walk_containers<'v, 'p>(
        &self,
        at: &'v Object<'v>,
        segs: &[&'p str],
        base: String,
        out: &mut Vec<(CPath<'p>, &'v Json<'v>)>,
    ) -> Result<(), DetectError> {
        let Some((seg, rest)) = segs.split_first() else {
            return Ok(());
        };
        let (name, each) = match seg.strip_suffix("[]") {
            Some(n) => (n, true),
            None => (*seg, false),
        };
        let Some(value) = field(at, name).filter(|v| !v.is_null()) else {
            return Ok(());
        };
        if rest.is_empty() {
            if each {
                let list = self.arr(at, name, || format!("{base}{name}"))?;
                for (i, c) in list.iter().enumerate() {
                    let cp = CPath {
                        base: Cow::Owned(base.clone()),
                        field: name,
                        index: Some(i),
                    };
                    out.push((cp, c));
                }
            } else {
                out.push((
                    CPath {
                        base: Cow::Owned(base),
                        field: name,
                        index: None,
                    },
                    value,
                ));
            }
            return Ok(());
        }
        if each {
            let list = self.arr(at, name, || format!("{base}{name}"))?;
            for (i, item) in list.iter().enumerate() {
                let here = format!("{base}{name}[{i}]");
                let o = self.obj(item, || here.clone())?;
                self.walk_containers(o, rest, format!("{here}."), out)?;
            }
        } else {
            let o = self.obj(value, || format!("{base}{name}"))?;
            self.walk_containers(o, rest, format!("{base}{name}."), out)?;
        }
        Ok(())
    }

    fn volumes<'v>(&self, spec: &'v Object<'v>) -> Result<Vec<Volume<'v>>, DetectError> {
        let list = self.arr(spec, "volumes", || "volumes".into())?;
        let mut out = Vec::with_capacity(list.len());
        for (i, v) in list.iter().enumerate() {
            let v = self.obj(v, || format!("volumes[{i}]"))?;
            let name = self
                .opt_str(v, "name", || format!("volumes[{i}].name"))?
                .unwrap_or("");
            let mut refs = Vec::new();
            let mut projected_fields = Vec::new();
            if let Some(s) = self.opt_obj(v, "secret", || format!("volumes[{i}].secret"))? {
                let at = || format!("volumes[{i}].secret");
                refs.push(self.vol_ref(s, RefKind::Secret, "secretName", None, at)?);
            }
            if let Some(s) = self.opt_obj(v, "configMap", || format!("volumes[{i}].configMap"))? {
                let at = || format!("volumes[{i}].configMap");
                refs.push(self.vol_ref(s, RefKind::ConfigMap, "name", None, at)?);
            }
            if let Some(p) = self.opt_obj(v, "projected", || format!("volumes[{i}].projected"))? {
                let sources =
                    self.arr(p, "sources", || format!("volumes[{i}].projected.sources"))?;
                for (j, src) in sources.iter().enumerate() {
                    let at = || format!("volumes[{i}].projected.sources[{j}]");
                    let src = self.obj(src, at)?;
                    if let Some(s) = self.opt_obj(src, "secret", || format!("{}.secret", at()))? {
                        refs.push(self.vol_ref(s, RefKind::Secret, "name", Some(j), || {
                            format!("{}.secret", at())
                        })?);
                    }
                    if let Some(s) =
                        self.opt_obj(src, "configMap", || format!("{}.configMap", at()))?
                    {
                        refs.push(self.vol_ref(s, RefKind::ConfigMap, "name", Some(j), || {
                            format!("{}.configMap", at())
                        })?);
                    }
                    if let Some(d) =
                        self.opt_obj(src, "downwardAPI", || format!("{}.downwardAPI", at()))?
                    {
                        projected_fields.push((j, d));
                    }
                }
            }
            let mut fields = Vec::new();
            for (j, d) in projected_fields {
                let at = || format!("volumes[{i}].projected.sources[{j}].downwardAPI");
                self.downward_items(d, at, &mut fields)?;
            }
            if let Some(d) =
                self.opt_obj(v, "downwardAPI", || format!("volumes[{i}].downwardAPI"))?
            {
                self.downward_items(d, || format!("volumes[{i}].downwardAPI"), &mut fields)?;
            }
            let opaque = if refs.is_empty()
                && fields.is_empty()
                && !["secret", "configMap", "projected", "downwardAPI"]
                    .iter()
                    .any(|k| field(v, k).is_some())
            {
                v.iter().map(|(k, _)| *k).find(|k| *k != "name")
            } else {
                None
            };
            out.push(Volume {
                index: i,
                name,
                refs,
                fields,
                opaque,
            });
        }
        Ok(out)
    }

    fn vol_ref<'v>(
        &self,
        s: &'v Object<'v>,
        kind: RefKind,
        name_field: &str,
        source: Option<usize>,
        at: impl Fn() -> String,
    ) -> Result<VolRef<'v>, DetectError> {
        let name = self
            .opt_str(s, name_field, || format!("{}.{name_field}", at()))?
            .unwrap_or("");
        let optional = self.opt_bool(s, "optional", || format!("{}.optional", at()))?;
        let items = match field(s, "items") {
            None | Some(Json::Null) => None,
            Some(_) => {
                let list = self.arr(s, "items", || format!("{}.items", at()))?;
                let mut keys = Vec::with_capacity(list.len());
                for (k, item) in list.iter().enumerate() {
                    let item = self.obj(item, || format!("{}.items[{k}]", at()))?;
                    if let Some(key) =
                        self.opt_str(item, "key", || format!("{}.items[{k}].key", at()))?
                    {
                        let path = self
                            .opt_str(item, "path", || format!("{}.items[{k}].path", at()))?
                            .unwrap_or(key);
                        keys.push((key, path));
                    }
                }
                Some(keys)
            }
        };
        Ok(VolRef {
            kind,
            name,
            items,
            optional,
            source,
        })
    }

    /// The items of a `downwardAPI` volume or projected source: (field path, file path,
    /// `fieldRef.fieldPath`).
    fn downward_items<'v>(
        &self,
        d: &'v Object<'v>,
        at: impl Fn() -> String,
        out: &mut Vec<(String, &'v str, &'v str)>,
    ) -> Result<(), DetectError> {
        let items = self.arr(d, "items", || format!("{}.items", at()))?;
        for (k, item) in items.iter().enumerate() {
            let here = || format!("{}.items[{k}]", at());
            let item = self.obj(item, here)?;
            let path = self
                .opt_str(item, "path", || format!("{}.path", here()))?
                .unwrap_or("");
            if let Some(f) = self.opt_obj(item, "fieldRef", || format!("{}.fieldRef", here()))?
                && let Some(fp) =
                    self.opt_str(f, "fieldPath", || format!("{}.fieldRef.fieldPath", here()))?
            {
                out.push((here(), path, fp));
            }
        }
        Ok(())
    }

    fn mounts<'v>(&self, c: &'v Object<'v>, cp: &CPath<'_>) -> Result<Vec<Mount<'v>>, DetectError> {
        let list = self.arr(c, "volumeMounts", || format!("{cp}.volumeMounts"))?;
        let mut out = Vec::with_capacity(list.len());
        for (i, m) in list.iter().enumerate() {
            let at = || format!("{cp}.volumeMounts[{i}]");
            let m = self.obj(m, at)?;
            let volume = self
                .opt_str(m, "name", || format!("{}.name", at()))?
                .unwrap_or("");
            let path = self
                .opt_str(m, "mountPath", || format!("{}.mountPath", at()))?
                .unwrap_or("");
            let sub_path = match self.opt_str(m, "subPath", || format!("{}.subPath", at()))? {
                Some(p) if !p.is_empty() => p,
                _ => self
                    .opt_str(m, "subPathExpr", || format!("{}.subPathExpr", at()))?
                    .unwrap_or(""),
            };
            out.push(Mount {
                volume,
                path,
                sub_path,
            });
        }
        Ok(out)
    }

    // ---- containers ------------------------------------------------------------------------

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
        // Files the SDKs read static keys from: (env index, variable, path as written).
        let mut aws_files: Vec<(usize, &str, String)> = Vec::new();

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

        for (ei, &(var, value, value_from)) in entries.iter().enumerate() {
            let at = || format!("{cp}.env[{ei}]");
            // The value the process gets, when expansion changed it.
            let expanded = exp.env.get(ei).and_then(Option::as_deref);
            let runtime = expanded.or(value);

            if (var.eq_ignore_ascii_case(SHARED_CREDENTIALS_FILE)
                || var.eq_ignore_ascii_case(CONFIG_FILE))
                && let Some(v) = runtime.filter(|v| !v.is_empty())
            {
                aws_files.push((ei, var, v.to_string()));
            }

            if scan::is_credential_name(var) {
                let source = match (runtime, value_from) {
                    (_, Some(vf)) => self.credential_source(vf, cont, at)?,
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

        // `command` and `args`, expanded with the container's final env; probe exec commands,
        // expanded with the static env values only; lifecycle hooks' exec commands, which the
        // kubelet runs as written.
        let mut lists: Vec<(Cow<'_, str>, &[&str], Env)> = vec![
            (Cow::Borrowed("command"), &command, Env::Runtime),
            (Cow::Borrowed("args"), &args, Env::Runtime),
        ];
        for (field, env, list) in &handlers {
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

        // A credentials or config file the SDKs read keys from: the one
        // AWS_SHARED_CREDENTIALS_FILE or AWS_CONFIG_FILE names, compared as the process opens
        // it, or the SDKs' default location (~/.aws/credentials, ~/.aws/config) wherever a mount
        // puts it: a directory mounted at .../.aws, a file mounted there with subPath, or an
        // `items[].path` of .aws/credentials under a mount at HOME.
        for (ei, var, path) in aws_files {
            let resolved = expand::resolve_path(&path, working_dir);
            let Some((mi, m)) = mount_holding(&resolved, mounts) else {
                continue;
            };
            let Some(vol) = volumes.iter().find(|v| v.name == m.volume) else {
                continue;
            };
            let shown = if resolved == path {
                String::new()
            } else {
                format!(" (resolved to {resolved})")
            };
            let what = format!("{var}={path}{shown} points into volume '{}'", m.volume);
            if let Some(kind) = vol.opaque {
                self.opaque_warning(cont, format!("{cp}.volumeMounts[{mi}]"), &what, kind);
                continue;
            }
            let rel = volume_relative(&resolved, m);
            let Some(keys) = volume_file(vol, &rel) else {
                continue;
            };
            let at = format!("{cp}.env[{ei}]");
            // A config file in a ConfigMap is usually role profiles: judged by content.
            let configmaps_count = var.eq_ignore_ascii_case(SHARED_CREDENTIALS_FILE);
            self.credentials_file(vol, &keys, cont, at, what, configmaps_count);
        }
        let mut home: Option<String> = None;
        for (mi, m) in mounts.iter().enumerate() {
            let Some(vol) = volumes.iter().find(|v| v.name == m.volume) else {
                continue;
            };
            if m.path.is_empty() {
                continue;
            }
            let p = expand::resolve_path(m.path, "/");
            if let Some(kind) = vol.opaque {
                // Content unknowable: a warning when the mount is the SDKs' directory or file,
                // or holds ~/.aws of the container's HOME.
                let home = home.get_or_insert_with(|| container_home(&entries, &exp.env));
                let home_aws = format!("{}/.aws", home.trim_end_matches('/'));
                if is_default_location(&p) || path_within(&home_aws, &p) {
                    let what = format!(
                        "volume '{}' is mounted at {}, where the AWS SDKs read ~/.aws/credentials and ~/.aws/config (HOME={home}{})",
                        m.volume,
                        m.path,
                        if home_is_assumed(&entries) {
                            ", assumed: the image's user is not visible"
                        } else {
                            ""
                        }
                    );
                    self.opaque_warning(cont, format!("{cp}.volumeMounts[{mi}]"), &what, kind);
                }
                continue;
            }
            let mut keys = FileKeys::Some(Vec::new());
            for file in default_files(&p, m, vol) {
                if let Some(found) = volume_file(vol, &volume_relative(&file, m)) {
                    keys.add(found);
                }
            }
            if keys.is_empty() {
                continue;
            }
            let at = format!("{cp}.volumeMounts[{mi}]");
            let what = format!(
                "volume '{}' is mounted at {}{}, where the AWS SDKs read a shared credentials file",
                m.volume,
                m.path,
                if m.sub_path.is_empty() {
                    String::new()
                } else {
                    format!(" (subPath {})", m.sub_path)
                }
            );
            self.credentials_file(vol, &keys, cont, at, what, false);
        }
        Ok(())
    }

    /// A volume whose content hatrack cannot know where the SDKs read credentials: a warning
    /// saying what is known, not a denial (see the rule table in docs/webhook.md).
    fn opaque_warning(&mut self, cont: Option<&str>, at: String, what: &str, kind: &str) {
        self.warnings.push(Warning {
            container: cont.map(str::to_string),
            path: format!("{}.{at}", self.prefix),
            message: format!(
                "{what}; it is a {kind} volume, whose content hatrack cannot know: if it will hold static keys, {}",
                self.fix()
            ),
        });
    }

    /// A list of strings (`command`, `args`); `at` is its path.
    fn strings<'v>(
        &self,
        c: &'v Object<'v>,
        field: &str,
        at: impl Fn() -> String,
    ) -> Result<Vec<&'v str>, DetectError> {
        let list = self.arr(c, field, &at)?;
        list.iter()
            .enumerate()
            .map(|(ai, a)| {
                a.as_str()
                    .ok_or_else(|| self.malformed(format!("{}[{ai}]", at()), "a string", a))
            })
            .collect()
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

    fn literal(
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

    /// Where a credential-named env var gets a value from (for messages), or `None` when it
    /// gets none: an empty value of a readable Secret or ConfigMap, or an optional reference
    /// to a key or object that does not exist (the kubelet then does not set the variable).
    /// Anything else the name says is a credential, whatever the value.
    fn credential_source(
        &mut self,
        vf: &Object<'_>,
        cont: Option<&str>,
        at: impl Fn() -> String + Copy,
    ) -> Result<Option<String>, DetectError> {
        let Some(KeyRef {
            kind,
            name,
            key,
            optional,
        }) = self.key_ref_of(vf, at)?
        else {
            return Ok(Some("valueFrom".into()));
        };
        let source = format!("{} '{name}' key '{key}'", kind.as_str());
        Ok(match self.lookup(kind, name, optional, cont, at) {
            Known::Absent => None,
            Known::Unknown => Some(source),
            Known::Found(facts) => match facts.key(key) {
                Some(k) if k.class == KeyClass::Empty => None,
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
        let Some(KeyRef {
            kind,
            name,
            key,
            optional,
        }) = self.key_ref_of(vf, at)?
        else {
            return Ok(());
        };
        if let Known::Found(facts) = self.lookup(kind, name, optional, cont, at)
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

    /// A shared credentials file in a Secret- or ConfigMap-backed volume is static keys unless
    /// every object behind the file can be read and holds no AWS key in the keys that make the
    /// file (`keys`).
    fn credentials_file(
        &mut self,
        vol: &Volume<'_>,
        keys: &FileKeys<'_>,
        cont: Option<&str>,
        at: String,
        what: String,
        configmaps_count: bool,
    ) {
        let mut unread = Vec::new();
        let mut with_keys = Vec::new();
        for (ri, r) in vol.refs.iter().enumerate() {
            if r.kind == RefKind::ConfigMap && !configmaps_count {
                continue;
            }
            let wanted: Vec<&str> = match keys {
                FileKeys::All => Vec::new(),
                FileKeys::Some(list) => list
                    .iter()
                    .filter(|(i, _)| *i == ri)
                    .map(|(_, k)| k.as_ref())
                    .collect(),
            };
            if matches!(keys, FileKeys::Some(_)) && wanted.is_empty() {
                continue;
            }
            let vpath = volume_path(vol, r);
            match self.lookup(r.kind, r.name, r.optional, cont, || vpath) {
                Known::Absent => {}
                Known::Unknown => unread.push(format!("{} '{}'", r.kind.as_str(), r.name)),
                Known::Found(facts) => {
                    let holds = selected_keys(&facts, r)
                        .filter(|k| wanted.is_empty() || wanted.contains(&&*k.name))
                        .any(|k| k.class.is_credential());
                    if holds {
                        with_keys.push(format!("{} '{}'", r.kind.as_str(), r.name));
                    }
                }
            }
        }
        let why = if !with_keys.is_empty() {
            format!("{}, which holds AWS keys", with_keys.join(", "))
        } else if !unread.is_empty() {
            format!(
                "{}, which hatrack cannot read (a credentials file is static keys unless shown otherwise)",
                unread.join(", ")
            )
        } else {
            return;
        };
        self.push(
            RuleId::SharedCredentialsFile,
            cont,
            at,
            format!("{what} backed by {why}"),
            format!("credentials file volume {}", vol.name),
        );
    }

    /// Files of a downward API volume (or projected source) made from annotations or labels:
    /// what they hold reaches every container that mounts the volume.
    fn downward(&mut self, vol: &Volume<'_>, meta: Option<&Object<'_>>) {
        for (at, path, fp) in &vol.fields {
            for (name, value) in field_values(meta, fp) {
                if let Some(hit) = scan::find_credentials(value) {
                    let place =
                        format!("downwardAPI file '{path}' of volume '{}' ({fp})", vol.name);
                    self.literal(hit, None, at.clone(), &place, "downwardAPI", name);
                }
            }
        }
    }

    /// Secret, ConfigMap and projected volumes: the mounted keys must hold no AWS key.
    fn volume(&mut self, vol: &Volume<'_>, users: &[&str]) {
        for r in &vol.refs {
            let vpath = volume_path(vol, r);
            let vp = vpath.clone();
            let Known::Found(facts) = self.lookup(r.kind, r.name, r.optional, None, || vp) else {
                continue;
            };
            let keys: Vec<&str> = selected_keys(&facts, r)
                .filter(|k| k.class.is_credential())
                .map(|k| &*k.name)
                .collect();
            if keys.is_empty() {
                continue;
            }
            let who = match users {
                [] => "not mounted by any container".to_string(),
                [one] => format!("mounted by container '{one}'"),
                many => format!("mounted by containers '{}'", many.join("', '")),
            };
            self.push(
                ref_rule(r.kind),
                None,
                vpath,
                format!(
                    "volume '{}' ({who}) mounts {} '{}', whose {} AWS key material",
                    vol.name,
                    r.kind.as_str(),
                    r.name,
                    keys_hold(&keys)
                ),
                format!("volume {} {} {}", vol.name, r.kind.as_str(), r.name),
            );
        }
    }
}

/// `key 'a' holds` / `keys 'a', 'b' hold`.
fn keys_hold<S: AsRef<str>>(keys: &[S]) -> String {
    let quoted: Vec<String> = keys.iter().map(|k| format!("'{}'", k.as_ref())).collect();
    if quoted.len() == 1 {
        format!("key {} holds", quoted[0])
    } else {
        format!("keys {} hold", quoted.join(", "))
    }
}

fn ref_rule(kind: RefKind) -> RuleId {
    match kind {
        RefKind::Secret => RuleId::CredentialsInReferencedSecret,
        RefKind::ConfigMap => RuleId::CredentialsInReferencedConfigMap,
    }
}

fn volume_path(vol: &Volume<'_>, r: &VolRef<'_>) -> String {
    match r.source {
        Some(j) => format!("volumes[{}].projected.sources[{j}]", vol.index),
        None => format!("volumes[{}]", vol.index),
    }
}

fn selected_keys<'f>(facts: &'f ObjectFacts, r: &VolRef<'_>) -> impl Iterator<Item = &'f KeyFact> {
    let items = r.items.clone();
    facts.keys.iter().filter(move |k| {
        items
            .as_ref()
            .is_none_or(|i| i.iter().any(|(key, _)| *key == &*k.name))
    })
}

/// The mount whose path holds `file` (the deepest one, as the kernel resolves it).
fn mount_holding<'m>(file: &str, mounts: &'m [Mount<'m>]) -> Option<(usize, &'m Mount<'m>)> {
    mounts
        .iter()
        .enumerate()
        .filter(|(_, m)| path_within(file, m.path))
        .max_by_key(|(_, m)| m.path.len())
}

/// Which keys of a volume's Secrets and ConfigMaps make up one file.
enum FileKeys<'v> {
    /// Every mounted key (the file location is the mount itself).
    All,
    /// (index in the volume's refs, key).
    Some(Vec<(usize, Cow<'v, str>)>),
}

impl<'v> FileKeys<'v> {
    fn add(&mut self, other: FileKeys<'v>) {
        match (&mut *self, other) {
            (FileKeys::All, _) => {}
            (_, FileKeys::All) => *self = FileKeys::All,
            (FileKeys::Some(a), FileKeys::Some(b)) => a.extend(b),
        }
    }

    fn is_empty(&self) -> bool {
        matches!(self, FileKeys::Some(v) if v.is_empty())
    }
}

/// `file` (resolved, inside mount `m`) as a path inside the mount's volume: the part below
/// the mount path, under the mount's `subPath`. Empty for the volume's root.
fn volume_relative(file: &str, m: &Mount<'_>) -> String {
    let dir = expand::resolve_path(m.path, "/");
    let rest = file.get(dir.len()..).unwrap_or("").trim_start_matches('/');
    let sub = clean_relative(m.sub_path);
    match (sub.is_empty(), rest.is_empty()) {
        (true, _) => rest.to_string(),
        (false, true) => sub,
        (false, false) => format!("{sub}/{rest}"),
    }
}

/// A relative path in a volume (`items[].path`, `subPath`) in clean form, without a leading `/`.
fn clean_relative(path: &str) -> String {
    if path.is_empty() {
        return String::new();
    }
    expand::resolve_path(path, "/")
        .trim_start_matches('/')
        .to_string()
}

/// The keys of `vol`'s Secrets and ConfigMaps that are the file at `rel` in the volume, or
/// `None` when no key is there. Without `items`, every key is a file named after it.
fn volume_file<'v>(vol: &Volume<'v>, rel: &str) -> Option<FileKeys<'v>> {
    if rel.is_empty() {
        return Some(FileKeys::All);
    }
    let mut keys = Vec::new();
    for (ri, r) in vol.refs.iter().enumerate() {
        match &r.items {
            Some(items) => {
                for (key, path) in items {
                    if clean_relative(path) == rel {
                        keys.push((ri, Cow::Borrowed(*key)));
                    }
                }
            }
            None => {
                if !rel.contains('/') {
                    keys.push((ri, Cow::Owned(rel.to_string())));
                }
            }
        }
    }
    (!keys.is_empty()).then_some(FileKeys::Some(keys))
}

/// Whether `file` (resolved) is `dir` (a mount path) or inside it.
fn path_within(file: &str, dir: &str) -> bool {
    if dir.is_empty() {
        return false;
    }
    let dir = expand::resolve_path(dir, "/");
    if dir == "/" {
        return true;
    }
    file == dir || (file.starts_with(&*dir) && file.as_bytes().get(dir.len()) == Some(&b'/'))
}

/// Whether a resolved path is the SDKs' default directory or one of its files (for some HOME).
fn is_default_location(p: &str) -> bool {
    p.ends_with("/.aws") || p.ends_with("/.aws/credentials") || p.ends_with("/.aws/config")
}

/// The files at the SDKs' default locations (`…/.aws/credentials`, `…/.aws/config`, whatever
/// HOME is) that mount `m` (resolved path `p`) of `vol` exposes.
fn default_files(p: &str, m: &Mount<'_>, vol: &Volume<'_>) -> Vec<String> {
    let mut out = Vec::new();
    if p.ends_with("/.aws") {
        out.push(format!("{p}/credentials"));
        out.push(format!("{p}/config"));
    } else if is_default_location(p) {
        out.push(p.to_string());
    }
    // `items[].path` such as `.aws/credentials` under a mount at HOME.
    let sub = clean_relative(m.sub_path);
    for r in &vol.refs {
        for (_, path) in r.items.iter().flatten() {
            if !path.contains(".aws") && !p.contains(".aws") {
                continue;
            }
            let path = clean_relative(path);
            let rest = if sub.is_empty() {
                Some(path.as_str())
            } else {
                path.strip_prefix(sub.as_str())
                    .and_then(|r| r.strip_prefix('/'))
            };
            if let Some(rest) = rest {
                let file = format!("{}/{rest}", p.trim_end_matches('/'));
                if (file.ends_with("/.aws/credentials") || file.ends_with("/.aws/config"))
                    && !out.contains(&file)
                {
                    out.push(file);
                }
            }
        }
    }
    out
}

/// The container's HOME: its last literal `HOME` env value (expanded), or `/root` (assumed:
/// the image's user and its passwd entry are not visible; root is the default user).
fn container_home(
    entries: &[(&str, Option<&str>, Option<&Object<'_>>)],
    expanded: &[Option<String>],
) -> String {
    for (i, (var, value, vf)) in entries.iter().enumerate().rev() {
        if *var != "HOME" || vf.is_some() {
            continue;
        }
        let v = expanded
            .get(i)
            .and_then(Option::as_deref)
            .or(*value)
            .unwrap_or("");
        if !v.is_empty() {
            return expand::resolve_path(v, "/").into_owned();
        }
    }
    "/root".to_string()
}

fn home_is_assumed(entries: &[(&str, Option<&str>, Option<&Object<'_>>)]) -> bool {
    !entries.iter().any(|(var, value, vf)| {
        *var == "HOME" && vf.is_none() && value.is_some_and(|v| !v.is_empty())
    })
}

/// The pod's metadata (a Pod's own, or its template's): the sibling of the pod spec.
fn pod_metadata<'v>(object: &'v Json<'v>, spec_path: &[&str]) -> Option<&'v Object<'v>> {
    let mut cur = object;
    for seg in &spec_path[..spec_path.len().saturating_sub(1)] {
        cur = cur.get(seg)?;
    }
    cur.get("metadata")?.as_object()
}

/// What a downward API `fieldPath` gives from the pod's metadata: (name, value) pairs of an
/// annotation or label, or of all of them.
fn field_values<'v>(meta: Option<&'v Object<'v>>, field_path: &str) -> Vec<(&'v str, &'v str)> {
    let Some(meta) = meta else {
        return Vec::new();
    };
    let (map, key) = match field_path.split_once('[') {
        Some((map, rest)) => {
            let key = rest
                .strip_suffix(']')
                .map(|k| k.trim_matches(|c| c == '\'' || c == '"'));
            (map, key)
        }
        None => (field_path, None),
    };
    let map = match map {
        "metadata.annotations" => "annotations",
        "metadata.labels" => "labels",
        _ => return Vec::new(),
    };
    let Some(Json::Object(entries)) = field(meta, map) else {
        return Vec::new();
    };
    entries
        .iter()
        .filter(|(k, _)| key.is_none_or(|key| key == *k))
        .filter_map(|(k, v)| v.as_str().map(|v| (*k, v)))
        .collect()
}

/// An exec command of a lifecycle hook or probe: its field path, the env it is expanded with,
/// the command.
type ExecHandler<'v> = (String, Env, Vec<&'v str>);

/// Which env a list of strings is expanded with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Env {
    /// The container's final env (`command`, `args`).
    Runtime,
    /// Only the literal values as written, `valueFrom` vars as empty (probe exec commands).
    Static,
    /// Not expanded (lifecycle hooks' exec commands).
    None,
}

/// The `$(VAR)` expansion of one container's env, as the kubelet builds it: each literal value
/// expanded with the vars defined before it; vars from `valueFrom` and `envFrom` are unknown
/// and their references stay as written.
#[derive(Default)]
struct Expansion {
    /// Per env entry, the expanded value when expansion changed it.
    env: Vec<Option<String>>,
    /// The final env: a known value, or `None` for a var whose value is not known.
    runtime: HashMap<String, Option<String>>,
    /// The literal values as written (`valueFrom` vars empty), for probes.
    statics: HashMap<String, String>,
    budget: usize,
    too_long: bool,
}

impl Expansion {
    fn run(&mut self, entries: &[(&str, Option<&str>, Option<&Object<'_>>)]) {
        self.budget = expand::CONTAINER_BUDGET;
        for (var, value, value_from) in entries {
            self.statics
                .insert(var.to_string(), value.unwrap_or("").to_string());
            let known = match (value, value_from) {
                (_, Some(_)) => None,
                (v, None) => {
                    let v = v.unwrap_or("");
                    let runtime = &self.runtime;
                    let lookup = |n: &str| runtime.get(n).and_then(|v| v.as_deref());
                    match expand::expand(v, &lookup, &mut self.budget) {
                        Ok(Cow::Borrowed(_)) => {
                            self.env.push(None);
                            Some(v.to_string())
                        }
                        Ok(Cow::Owned(x)) => {
                            self.env.push(Some(x.clone()));
                            Some(x)
                        }
                        Err(expand::TooLong) => {
                            self.too_long = true;
                            self.env.push(None);
                            Some(v.to_string())
                        }
                    }
                }
            };
            if value_from.is_some() {
                self.env.push(None);
            }
            self.runtime.insert(var.to_string(), known);
        }
    }

    /// `text` expanded with `env`, when that changes it.
    fn expand(&mut self, text: &str, env: Env) -> Option<String> {
        if self.too_long {
            return None;
        }
        let result = match env {
            Env::None => return None,
            Env::Runtime => {
                let runtime = &self.runtime;
                let lookup = |n: &str| runtime.get(n).and_then(|v| v.as_deref());
                expand::expand(text, &lookup, &mut self.budget)
            }
            Env::Static => {
                let statics = &self.statics;
                let lookup = |n: &str| statics.get(n).map(String::as_str);
                expand::expand(text, &lookup, &mut self.budget)
            }
        };
        match result {
            Ok(Cow::Owned(x)) => Some(x),
            Ok(Cow::Borrowed(_)) => None,
            Err(expand::TooLong) => {
                self.too_long = true;
                None
            }
        }
    }
}

/// One `valueFrom.secretKeyRef` or `configMapKeyRef`.
struct KeyRef<'v> {
    kind: RefKind,
    name: &'v str,
    key: &'v str,
    optional: bool,
}
