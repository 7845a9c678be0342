//! Reading a pod spec: where its containers are (the built-in lists, or a custom resource's
//! fields), its volumes and what backs them, a container's mounts, the pod's metadata.

use std::borrow::Cow;

use super::super::DetectError;
use super::super::facts::RefKind;
use super::super::json::{Json, Object, field};
use super::Cx;

const CONTAINER_KINDS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];

/// Where a container is, below the pod spec: `containers[0]`, `templates[2].container`.
pub(super) struct CPath<'a> {
    pub(super) base: Cow<'a, str>,
    pub(super) field: &'a str,
    pub(super) index: Option<usize>,
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
pub(super) struct VolRef<'a> {
    pub(super) kind: RefKind,
    pub(super) name: &'a str,
    /// Keys projected by `items`, with the file path each gets (all keys, each under its own
    /// name, when `None`).
    pub(super) items: Option<Vec<(&'a str, &'a str)>>,
    pub(super) optional: bool,
    /// Index in `projected.sources`.
    pub(super) source: Option<usize>,
}

pub(super) struct Volume<'a> {
    pub(super) index: usize,
    pub(super) name: &'a str,
    pub(super) refs: Vec<VolRef<'a>>,
    /// Files from the pod's own fields (`downwardAPI` items): (field path of the item, file
    /// path in the volume, `fieldRef.fieldPath`).
    pub(super) fields: Vec<(String, &'a str, &'a str)>,
    /// The volume's source kind when hatrack cannot know what it holds (`emptyDir`,
    /// `hostPath`, `persistentVolumeClaim`, `csi`, …).
    pub(super) opaque: Option<&'a str>,
}

pub(super) struct Mount<'a> {
    pub(super) volume: &'a str,
    pub(super) path: &'a str,
    /// `subPath` (or `subPathExpr`, unexpanded): the part of the volume mounted at `path`.
    pub(super) sub_path: &'a str,
}

impl Cx<'_> {
    /// The containers of a pod spec: its three lists, or, for a custom resource, the fields
    /// its entry names (`templates[].container`, `steps[]`: `[]` steps over an array's items;
    /// a trailing `[]` is a list of containers, otherwise the field is one container).
    pub(super) fn containers<'v, 'p>(
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

    pub(super) fn volumes<'v>(&self, spec: &'v Object<'v>) -> Result<Vec<Volume<'v>>, DetectError> {
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

    pub(super) fn mounts<'v>(
        &self,
        c: &'v Object<'v>,
        cp: &CPath<'_>,
    ) -> Result<Vec<Mount<'v>>, DetectError> {
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
}

/// The field path of a volume's reference to a Secret or ConfigMap.
pub(super) fn volume_path(vol: &Volume<'_>, r: &VolRef<'_>) -> String {
    match r.source {
        Some(j) => format!("volumes[{}].projected.sources[{j}]", vol.index),
        None => format!("volumes[{}]", vol.index),
    }
}

/// The pod's metadata (a Pod's own, or its template's): the sibling of the pod spec.
pub(super) fn pod_metadata<'v>(object: &'v Json<'v>, spec_path: &[&str]) -> Option<&'v Object<'v>> {
    let mut cur = object;
    for seg in &spec_path[..spec_path.len().saturating_sub(1)] {
        cur = cur.get(seg)?;
    }
    cur.get("metadata")?.as_object()
}

/// What a downward API `fieldPath` gives from the pod's metadata: (name, value) pairs of an
/// annotation or label, or of all of them.
pub(super) fn field_values<'v>(
    meta: Option<&'v Object<'v>>,
    field_path: &str,
) -> Vec<(&'v str, &'v str)> {
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
