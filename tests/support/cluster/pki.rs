//! The test cluster's certificates and keys: a CA, the API server's serving certificate, an
//! administrator's client certificate (`system:masters`) and the ServiceAccount signing key.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

pub(super) struct Pki {
    pub(super) ca_pem: String,
    pub(super) serving_cert: String,
    pub(super) serving_key: String,
    pub(super) admin_cert: String,
    pub(super) admin_key: String,
    pub(super) sa_public: String,
    pub(super) sa_private: String,
}

pub(super) fn pki() -> Pki {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "hatrack test cluster CA");
    ca.distinguished_name = dn;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
    let ca_pem = ca_cert.pem();
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).expect("CA issuer");

    let (serving_cert, serving_key) = leaf(
        &issuer,
        &["127.0.0.1", "localhost", "kubernetes.default.svc"],
        &[(DnType::CommonName, "kube-apiserver")],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (admin_cert, admin_key) = leaf(
        &issuer,
        &[],
        &[
            (DnType::CommonName, "hatrack-test-admin"),
            (DnType::OrganizationName, "system:masters"),
        ],
        ExtendedKeyUsagePurpose::ClientAuth,
    );

    let sa_key = KeyPair::generate().expect("service account signing key");
    Pki {
        ca_pem,
        serving_cert,
        serving_key,
        admin_cert,
        admin_key,
        sa_public: sa_key.public_key_pem(),
        sa_private: sa_key.serialize_pem(),
    }
}

/// A certificate signed by `issuer` for `names`, with subject `subject` and one extended key
/// usage: (certificate PEM, key PEM).
fn leaf(
    issuer: &Issuer<'_, KeyPair>,
    names: &[&str],
    subject: &[(DnType, &str)],
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let key = KeyPair::generate().expect("leaf key");
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names).expect("certificate names");
    let mut dn = DistinguishedName::new();
    for (kind, value) in subject {
        dn.push(kind.clone(), *value);
    }
    params.distinguished_name = dn;
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, issuer).expect("leaf certificate");
    (cert.pem(), key.serialize_pem())
}
