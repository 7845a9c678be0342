//! What hatrack knows of the Secrets and ConfigMaps a workload references: key names and a
//! classification of each value, derived once when the object enters a cache. Values are never
//! stored. How a judgement looks them up (the [`ReferenceView`]s) is in `view`.

mod view;

use super::scan;

pub use view::{
    FactsIndex, InMemoryView, Lookup, NoLookups, Overlay, Recorded, Recording, ReferenceView,
};

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
}
