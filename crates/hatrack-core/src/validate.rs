//! IAM's own limits, checked before any AWS call (moto, and sometimes AWS itself, would accept
//! or silently alter what IAM documents as invalid). Each check returns a message that says
//! what is wrong; callers add the field path.

/// IAM role name: 1-64 characters of `[A-Za-z0-9+=,.@_-]`.
pub fn role_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err(format!(
            "role name must be 1-64 characters, got {} ({name:?})",
            name.len()
        ));
    }
    if let Some(c) = name.chars().find(|c| !is_role_name_char(*c)) {
        return Err(format!(
            "role name may only contain letters, digits and +=,.@_-, found {c:?} in {name:?}"
        ));
    }
    Ok(())
}

pub fn is_role_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "+=,.@_-".contains(c)
}

/// IAM path: `/` or `/segment/.../`, 1-512 printable ASCII characters.
pub fn role_path(path: &str) -> Result<(), String> {
    let ok = !path.is_empty()
        && path.len() <= 512
        && path.starts_with('/')
        && path.ends_with('/')
        && !path.contains("//")
        && path.chars().all(|c| ('\u{21}'..='\u{7e}').contains(&c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "path must start and end with '/', have no empty segment, and be at most 512 printable ASCII characters, got {path:?}"
        ))
    }
}

/// Role description: at most 1000 characters of IAM's allowed set.
pub fn description(text: &str) -> Result<(), String> {
    let count = text.chars().count();
    if count > 1000 {
        return Err(format!(
            "description must be at most 1000 characters, got {count}"
        ));
    }
    if let Some(c) = text
        .chars()
        .find(|c| !matches!(*c, '\t' | '\n' | '\r' | '\u{20}'..='\u{7e}' | '\u{a1}'..='\u{ff}'))
    {
        return Err(format!(
            "description contains a character IAM refuses: {c:?}"
        ));
    }
    Ok(())
}

fn is_tag_char(c: char) -> bool {
    c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c)
}

/// Tag key: 1-128 characters of letters, digits, spaces and `_.:/=+-@`; `aws:` is reserved.
pub fn tag_key(key: &str) -> Result<(), String> {
    let count = key.chars().count();
    if count == 0 || count > 128 {
        return Err(format!(
            "tag key must be 1-128 characters, got {count} ({key:?})"
        ));
    }
    if key.to_ascii_lowercase().starts_with("aws:") {
        return Err(format!("tag key {key:?} uses the reserved prefix aws:"));
    }
    if let Some(c) = key.chars().find(|c| !is_tag_char(*c)) {
        return Err(format!(
            "tag key {key:?} contains {c:?}; allowed: letters, digits, spaces and _.:/=+-@"
        ));
    }
    Ok(())
}

/// Tag value: 0-256 characters of the same set as keys.
pub fn tag_value(key: &str, value: &str) -> Result<(), String> {
    let count = value.chars().count();
    if count > 256 {
        return Err(format!(
            "tag {key:?}: value must be at most 256 characters, got {count}"
        ));
    }
    if let Some(c) = value.chars().find(|c| !is_tag_char(*c)) {
        return Err(format!(
            "tag {key:?}: value contains {c:?}; allowed: letters, digits, spaces and _.:/=+-@"
        ));
    }
    Ok(())
}

/// Managed policy ARN: `arn:<partition>:iam::<12 digits|aws>:policy/<path/name>`.
pub fn policy_arn(arn: &str) -> Result<(), String> {
    let bad = || {
        format!("{arn:?} is not an IAM policy ARN (arn:<partition>:iam::<account>:policy/<name>)")
    };
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(bad());
    };
    let partition_ok = partition.starts_with("aws");
    let account_ok =
        account == "aws" || (account.len() == 12 && account.chars().all(|c| c.is_ascii_digit()));
    let name = resource.strip_prefix("policy/").unwrap_or("");
    let name_ok = !name.is_empty()
        && name.len() <= 512 + 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-/".contains(c))
        && !name.ends_with('/');
    if partition_ok && account_ok && name_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

/// Maximum session duration in seconds: 3600..=43200.
pub fn max_session_duration(seconds: i32) -> Result<(), String> {
    if (3600..=43200).contains(&seconds) {
        Ok(())
    } else {
        Err(format!(
            "maxSessionDuration must be 3600..43200 seconds, got {seconds}"
        ))
    }
}

/// Inline policy name: 1-128 characters of `[\w+=,.@-]`.
pub fn inline_policy_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 128 || !name.chars().all(is_role_name_char) {
        return Err(format!(
            "inline policy name must be 1-128 characters of letters, digits and +=,.@_-, got {name:?}"
        ));
    }
    Ok(())
}

/// Length as IAM's size quotas count it: characters, whitespace not counted.
pub fn policy_size(json: &str) -> usize {
    json.chars().filter(|c| !c.is_whitespace()).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_follow_iam_rules() {
        assert!(role_name("payments-reader-1a2b").is_ok());
        assert!(role_name(&"a".repeat(64)).is_ok());
        assert!(role_name(&"a".repeat(65)).is_err());
        assert!(role_name("").is_err());
        assert!(role_name("has/slash").is_err());
        assert!(role_name("space here").is_err());
    }

    #[test]
    fn role_paths_follow_iam_rules() {
        assert!(role_path("/").is_ok());
        assert!(role_path("/hatrack/prod/").is_ok());
        for bad in ["", "hatrack/", "/hatrack", "//", "/a//b/", "/sp ace/"] {
            assert!(role_path(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn tags_follow_iam_rules() {
        assert!(tag_key("team").is_ok());
        assert!(tag_key("aws:foo").is_err());
        assert!(tag_key("AWS:foo").is_err());
        assert!(tag_key(&"k".repeat(129)).is_err());
        assert!(tag_key("a{b}").is_err());
        assert!(tag_value("k", &"v".repeat(256)).is_ok());
        assert!(tag_value("k", &"v".repeat(257)).is_err());
        assert!(tag_value("k", "").is_ok());
    }

    #[test]
    fn policy_arns_are_recognised() {
        assert!(policy_arn("arn:aws:iam::aws:policy/ReadOnlyAccess").is_ok());
        assert!(policy_arn("arn:aws:iam::111122223333:policy/team/boundary").is_ok());
        assert!(policy_arn("arn:aws-cn:iam::111122223333:policy/x").is_ok());
        for bad in [
            "arn:aws:iam::aws:role/x",
            "arn:aws:s3:::bucket",
            "arn:aws:iam::12345:policy/x",
            "ReadOnlyAccess",
            "arn:aws:iam::aws:policy/",
        ] {
            assert!(policy_arn(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn description_limits() {
        assert!(description("owned by hatrack").is_ok());
        assert!(description(&"x".repeat(1001)).is_err());
        assert!(description("emoji \u{1F600}").is_err());
    }

    #[test]
    fn policy_size_ignores_whitespace() {
        assert_eq!(policy_size("{ \"a\" : [ 1 ,\n 2 ] }"), 11);
    }
}
