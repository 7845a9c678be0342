//! What hatrack knows of the Secrets and ConfigMaps a workload references: key names and a
//! classification of each value, derived once when the object enters a cache. Values are never
//! stored.

use std::collections::HashMap;
use std::sync::Arc;

use super::policy::Mode;
use super::scan;

/// The label on a Namespace that overrides the webhook's mode for workloads in it.
pub const MODE_LABEL: &str = "hatrack.dev/static-keys";

/// Which kind of object a reference points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefKind {
    Secret,
    ConfigMap,
}

impl RefKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RefKind::Secret => "Secret",
            RefKind::ConfigMap => "ConfigMap",
        }
    }
}

/// The classification of one value of a Secret or ConfigMap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyClass {
    /// The value is an AWS access key id.
    AwsAccessKeyId,
    /// The value is a secret access key or session token (its shape, under a secret-looking
    /// key name).
    AwsSecretKey,
    /// The key is named like a credential env var (`aws_secret_access_key`, …) and is not
    /// empty.
    CredentialNamed,
    /// The value is a file or text that contains key material (a credentials file, an object
    /// store config, a URL with an access key id).
    CredentialsFile,
    /// Nothing that looks like an AWS key.
    Clean,
    /// An empty value (a credential env var set to it is unset for the SDKs).
    Empty,
}

impl KeyClass {
    pub fn is_credential(self) -> bool {
        !matches!(self, KeyClass::Clean | KeyClass::Empty)
    }

    pub fn describe(self) -> &'static str {
        match self {
            KeyClass::AwsAccessKeyId => "an AWS access key id",
            KeyClass::AwsSecretKey => "an AWS secret access key",
            KeyClass::CredentialNamed => "an AWS credential (by its key name)",
            KeyClass::CredentialsFile => "a file with AWS key material",
            KeyClass::Clean => "nothing AWS-related",
            KeyClass::Empty => "an empty value",
        }
    }
}

/// One key of a Secret or ConfigMap: its name and what its value looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFact {
    pub name: Box<str>,
    pub class: KeyClass,
}

/// The facts kept about one Secret or ConfigMap.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectFacts {
    pub keys: Vec<KeyFact>,
}

impl ObjectFacts {
    pub fn key(&self, name: &str) -> Option<&KeyFact> {
        self.keys.iter().find(|k| &*k.name == name)
    }

    /// Whether no key holds anything that looks like an AWS key.
    pub fn is_clean(&self) -> bool {
        self.keys.iter().all(|k| !k.class.is_credential())
    }
}

/// Classifies the values of a Secret (decoded) or ConfigMap. Called once when an object
/// enters a cache; the values can be dropped afterwards.
pub fn classify_data<'a, I>(data: I) -> ObjectFacts
where
    I: IntoIterator<Item = (&'a str, &'a [u8])>,
{
    let data: Vec<(&str, &[u8])> = data.into_iter().collect();
    // A key id beside a secret is evidence that the secret is AWS's (`access_key` and
    // `secret_key` in one Secret).
    let key_id_beside = data.iter().any(|(name, value)| {
        let value = value.trim_ascii();
        (scan::is_key_id_name(name) && !value.is_empty())
            || std::str::from_utf8(value).is_ok_and(scan::is_access_key_id)
    });
    let keys = data
        .iter()
        .map(|(name, value)| KeyFact {
            name: (*name).into(),
            class: classify(name, value, key_id_beside),
        })
        .collect();
    ObjectFacts { keys }
}

/// Classifies one value under its key name, on its own (no other key of its object is known).
pub fn classify_value(name: &str, value: &[u8]) -> KeyClass {
    classify(name, value, false)
}

/// Classifies one value under its key name. A bare secret-shaped value is an AWS secret access
/// key (or session token) only with evidence that it is AWS's: its key name says so
/// ([`scan::names_aws`]), or `key_id_beside` (the object also has an access key id key).
fn classify(name: &str, value: &[u8], key_id_beside: bool) -> KeyClass {
    let text = String::from_utf8_lossy(value);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return KeyClass::Empty;
    }
    if scan::is_access_key_id(trimmed) {
        return KeyClass::AwsAccessKeyId;
    }
    if scan::is_credential_value(name, trimmed) {
        return KeyClass::CredentialNamed;
    }
    if let Some(kind) = scan::NameKind::of(name)
        && kind.fits(trimmed)
        && (scan::names_aws(name) || key_id_beside)
    {
        return KeyClass::AwsSecretKey;
    }
    if scan::find_credentials(trimmed).is_some() {
        return KeyClass::CredentialsFile;
    }
    KeyClass::Clean
}

