//! Text scanners: AWS access key ids and credential assignments in free text (env values,
//! `args`, `command`, and the values of Secrets and ConfigMaps), whatever the format: INI,
//! YAML, HCL, JSON, properties, shell, URLs.
//!
//! Both scanners are single passes over the bytes with no allocation; texts shorter than the
//! shortest possible match are skipped at once.

/// Prefixes of AWS access key ids that are credentials: `AKIA` (long-term user keys), `ASIA`
/// (temporary STS keys), `ABIA` (STS service bearer tokens), `ACCA` (context-specific
/// credentials). Principal ids (`AIDA`, `AROA`, `AGPA`, …) identify users and roles and are not
/// secrets; they appear legitimately in policies and are not matched.
const ACCESS_KEY_PREFIXES: [&[u8; 4]; 4] = [b"AKIA", b"ASIA", b"ABIA", b"ACCA"];
const ACCESS_KEY_LEN: usize = 20;
/// AWS secret access keys are exactly 40 characters of base64 alphabet (no padding).
const SECRET_KEY_LEN: usize = 40;
/// STS session tokens are several hundred characters; anything this long is token-shaped.
const MIN_SESSION_TOKEN_LEN: usize = 100;
/// Shortest text that can hold a credential assignment: `seckey=` and a 40-char secret.
const MIN_ASSIGNMENT_LEN: usize = 6 + SECRET_KEY_LEN;

/// Env var names that carry static AWS credentials to the SDKs (and the Java SDK's names,
/// and the Ruby SDK's `AMAZON_` ones).
const CREDENTIAL_NAMES: [&str; 9] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ACCESS_KEY",
    "AWS_SECRET_KEY",
    "AMAZON_ACCESS_KEY_ID",
    "AMAZON_SECRET_ACCESS_KEY",
    "AMAZON_SESSION_TOKEN",
];

/// Something that looks like AWS key material, found in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hit {
    /// An access key id, masked for messages (`AKIA…MPLE`).
    AccessKeyId { masked: String },
    /// A secret access key or session token assigned to a credential-looking name
    /// (`aws_secret_access_key = …`, `"SecretAccessKey": "…"`, `secret_key: …`).
    SecretAssignment { name: String },
}

impl Hit {
    /// A short, value-free description for messages.
    pub fn describe(&self) -> String {
        match self {
            Hit::AccessKeyId { masked } => format!("an AWS access key id ({masked})"),
            Hit::SecretAssignment { name } => format!("a secret access key assigned to `{name}`"),
        }
    }
}

/// Whether `name` is one of the env var names that carry static AWS credentials, compared
/// case-insensitively, also as the suffix of a longer name after `_` (`TF_VAR_aws_access_key_id`,
/// `LOKI_AWS_SECRET_ACCESS_KEY`).
pub fn is_credential_name(name: &str) -> bool {
    credential_name(name).is_some()
}

/// Whether `name` is exactly one of the credential env var names (case-insensitively): the
/// names the SDKs read. Any non-empty value under such a name is a credential.
pub fn is_exact_credential_name(name: &str) -> bool {
    credential_name(name) == Some(true)
}

/// `Some(true)` for an exact credential env var name, `Some(false)` for a longer name ending in
/// `_` and one (`LOKI_AWS_SECRET_ACCESS_KEY`, but also `DISABLE_AWS_SESSION_TOKEN`), `None`
/// otherwise.
fn credential_name(name: &str) -> Option<bool> {
    CREDENTIAL_NAMES.iter().find_map(|c| {
        if name.len() == c.len() {
            name.eq_ignore_ascii_case(c).then_some(true)
        } else if name.len() > c.len() + 1 {
            let split = name.len() - c.len();
            (name.is_char_boundary(split)
                && name[split..].eq_ignore_ascii_case(c)
                && name.as_bytes()[split - 1] == b'_')
                .then_some(false)
        } else {
            None
        }
    })
}

