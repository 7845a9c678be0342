//! Shared credentials and config files: the file `AWS_SHARED_CREDENTIALS_FILE` or
//! `AWS_CONFIG_FILE` names, compared as the process opens it, or the SDKs' default location
//! (`~/.aws/credentials`, `~/.aws/config`) wherever a mount puts it, and what backs it.

use std::borrow::Cow;

use super::super::expand;
use super::super::facts::RefKind;
use super::super::{RuleId, Warning};
use super::env::{ContainerEnv, EnvEntry, NamedFile, names_shared_credentials_file};
use super::pod::{CPath, Mount, Volume, volume_path};
use super::volumes::selected_keys;
use super::{Cx, Known};

impl Cx<'_> {
    /// The files the env names (`named`): judged by what backs them where a mount puts them.
    pub(super) fn named_credentials_files(
        &mut self,
        named: Vec<NamedFile<'_>>,
        ce: &ContainerEnv<'_>,
        cp: &CPath<'_>,
        cont: Option<&str>,
        mounts: &[Mount<'_>],
        volumes: &[Volume<'_>],
    ) {
        for (ei, var, path) in named {
            let resolved = expand::resolve_path(&path, ce.working_dir);
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
            let configmaps_count = names_shared_credentials_file(var);
            self.credentials_file(vol, &keys, cont, at, what, configmaps_count);
        }
    }

    /// The SDKs' default files (`~/.aws/credentials`, `~/.aws/config`) wherever a mount puts
    /// them: a directory mounted at `.../.aws`, a file mounted there with `subPath`, or an
    /// `items[].path` of `.aws/credentials` under a mount at HOME.
    pub(super) fn default_credentials_files(
        &mut self,
        ce: &ContainerEnv<'_>,
        cp: &CPath<'_>,
        cont: Option<&str>,
        mounts: &[Mount<'_>],
        volumes: &[Volume<'_>],
    ) {
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
                let home = home.get_or_insert_with(|| container_home(&ce.entries, &ce.exp.env));
                let home_aws = format!("{}/.aws", home.trim_end_matches('/'));
                if is_default_location(&p) || path_within(&home_aws, &p) {
                    let what = format!(
                        "volume '{}' is mounted at {}, where the AWS SDKs read ~/.aws/credentials and ~/.aws/config (HOME={home}{})",
                        m.volume,
                        m.path,
                        if home_is_assumed(&ce.entries) {
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
fn container_home(entries: &[EnvEntry<'_>], expanded: &[Option<String>]) -> String {
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

fn home_is_assumed(entries: &[EnvEntry<'_>]) -> bool {
    !entries.iter().any(|(var, value, vf)| {
        *var == "HOME" && vf.is_none() && value.is_some_and(|v| !v.is_empty())
    })
}