/// What is known of a referenced object.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// Lookups are off: the reference is judged by env names only, silently.
    Disabled,
    /// Lookups are on but the object is not known (does not exist yet, or was not in the
    /// input): judged by names, with a warning.
    Missing,
    /// The object's facts.
    Found(Arc<ObjectFacts>),
}

/// What hatrack can see of the cluster: referenced Secrets and ConfigMaps, and the mode
/// label of namespaces. Implemented by the webhook's watch caches, by an in-memory view of
/// manifests (`hatrack check`, tests), and by [`NoLookups`].
pub trait ReferenceView: Send + Sync {
    fn lookup(&self, kind: RefKind, namespace: &str, name: &str) -> Lookup;

    /// The mode set by the namespace's `hatrack.dev/static-keys` label, if any.
    fn namespace_mode(&self, _namespace: &str) -> Option<Mode> {
        None
    }

    /// Whether the view has what it needs to answer (a watch cache has listed everything).
    fn ready(&self) -> bool {
        true
    }

    /// Whether an object missing from the view may still exist: `check` sees only its input,
    /// the webhook's synced watch caches see the whole cluster. An optional reference to a
    /// missing object sets nothing in the cluster, but is only known to set nothing when the
    /// view is not partial; otherwise it gets a warning.
    fn partial(&self) -> bool {
        false
    }

    /// The StaticKeyExemption covering the workload at `now`, and whether it is still active
    /// (the webhook's watch cache; `check` applies the exemptions of its input itself).
    fn exemption(
        &self,
        _kind: &str,
        _namespace: &str,
        _name: &str,
        _now: jiff::Timestamp,
    ) -> Option<(crate::exemption::Exemption, crate::exemption::State)> {
        None
    }

    /// How many StaticKeyExemptions the view holds that are active and expired at `now`
    /// (`None` when it does not watch them).
    fn exemption_counts(&self, _now: jiff::Timestamp) -> Option<(usize, usize)> {
        None
    }
}

/// A view that answers as an inner one except where it says otherwise (the webhook's system
/// namespaces change the mode, the audit records what is looked up). Implement `inner` and
/// the answers that change; [`ReferenceView`] comes with every other method forwarded, so a
/// method added to it later cannot be left to its default and hide the inner view's answer
/// (exemptions were lost this way once).
pub trait Overlay: Send + Sync {
    fn inner(&self) -> &dyn ReferenceView;

    fn lookup(&self, kind: RefKind, namespace: &str, name: &str) -> Lookup {
        self.inner().lookup(kind, namespace, name)
    }

    fn namespace_mode(&self, namespace: &str) -> Option<Mode> {
        self.inner().namespace_mode(namespace)
    }
}

impl<T: Overlay> ReferenceView for T {
    fn lookup(&self, kind: RefKind, namespace: &str, name: &str) -> Lookup {
        Overlay::lookup(self, kind, namespace, name)
    }

    fn namespace_mode(&self, namespace: &str) -> Option<Mode> {
        Overlay::namespace_mode(self, namespace)
    }

    fn ready(&self) -> bool {
        self.inner().ready()
    }

    fn partial(&self) -> bool {
        self.inner().partial()
    }

    fn exemption(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        now: jiff::Timestamp,
    ) -> Option<(crate::exemption::Exemption, crate::exemption::State)> {
        self.inner().exemption(kind, namespace, name, now)
    }

    fn exemption_counts(&self, now: jiff::Timestamp) -> Option<(usize, usize)> {
        self.inner().exemption_counts(now)
    }
}

/// No Kubernetes API access at all (`--lookups off`).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoLookups;

impl ReferenceView for NoLookups {
    fn lookup(&self, _kind: RefKind, _namespace: &str, _name: &str) -> Lookup {
        Lookup::Disabled
    }
}

