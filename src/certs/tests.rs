use super::*;
use clap::Parser;
use x509_parser::extensions::GeneralName;

fn config(extra: &[&str]) -> CertConfig {
    CertConfig {
        namespace: "hatrack-system".into(),
        secret_name: "hatrack-webhook-tls".into(),
        service_name: "hatrack-webhook".into(),
        webhook_configuration_name: "hatrack".into(),
        renew_before: DEFAULT_RENEW_BEFORE,
        extra_names: extra.iter().map(|s| s.to_string()).collect(),
    }
}

/// (DNS names, IP addresses) of a certificate, straight from its DER.
fn sans(pem: &str) -> (Vec<String>, Vec<Vec<u8>>) {
    let block = x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
        .next()
        .expect("a PEM block")
        .expect("PEM");
    let cert = block.parse_x509().expect("X.509");
    let ext = cert
        .subject_alternative_name()
        .expect("SAN extension readable")
        .expect("SAN extension present");
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    for name in &ext.value.general_names {
        match name {
            GeneralName::DNSName(d) => dns.push(d.to_string()),
            GeneralName::IPAddress(b) => ips.push(b.to_vec()),
            other => panic!("unexpected SAN {other:?}"),
        }
    }
    (dns, ips)
}

#[derive(Parser)]
struct Flags {
    #[command(flatten)]
    certs: CertArgs,
}

#[test]
fn extra_names_flag_takes_a_comma_separated_list_of_dns_names_and_ips() {
    let flags = Flags::try_parse_from([
        "hatrack",
        "--cert-extra-names=127.0.0.1,Webhook.Example.com,::1",
    ])
    .expect("parses");
    assert_eq!(
        flags.certs.cert_extra_names,
        ["127.0.0.1", "webhook.example.com", "::1"]
    );
    assert_eq!(
        flags.certs.config().extra_names,
        ["127.0.0.1", "webhook.example.com", "::1"]
    );
    let none = Flags::try_parse_from(["hatrack"]).expect("parses");
    assert!(none.certs.cert_extra_names.is_empty(), "default: none");
    for bad in [
        "under_score.example.com",
        "-a.example.com",
        "1.2.3.999",
        "a..b",
        "",
    ] {
        assert!(
            Flags::try_parse_from(["hatrack", &format!("--cert-extra-names={bad}")]).is_err(),
            "{bad:?} accepted"
        );
    }
}

#[test]
fn extra_names_are_canonical() {
    assert_eq!(parse_extra_name(" 10.0.0.1 ").as_deref(), Ok("10.0.0.1"));
    assert_eq!(
        parse_extra_name("2001:DB8:0::1").as_deref(),
        Ok("2001:db8::1")
    );
    assert_eq!(
        parse_extra_name("Hook.Example.COM.").as_deref(),
        Ok("hook.example.com")
    );
    assert_eq!(
        parse_extra_name("*.example.com").as_deref(),
        Ok("*.example.com")
    );
    assert_eq!(parse_extra_name("localhost").as_deref(), Ok("localhost"));
    assert!(parse_extra_name(&format!("{}.com", "a".repeat(64))).is_err());
    assert!(parse_extra_name("a.*.example.com").is_err());
    assert!(parse_extra_name("https://hook.example.com").is_err());
}

#[test]
fn serving_certificate_names_the_service_and_the_extra_names_with_ip_sans_for_ips() {
    let now = Timestamp::now();
    let bundle =
        fresh_bundle(&config(&["127.0.0.1", "hook.example.com", "::1"]), now).expect("bundle");
    let (dns, ips) = sans(&bundle.cert_pem);
    assert_eq!(
        dns,
        [
            "hatrack-webhook.hatrack-system.svc",
            "hatrack-webhook.hatrack-system.svc.cluster.local",
            "hook.example.com"
        ]
    );
    let mut v6 = vec![0u8; 16];
    v6[15] = 1;
    assert_eq!(
        ips,
        [vec![127, 0, 0, 1], v6],
        "IP addresses are IP SANs, not DNS names"
    );
    assert!(names_all(
        &bundle.cert_pem,
        &config(&["127.0.0.1", "HOOK.example.com"]).serving_names()
    ));
    assert!(!names_all(&bundle.cert_pem, &["10.0.0.1".to_string()]));

    let plain = fresh_bundle(&config(&[]), now).expect("bundle");
    let (dns, ips) = sans(&plain.cert_pem);
    assert_eq!(dns.len(), 2);
    assert!(ips.is_empty());
}

#[test]
fn a_stored_certificate_lacking_a_requested_name_is_reissued_from_the_same_ca() {
    let now = Timestamp::now();
    let stored = fresh_bundle(&config(&[]), now).expect("bundle");
    assert_eq!(
        plan_renewal(&stored, &config(&[]), now).expect("plan"),
        None
    );

    let wanted = config(&["127.0.0.1"]);
    let renewed = plan_renewal(&stored, &wanted, now)
        .expect("plan")
        .expect("a certificate without 127.0.0.1 is reissued");
    assert_eq!(
        renewed.ca_bundle, stored.ca_bundle,
        "same CA: the caBundle stays"
    );
    assert_eq!(renewed.ca_key_pem, stored.ca_key_pem);
    assert_ne!(renewed.cert_pem, stored.cert_pem);
    assert!(names_all(&renewed.cert_pem, &wanted.serving_names()));
    // Settled: the next check changes nothing.
    assert_eq!(plan_renewal(&renewed, &wanted, now).expect("plan"), None);

    // Another name added later is added too.
    let more = config(&["127.0.0.1", "hook.example.com"]);
    let again = plan_renewal(&renewed, &more, now)
        .expect("plan")
        .expect("reissued for the new name");
    assert!(names_all(&again.cert_pem, &more.serving_names()));
}

#[test]
fn a_name_no_longer_requested_does_not_reissue() {
    // Replicas of the old and the new version run side by side during a rollout: a
    // certificate with more names than one of them asks for must satisfy both.
    let now = Timestamp::now();
    let stored = fresh_bundle(&config(&["127.0.0.1"]), now).expect("bundle");
    assert_eq!(
        plan_renewal(&stored, &config(&[]), now).expect("plan"),
        None
    );
}

#[test]
fn a_certificate_for_another_service_is_reissued() {
    let now = Timestamp::now();
    let stored = fresh_bundle(&config(&[]), now).expect("bundle");
    let mut other = config(&[]);
    other.service_name = "renamed-webhook".into();
    let renewed = plan_renewal(&stored, &other, now)
        .expect("plan")
        .expect("reissued");
    assert!(names_all(&renewed.cert_pem, &other.serving_names()));
}