/// Whether a value under a credential-like name is a credential. Under an exact credential
/// name (`AWS_SECRET_ACCESS_KEY`) any non-empty value is; under a longer name that merely ends
/// in one (`TF_VAR_aws_secret_access_key`, `DISABLE_AWS_SESSION_TOKEN`) only key material is:
/// an access key id, a secret access key or a session token by shape, so `true` or `1` is not.
pub fn is_credential_value(name: &str, value: &str) -> bool {
    match credential_name(name) {
        Some(true) => !value.trim().is_empty(),
        Some(false) => is_key_material(value),
        None => false,
    }
}

/// Whether the whole (trimmed) value is an access key id, or has the shape of a secret access
/// key or session token, or contains an access key id.
pub fn is_key_material(value: &str) -> bool {
    is_secret_shaped(value) || find_access_key_id(value).is_some()
}

/// The first AWS key material found in `text`, if any.
pub fn find_credentials(text: &str) -> Option<Hit> {
    find_access_key_id(text).or_else(|| find_secret_assignment(text))
}

/// Whether the whole (trimmed) value is an access key id.
pub fn is_access_key_id(value: &str) -> bool {
    let v = value.trim().as_bytes();
    v.len() == ACCESS_KEY_LEN && access_key_at(v, 0)
}

/// Whether the whole (trimmed) value has the shape of a secret access key or session token.
pub fn is_secret_shaped(value: &str) -> bool {
    let v = value.trim().as_bytes();
    (v.len() == SECRET_KEY_LEN && v.iter().all(|c| is_secret_char(*c)) && looks_like_secret(v))
        || (v.len() >= MIN_SESSION_TOKEN_LEN && v.iter().all(|c| is_token_char(*c)))
}

/// The first access key id in `text`: one of the credential prefixes, then 16 upper-case
/// letters or digits, not inside a longer alphanumeric word (a preceding percent-encoded byte,
/// as in `X-Amz-Credential%3DAKIA…`, counts as a boundary).
pub fn find_access_key_id(text: &str) -> Option<Hit> {
    let b = text.as_bytes();
    if b.len() < ACCESS_KEY_LEN {
        return None;
    }
    let mut from = 0;
    while let Some(off) = memchr::memchr(b'A', &b[from..]) {
        let i = from + off;
        if i + ACCESS_KEY_LEN > b.len() {
            return None;
        }
        if access_key_at(b, i) && left_boundary(b, i) {
            return Some(Hit::AccessKeyId {
                masked: mask(&text[i..i + ACCESS_KEY_LEN]),
            });
        }
        from = i + 1;
    }
    None
}

fn access_key_at(b: &[u8], i: usize) -> bool {
    let Some(window) = b.get(i..i + ACCESS_KEY_LEN) else {
        return false;
    };
    ACCESS_KEY_PREFIXES.iter().any(|p| &window[..4] == *p)
        && window[4..]
            .iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        && b.get(i + ACCESS_KEY_LEN)
            .is_none_or(|c| !c.is_ascii_alphanumeric())
}

fn left_boundary(b: &[u8], i: usize) -> bool {
    if i == 0 || !b[i - 1].is_ascii_alphanumeric() {
        return true;
    }
    i >= 3 && b[i - 3] == b'%' && b[i - 2].is_ascii_hexdigit() && b[i - 1].is_ascii_hexdigit()
}

fn mask(id: &str) -> String {
    let n = id.len();
    format!("{}…{}", &id[..4], &id[n.saturating_sub(4)..])
}

/// Normalised suffixes (lower case, without `_`, `-`, `.`) of names that hold a secret access
/// key, and of names that hold a session token, in configuration files of any format.
const SECRET_NAME_SUFFIXES: [&[u8]; 3] = [b"secretaccesskey", b"secretkey", b"seckey"];
const TOKEN_NAME_SUFFIXES: [&[u8]; 2] = [b"sessiontoken", b"securitytoken"];
/// Normalised suffixes of names that hold an access key id (`access_key`, `accessKeyId`,
/// `aws_access_key_id`): a secret assigned next to one is half of a key pair.
const KEY_ID_NAME_SUFFIXES: [&[u8]; 2] = [b"accesskeyid", b"accesskey"];

/// What a name says its value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    SecretKey,
    SessionToken,
}