/// Facts of Secrets and ConfigMaps by namespace and name. Lookups borrow `&str` keys (no
/// allocation per lookup). Used by [`InMemoryView`] and the webhook's watch cache.
#[derive(Debug, Clone, Default)]
pub struct FactsIndex {
    secrets: HashMap<String, HashMap<String, Arc<ObjectFacts>>>,
    configmaps: HashMap<String, HashMap<String, Arc<ObjectFacts>>>,
}

impl FactsIndex {
    fn map(&self, kind: RefKind) -> &HashMap<String, HashMap<String, Arc<ObjectFacts>>> {
        match kind {
            RefKind::Secret => &self.secrets,
            RefKind::ConfigMap => &self.configmaps,
        }
    }

    fn map_mut(
        &mut self,
        kind: RefKind,
    ) -> &mut HashMap<String, HashMap<String, Arc<ObjectFacts>>> {
        match kind {
            RefKind::Secret => &mut self.secrets,
            RefKind::ConfigMap => &mut self.configmaps,
        }
    }

    pub fn get(&self, kind: RefKind, namespace: &str, name: &str) -> Option<&Arc<ObjectFacts>> {
        self.map(kind).get(namespace)?.get(name)
    }

    pub fn insert(&mut self, kind: RefKind, namespace: &str, name: &str, facts: Arc<ObjectFacts>) {
        self.map_mut(kind)
            .entry(namespace.to_string())
            .or_default()
            .insert(name.to_string(), facts);
    }

    pub fn remove(&mut self, kind: RefKind, namespace: &str, name: &str) {
        let map = self.map_mut(kind);
        if let Some(names) = map.get_mut(namespace) {
            names.remove(name);
            if names.is_empty() {
                map.remove(namespace);
            }
        }
    }

    /// Replaces every object of `kind` with those of `other` (after a watch re-list).
    pub fn replace_kind(&mut self, kind: RefKind, other: FactsIndex) {
        let mut other = other;
        *self.map_mut(kind) = std::mem::take(other.map_mut(kind));
    }

    pub fn len(&self, kind: RefKind) -> usize {
        self.map(kind).values().map(HashMap::len).sum()
    }
}

/// An in-memory view, filled from manifests or by tests.
#[derive(Debug, Clone, Default)]
pub struct InMemoryView {
    objects: FactsIndex,
    modes: HashMap<String, Mode>,
    partial: bool,
}

