use super::*;

const ID: &str = "AKIAZ7Q3EXAMPLEK3Y4N";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKE";

#[test]
fn secret_fixture_has_the_length_of_a_real_secret() {
    assert_eq!(SECRET.len(), 40);
    assert_eq!(ID.len(), 20);
}

#[test]
fn finds_access_key_ids_in_many_formats() {
    for text in [
        ID.to_string(),
        format!("aws_access_key_id = {ID}"),
        format!("s3://{ID}:{SECRET}@bucket/path"),
        format!("{{\"AccessKeyId\":\"{ID}\"}}"),
        format!("https://b.s3.amazonaws.com/k?X-Amz-Credential%3D{ID}%2F2024"),
        format!("export AWS_ACCESS_KEY_ID={ID}; aws s3 ls"),
        "ASIAQWERTYUIOPASDFGH".to_string(),
    ] {
        assert!(
            matches!(find_credentials(&text), Some(Hit::AccessKeyId { .. })),
            "{text}"
        );
    }
}

#[test]
fn ignores_principal_ids_and_longer_words() {
    for text in [
        "AROAZ7Q3EXAMPLEK3Y4N",
        "AIDAZ7Q3EXAMPLEK3Y4N",
        "XAKIAZ7Q3EXAMPLEK3Y4N",
        "AKIAZ7Q3EXAMPLEK3Y4NX",
        "AKIAz7q3examplek3y4n",
        "AKIAZ7Q3",
    ] {
        assert_eq!(find_credentials(text), None, "{text}");
    }
}

#[test]
fn masks_access_key_ids() {
    assert_eq!(
        find_access_key_id(ID),
        Some(Hit::AccessKeyId {
            masked: "AKIA…3Y4N".to_string()
        })
    );
}

#[test]
fn finds_secret_assignments_in_many_formats() {
    for text in [
        format!("[default]\naws_secret_access_key = {SECRET}\n"),
        format!("access_key: minio\nsecret_key: {SECRET}\n"),
        format!("secret_access_key: \"{SECRET}\""),
        format!("{{\"SecretAccessKey\": \"{SECRET}\"}}"),
        format!("secret_key = \"{SECRET}\"\naccess_key_id = \"minio\""),
        format!("s3_secret_key={SECRET}"),
        format!("-Dfs.s3a.secret.key={SECRET}"),
        format!("aws_sec_key {SECRET}"),
        format!("secret_access_key => \"{SECRET}\""),
        format!("AWS_SECRET_ACCESS_KEY={SECRET} ./run.sh"),
        format!("aws_session_token = {}", "IQoJb3JpZ2luX2VjE".repeat(8)),
    ] {
        assert!(
            matches!(find_credentials(&text), Some(Hit::SecretAssignment { .. })),
            "{text}"
        );
    }
}

#[test]
fn prose_and_placeholders_are_not_secrets() {
    for text in [
        "Put aws_secret_access_key in ~/.aws/credentials and aws_access_key_id next to it.",
        "aws_secret_access_key = <your secret access key goes here, 40 chars>",
        "aws_secret_access_key = ${AWS_SECRET_ACCESS_KEY} # read from the environment",
        "secret_key: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "secret_key: changeme-please-use-a-real-secret-from-vault",
        "export AWS_SECRET_ACCESS_KEY=$(cat /var/run/secrets/aws/key) && run",
        "role_arn = arn:aws:iam::123456789012:role/app\nweb_identity_token_file = /var/run/token",
    ] {
        assert_eq!(find_credentials(text), None, "{text}");
    }
}