impl NameKind {
    /// What a name ending in a secret-key or session-token word holds (`None` for other names).
    pub fn of(name: &str) -> Option<NameKind> {
        let b = name.as_bytes();
        match b.last().map(|c| c | 0x20) {
            Some(b'y') if name_ends_with(b, &SECRET_NAME_SUFFIXES) => Some(NameKind::SecretKey),
            Some(b'n') if name_ends_with(b, &TOKEN_NAME_SUFFIXES) => Some(NameKind::SessionToken),
            _ => None,
        }
    }

    /// Whether the whole (trimmed) value has the shape this name holds: exactly 40 characters
    /// for a secret access key, 100 or more for a session token.
    pub fn fits(self, value: &str) -> bool {
        let v = value.trim().as_bytes();
        match self {
            NameKind::SecretKey => {
                v.len() == SECRET_KEY_LEN
                    && v.iter().all(|c| is_secret_char(*c))
                    && looks_like_secret(v)
            }
            NameKind::SessionToken => {
                v.len() >= MIN_SESSION_TOKEN_LEN && v.iter().all(|c| is_token_char(*c))
            }
        }
    }
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.')
}

/// Whether a name says by itself that its secret is AWS's: it names AWS or S3
/// (`aws_secret_access_key`, `AWS_SECRET_KEY`, `aws_sec_key`, `fs.s3a.secret.key`,
/// `s3_secret_key`), or it is AWS's own term for the secret half of a key pair
/// (`SecretAccessKey`, `secret_access_key`). `secret_key`, `SECRET_KEY`, `jwt-secret-key` do
/// not: Django, reCAPTCHA and JWT libraries use the same words.
pub fn names_aws(name: &str) -> bool {
    let norm: Vec<u8> = name
        .bytes()
        .filter(|c| !matches!(c, b'_' | b'-' | b'.'))
        .map(|c| c.to_ascii_lowercase())
        .collect();
    norm.windows(3).any(|w| w == b"aws")
        || norm.windows(2).any(|w| w == b"s3")
        || norm.ends_with(b"secretaccesskey")
}

/// Whether `name` names an access key id (`access_key`, `AccessKeyId`, `aws_access_key_id`),
/// and not a secret access key.
pub fn is_key_id_name(name: &str) -> bool {
    let b = name.as_bytes();
    name_ends_with(b, &KEY_ID_NAME_SUFFIXES) && !name_ends_with(b, &[b"secretaccesskey"])
}