impl InMemoryView {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, kind: RefKind, namespace: &str, name: &str, facts: ObjectFacts) {
        self.objects.insert(kind, namespace, name, Arc::new(facts));
    }

    /// Marks the view as partial (manifests given to `check`: what is not in them may exist)
    /// or as the whole cluster (the default).
    pub fn set_partial(&mut self, partial: bool) {
        self.partial = partial;
    }

    pub fn set_namespace_mode(&mut self, namespace: &str, mode: Mode) {
        self.modes.insert(namespace.into(), mode);
    }

    /// Number of Secrets and ConfigMaps known.
    pub fn len(&self) -> usize {
        self.objects.len(RefKind::Secret) + self.objects.len(RefKind::ConfigMap)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ReferenceView for InMemoryView {
    fn lookup(&self, kind: RefKind, namespace: &str, name: &str) -> Lookup {
        match self.objects.get(kind, namespace, name) {
            Some(facts) => Lookup::Found(facts.clone()),
            None => Lookup::Missing,
        }
    }

    fn namespace_mode(&self, namespace: &str) -> Option<Mode> {
        self.modes.get(namespace).copied()
    }

    fn partial(&self) -> bool {
        self.partial
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_values_without_keeping_them() {
        let facts = classify_data([
            ("id", b"AKIAZ7Q3EXAMPLEK3Y4N\n".as_slice()),
            ("aws_secret_access_key", b"short".as_slice()),
            (
                "s3_secret_key",
                b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKE".as_slice(),
            ),
            (
                "credentials",
                b"[default]\naws_access_key_id=AKIAZ7Q3EXAMPLEK3Y4N\n".as_slice(),
            ),
            (
                "password",
                b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKE".as_slice(),
            ),
            ("region", b"eu-west-1".as_slice()),
            ("AWS_ACCESS_KEY_ID", b"".as_slice()),
        ]);
        let classes: Vec<_> = facts.keys.iter().map(|k| k.class).collect();
        assert_eq!(
            classes,
            [
                KeyClass::AwsAccessKeyId,
                KeyClass::CredentialNamed,
                KeyClass::AwsSecretKey,
                KeyClass::CredentialsFile,
                KeyClass::Clean,
                KeyClass::Clean,
                KeyClass::Empty,
            ]
        );
        assert!(!facts.is_clean());
        assert!(format!("{facts:?}").find("wJalr").is_none());
    }

    #[test]
    fn random_secrets_without_aws_evidence_are_clean() {
        const SECRET: &[u8] = b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKE";
        // Django, reCAPTCHA, JWT keys: 40 characters under generic names, nothing AWS beside.
        let facts = classify_data([
            ("SECRET_KEY", SECRET),
            ("recaptcha-secret-key", SECRET),
            ("jwt_secret_key", SECRET),
            ("DISABLE_AWS_SESSION_TOKEN", b"true".as_slice()),
        ]);
        assert!(facts.is_clean(), "{facts:?}");
        // A 256-character memberlist key under `secretkey`: not a 40-character secret key, and
        // a session token only under a token name.
        let memberlist = "Zx9".repeat(85) + "q";
        assert_eq!(
            classify_value("secretkey", memberlist.as_bytes()),
            KeyClass::Clean
        );
        // A key id beside the secret (an S3-compatible key pair) is evidence.
        let pair = classify_data([("accesskey", b"minio".as_slice()), ("secretkey", SECRET)]);
        assert_eq!(pair.keys[1].class, KeyClass::AwsSecretKey);
        let pair = classify_data([
            ("id", b"AKIAZ7Q3EXAMPLEK3Y4N".as_slice()),
            ("secret_key", SECRET),
        ]);
        assert_eq!(pair.keys[1].class, KeyClass::AwsSecretKey);
        assert_eq!(
            classify_value("AWS_SECRET_ACCESS_KEY", b""),
            KeyClass::Empty
        );
    }

    #[test]
    fn in_memory_view_reports_missing_objects() {
        let mut view = InMemoryView::new();
        view.insert(RefKind::Secret, "ns", "a", ObjectFacts::default());
        assert!(matches!(
            view.lookup(RefKind::Secret, "ns", "a"),
            Lookup::Found(_)
        ));
        assert!(matches!(
            view.lookup(RefKind::ConfigMap, "ns", "a"),
            Lookup::Missing
        ));
        assert!(matches!(
            NoLookups.lookup(RefKind::Secret, "ns", "a"),
            Lookup::Disabled
        ));
    }

    /// A view whose every answer differs from the trait's defaults.
    struct Unusual;
    impl ReferenceView for Unusual {
        fn lookup(&self, _: RefKind, _: &str, _: &str) -> Lookup {
            Lookup::Missing
        }
        fn namespace_mode(&self, _: &str) -> Option<Mode> {
            Some(Mode::Audit)
        }
        fn ready(&self) -> bool {
            false
        }
        fn partial(&self) -> bool {
            true
        }
        fn exemption_counts(&self, _: jiff::Timestamp) -> Option<(usize, usize)> {
            Some((2, 1))
        }
    }

    /// Changes the namespaces' mode only.
    struct Enforcing(Unusual);
    impl Overlay for Enforcing {
        fn inner(&self) -> &dyn ReferenceView {
            &self.0
        }
        fn namespace_mode(&self, _: &str) -> Option<Mode> {
            Some(Mode::Enforce)
        }
    }

    #[test]
    fn an_overlay_forwards_every_answer_it_does_not_change() {
        let view: &dyn ReferenceView = &Enforcing(Unusual);
        assert_eq!(view.namespace_mode("ns"), Some(Mode::Enforce));
        assert!(matches!(
            view.lookup(RefKind::Secret, "ns", "a"),
            Lookup::Missing
        ));
        assert!(!view.ready());
        assert!(view.partial());
        assert_eq!(
            view.exemption_counts(jiff::Timestamp::UNIX_EPOCH),
            Some((2, 1))
        );
    }
}
