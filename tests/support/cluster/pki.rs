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

    let serving_key = KeyPair::generate().expect("serving key");
    let mut serving = CertificateParams::new(vec![
        "127.0.0.1".to_string(),
        "localhost".to_string(),
        "kubernetes.default.svc".to_string(),
    ])
    .expect("serving names");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "kube-apiserver");
    serving.distinguished_name = dn;
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let serving_cert = serving
        .signed_by(&serving_key, &issuer)
        .expect("serving certificate");

    let admin_key = KeyPair::generate().expect("admin key");
    let mut admin = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "hatrack-test-admin");
    dn.push(DnType::OrganizationName, "system:masters");
    admin.distinguished_name = dn;
    admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let admin_cert = admin
        .signed_by(&admin_key, &issuer)
        .expect("admin certificate");

    let sa_key = KeyPair::generate().expect("service account signing key");
    Pki {
        ca_pem,
        serving_cert: serving_cert.pem(),
        serving_key: serving_key.serialize_pem(),
        admin_cert: admin_cert.pem(),
        admin_key: admin_key.serialize_pem(),
        sa_public: sa_key.public_key_pem(),
        sa_private: sa_key.serialize_pem(),
    }
}