#[test]
fn forty_character_secrets_without_aws_evidence_are_not_aws_keys() {
    // Django, reCAPTCHA, JWT signing keys, `openssl rand -base64 30`: same shape, no AWS.
    for text in [
        format!("SECRET_KEY = '{SECRET}'"),
        format!("RECAPTCHA_SECRET_KEY={SECRET}"),
        format!("--jwt-secret-key={SECRET}"),
        format!("secret_key: {SECRET}\n"),
        format!("jwt:\n  secretKey: \"{SECRET}\"\n  issuer: app\n"),
        format!(
            "recaptcha:\n  site_key: 6LcAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n  secret_key: {SECRET}\n"
        ),
        format!("session_token: {}", "IQoJb3JpZ2luX2VjE".repeat(8)),
    ] {
        assert_eq!(find_credentials(&text), None, "{text}");
    }
    // The same secret next to an access key id field, or under an AWS name, is a key.
    for text in [
        format!("access_key: minio\nsecret_key: {SECRET}\n"),
        format!("secret_key: {SECRET}\naccessKeyId: minio\n"),
        format!("AWS_SECRET_KEY={SECRET}"),
    ] {
        assert!(find_credentials(&text).is_some(), "{text}");
    }
    // A key id field with no value is prose, not evidence.
    assert_eq!(
        find_credentials(&format!(
            "secret_key: {SECRET} (put the access_key in vault)"
        )),
        None
    );
}

#[test]
fn prefixed_credential_names_need_key_material() {
    assert!(is_credential_value("AWS_SESSION_TOKEN", "true"));
    assert!(!is_credential_value("DISABLE_AWS_SESSION_TOKEN", "true"));
    assert!(!is_credential_value("USE_AWS_ACCESS_KEY_ID", "1"));
    assert!(is_credential_value("TF_VAR_aws_secret_access_key", SECRET));
    assert!(is_credential_value("TF_VAR_aws_access_key_id", ID));
    assert!(!is_credential_value("AWS_REGION", ID));
    assert!(!is_credential_value("AWS_ACCESS_KEY_ID", " "));
}

#[test]
fn secret_must_be_exactly_forty_characters() {
    let long = format!("aws_secret_key: {SECRET}A");
    assert_eq!(find_credentials(&long), None);
    let short = format!("aws_secret_key: {}", &SECRET[..39]);
    assert_eq!(find_credentials(&short), None);
}

#[test]
fn credential_names_match_case_insensitively_and_as_suffix() {
    for name in [
        "AWS_ACCESS_KEY_ID",
        "aws_secret_access_key",
        "AWS_SESSION_TOKEN",
        "AWS_ACCESS_KEY",
        "AWS_SECRET_KEY",
        "TF_VAR_aws_access_key_id",
        "LOKI_AWS_SECRET_ACCESS_KEY",
    ] {
        assert!(is_credential_name(name), "{name}");
    }
    for name in [
        "AWS_REGION",
        "AWS_ROLE_ARN",
        "AWS_ACCESS_KEY_ID_FILE",
        "MYAWS_ACCESS_KEY_ID",
        "AWS_SHARED_CREDENTIALS_FILE",
        "S3_SECRET_KEY",
        "éAWS_ACCESS_KEY_ID",
    ] {
        assert!(!is_credential_name(name), "{name}");
    }
}

#[test]
fn whole_value_shapes() {
    assert!(is_access_key_id(&format!(" {ID}\n")));
    assert!(!is_access_key_id(&format!("id={ID}")));
    assert!(is_secret_shaped(SECRET));
    assert!(!is_secret_shaped("password123"));
}

#[test]
fn long_tokens_after_many_names_are_still_recognised() {
    // Token scans are bounded; long runs still count as session tokens.
    let text = format!("aws_session_token={}", "A1b2".repeat(10_000));
    assert!(find_secret_assignment(&text).is_some());
    let chain = "seckey=".repeat(10_000);
    assert_eq!(find_secret_assignment(&chain), None);
}

#[test]
fn never_panics_on_multibyte_text() {
    for text in [
        "é".repeat(60),
        format!("€{ID}€"),
        format!("ключ secret_key: {SECRET}"),
    ] {
        let _ = find_credentials(&text);
    }
}