/// The first assignment of a secret-shaped value to a secret-looking name: the name, optional
/// quotes, a separator (`=`, `:`, `=>`, `:=` or blanks), optional quotes, then a value of 40
/// base64 characters (a secret access key) or of 100 or more (a session token). Prose that
/// only mentions a name, and placeholders (`<your key>`, `${SECRET}`, `changeme`), do not
/// match.
///
/// A 40-character secret is not AWS's by its shape alone (Django's `SECRET_KEY`, reCAPTCHA
/// secrets and JWT keys look the same), so the assignment also needs evidence that it is AWS
/// key material, as mature secret scanners require: a name that says so ([`names_aws`]), or
/// an access key id field assigned in the same text (`access_key: …` next to
/// `secret_key: …`). An access key id itself is found by [`find_access_key_id`].
pub fn find_secret_assignment(text: &str) -> Option<Hit> {
    let b = text.as_bytes();
    if b.len() < MIN_ASSIGNMENT_LEN {
        return None;
    }
    // The first secret under a generic name, reported if a key id field shows up.
    let mut generic: Option<&[u8]> = None;
    let mut key_id_field = false;
    let mut i = 0;
    while i < b.len() {
        if !is_ident(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && is_ident(b[i]) {
            i += 1;
        }
        let name = &b[start..i];
        // Every suffix ends in `key`, `token` or `id`: cheap filter before the normalised
        // compare.
        let last = name[name.len() - 1] | 0x20;
        let kind = match last {
            b'y' => name_ends_with(name, &SECRET_NAME_SUFFIXES).then_some(NameKind::SecretKey),
            b'n' => name_ends_with(name, &TOKEN_NAME_SUFFIXES).then_some(NameKind::SessionToken),
            _ => None,
        };
        if let Some(kind) = kind
            && value_follows(&b[i..], kind)
        {
            // Names are runs of ASCII identifier bytes: always valid UTF-8.
            let name_str = std::str::from_utf8(name).unwrap_or("");
            if names_aws(name_str) {
                return Some(Hit::SecretAssignment {
                    name: name_str.to_string(),
                });
            }
            if generic.is_none() {
                generic = Some(name);
            }
        } else if !key_id_field
            && matches!(last, b'y' | b'd')
            && name_ends_with(name, &KEY_ID_NAME_SUFFIXES)
            && !name_ends_with(name, &[b"secretaccesskey"])
            && assigned_value(&b[i..])
                .is_some_and(|(v, sign)| sign && v.first().is_some_and(|c| is_ident(*c)))
        {
            key_id_field = true;
        }
        if key_id_field && let Some(name) = generic {
            return Some(Hit::SecretAssignment {
                name: String::from_utf8_lossy(name).into_owned(),
            });
        }
    }
    None
}

fn name_ends_with(name: &[u8], suffixes: &[&[u8]]) -> bool {
    suffixes.iter().any(|suffix| {
        let mut chars = name
            .iter()
            .rev()
            .filter(|c| !matches!(c, b'_' | b'-' | b'.'))
            .map(|c| c.to_ascii_lowercase());
        suffix.iter().rev().all(|s| chars.next() == Some(*s))
    })
}

/// The value assigned after a name: optional quotes, a separator (`=`, `:`, `=>`, `:=` or
/// blanks), optional quotes; `None` when no separator follows. The flag says whether the
/// separator was a sign rather than blanks.
fn assigned_value(rest: &[u8]) -> Option<(&[u8], bool)> {
    let mut j = 0;
    let mut blanks = false;
    while j < rest.len() && matches!(rest[j], b'"' | b'\'' | b' ' | b'\t') {
        blanks |= rest[j] != b'"' && rest[j] != b'\'';
        j += 1;
    }
    let sep = match rest.get(j..j + 2) {
        Some(b"=>") | Some(b":=") => 2,
        _ => match rest.get(j) {
            Some(b'=') | Some(b':') => 1,
            _ => 0,
        },
    };
    if sep == 0 && !blanks {
        return None;
    }
    j += sep;
    while j < rest.len() && matches!(rest[j], b'"' | b'\'' | b' ' | b'\t') {
        j += 1;
    }
    Some((&rest[j..], sep > 0))
}

fn value_follows(rest: &[u8], kind: NameKind) -> bool {
    let Some((value, _)) = assigned_value(rest) else {
        return false;
    };
    match kind {
        NameKind::SecretKey => {
            let secret = secret_token_len(value);
            secret == SECRET_KEY_LEN
                && value.get(secret).is_none_or(|c| !is_token_char(*c))
                && looks_like_secret(&value[..secret])
        }
        NameKind::SessionToken => {
            let token = token_len(value);
            token >= MIN_SESSION_TOKEN_LEN && looks_like_secret(&value[..token])
        }
    }
}

fn is_secret_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'/' || c == b'+'
}

fn is_token_char(c: u8) -> bool {
    is_secret_char(c) || c == b'='
}

/// Length of the secret-alphabet run at the start of `b`, counted up to one past a secret key
/// (enough to tell "exactly 40"): bounded so that many candidate names in one text cost linear
/// time, not quadratic.
fn secret_token_len(b: &[u8]) -> usize {
    b.iter()
        .take(SECRET_KEY_LEN + 1)
        .take_while(|c| is_secret_char(**c))
        .count()
}

/// Length of the token run at the start of `b`, counted up to the session token threshold.
fn token_len(b: &[u8]) -> usize {
    b.iter()
        .take(MIN_SESSION_TOKEN_LEN)
        .take_while(|c| is_token_char(**c))
        .count()
}

/// Real secrets mix character classes; `xxxxxxxx…` or `AAAA…` placeholders do not.
fn looks_like_secret(v: &[u8]) -> bool {
    let upper = v.iter().any(u8::is_ascii_uppercase);
    let lower = v.iter().any(u8::is_ascii_lowercase);
    let digit = v.iter().any(u8::is_ascii_digit);
    (upper as u8 + lower as u8 + digit as u8) >= 2
}

#[cfg(test)]
mod tests;
