//! TLS for the kinds that speak it (`http`, `dns` over TLS): the client config built from a
//! probe's `tls:` settings, a verifier that keeps the chain the server presented (so a failure
//! can name the certificate), and the classification of handshake errors into typed reasons.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::crypto::{ring, WebPkiSupportedAlgorithms};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{
    self, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use crate::probe::Reason;

/// The probe's `tls:` settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    /// A PEM bundle of the CAs to trust, for on-prem PKI; read on every round.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Trust the public web PKI too (Mozilla's roots, built in). Default: only when there is no
    /// `ca_file`.
    #[serde(default)]
    pub public_roots: Option<bool>,
    /// The name to send as SNI and to verify the certificate against; default the host the
    /// probe connects to (the URL's host, a DNS server's address).
    #[serde(default)]
    pub server_name: Option<String>,
    /// Accept any certificate (the chain is still read for the expiry metric).
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

impl TlsSpec {
    /// What config validation rejects: a `server_name` that can never be verified.
    pub fn validate(&self) -> Result<(), String> {
        match &self.server_name {
            Some(name) if ServerName::try_from(name.as_str()).is_err() => {
                Err(format!("tls.server_name: {name:?} is not a valid name"))
            }
            _ => Ok(()),
        }
    }
}

/// The chain a server presented during one handshake.
pub type Presented = Arc<Mutex<Vec<CertificateDer<'static>>>>;

/// Builds the client config for one round, offering `alpn` (`http/1.1`, `dot`), and the slot
/// the presented chain lands in.
pub fn client_config(
    spec: &TlsSpec,
    alpn: &[u8],
) -> Result<(Arc<ClientConfig>, Presented), String> {
    let provider = Arc::new(ring::default_provider());
    let mut roots = RootCertStore::empty();
    if let Some(path) = &spec.ca_file {
        add_ca_file(&mut roots, path)?;
    }
    if spec.public_roots.unwrap_or(spec.ca_file.is_none()) {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    let inner = if spec.insecure_skip_verify {
        None
    } else if roots.is_empty() {
        return Err("tls: no CA to trust: set ca_file or public_roots".into());
    } else {
        Some(
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| format!("tls: {e}"))?,
        )
    };
    let presented = Presented::default();
    let verifier = Keeping {
        inner,
        algorithms: provider.signature_verification_algorithms,
        presented: presented.clone(),
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok((Arc::new(config), presented))
}

fn add_ca_file(roots: &mut RootCertStore, path: &Path) -> Result<(), String> {
    let shown = path.display();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("ca_file {shown}: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("ca_file {shown}: {e}"))?;
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("ca_file {shown}: no usable certificate"));
    }
    Ok(())
}

/// The SNI name: `server_name` when set, else `host`. For an address, rustls sends no SNI and
/// webpki verifies the certificate's IP SANs.
pub fn server_name(spec: &TlsSpec, host: &str) -> Result<ServerName<'static>, String> {
    let name = spec.server_name.as_deref().unwrap_or(host);
    ServerName::try_from(name.to_owned()).map_err(|e| format!("tls server name {name:?}: {e}"))
}

/// Verifies with webpki (or not at all when `inner` is `None`), after keeping the chain.
#[derive(Debug)]
struct Keeping {
    inner: Option<Arc<WebPkiServerVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
    presented: Presented,
}

impl ServerCertVerifier for Keeping {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        {
            let mut kept = self.presented.lock().unwrap_or_else(|p| p.into_inner());
            kept.clear();
            kept.push(end_entity.clone().into_owned());
            kept.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        }
        match &self.inner {
            Some(inner) => {
                inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// `TLS 1.3`, as blackbox_exporter's `probe_tls_version_info` says it.
pub fn version_name(version: rustls::ProtocolVersion) -> String {
    match version {
        rustls::ProtocolVersion::TLSv1_2 => "TLS 1.2".to_owned(),
        rustls::ProtocolVersion::TLSv1_3 => "TLS 1.3".to_owned(),
        other => format!("{other:?}"),
    }
}

/// The typed reason of a failed handshake.
pub fn classify(error: &std::io::Error) -> Reason {
    let Some(tls) = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    else {
        return match Reason::of_io(error) {
            Reason::Error => Reason::TlsHandshake,
            other => other,
        };
    };
    match tls {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                Reason::TlsUntrusted
            }
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => Reason::TlsExpired,
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                Reason::TlsNameMismatch
            }
            _ => Reason::TlsHandshake,
        },
        _ => Reason::TlsHandshake,
    }
}

/// The reason of a failed handshake and what to say of it: the error, then the certificate the
/// server presented, when it got that far.
pub fn failed(error: &std::io::Error, presented: &Presented) -> (Reason, String) {
    let chain = presented.lock().unwrap_or_else(|p| p.into_inner());
    let seen = chain
        .first()
        .and_then(|der| CertInfo::parse(der))
        .map(|c| format!("; {}", c.describe()))
        .unwrap_or_default();
    (classify(error), format!("{error}{seen}"))
}

/// What a failure detail says of a certificate: subject, issuer, names and validity.
#[derive(Debug, Clone, PartialEq)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    pub names: Vec<String>,
    pub not_before: i64,
    pub not_after: i64,
}

impl CertInfo {
    pub fn parse(der: &[u8]) -> Option<CertInfo> {
        use x509_parser::extensions::GeneralName;
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let names = match cert.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::DNSName(dns) => Some((*dns).to_owned()),
                    GeneralName::IPAddress(raw) => ip_text(raw),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        Some(CertInfo {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            names,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
        })
    }

    /// `subject "CN=a" issued by "CN=lab CA", names [a], valid until 2027-01-01T00:00:00Z`.
    pub fn describe(&self) -> String {
        format!(
            "certificate {:?} issued by {:?}, names [{}], valid {} to {}",
            self.subject,
            self.issuer,
            self.names.join(", "),
            timestamp(self.not_before),
            timestamp(self.not_after),
        )
    }
}

/// What a refused certificate has wrong, as the diagnoses name it: the certificate of the chain
/// at fault and the one fact that faults it.
#[derive(Debug, Clone, PartialEq)]
pub enum CertProblem {
    Expired {
        subject: String,
        not_after: i64,
    },
    /// Usually the node's clock rather than the certificate.
    NotYetValid {
        subject: String,
        not_before: i64,
    },
    Untrusted {
        subject: String,
        issuer: String,
    },
    NameMismatch {
        asked: String,
        names: Vec<String>,
    },
}

impl CertProblem {
    /// The problem behind `reason` in the presented `chain`, checked at Unix time `now` for the
    /// name `asked`; `None` for other reasons, or when no certificate of the chain parses.
    pub fn of(reason: Reason, chain: &[CertificateDer<'_>], asked: &str, now: i64) -> Option<Self> {
        let certs: Vec<CertInfo> = chain
            .iter()
            .filter_map(|der| CertInfo::parse(der))
            .collect();
        CertProblem::in_chain(reason, &certs, asked, now)
    }

    fn in_chain(reason: Reason, certs: &[CertInfo], asked: &str, now: i64) -> Option<Self> {
        let leaf = certs.first()?;
        Some(match reason {
            // Any certificate of the chain may be the one out of date, an intermediate too.
            Reason::TlsExpired => match certs.iter().find(|c| c.not_before > now) {
                Some(c) if certs.iter().all(|c| c.not_after >= now) => CertProblem::NotYetValid {
                    subject: c.subject.clone(),
                    not_before: c.not_before,
                },
                _ => {
                    let c = certs.iter().min_by_key(|c| c.not_after).unwrap_or(leaf);
                    CertProblem::Expired {
                        subject: c.subject.clone(),
                        not_after: c.not_after,
                    }
                }
            },
            // The top of the presented chain names the issuer that is not trusted.
            Reason::TlsUntrusted => {
                let top = certs.last().unwrap_or(leaf);
                CertProblem::Untrusted {
                    subject: top.subject.clone(),
                    issuer: top.issuer.clone(),
                }
            }
            Reason::TlsNameMismatch => CertProblem::NameMismatch {
                asked: asked.to_owned(),
                names: leaf.names.clone(),
            },
            _ => return None,
        })
    }
}

impl std::fmt::Display for CertProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CertProblem::Expired { subject, not_after } => {
                write!(
                    f,
                    "certificate {subject:?} expired {}",
                    timestamp(*not_after)
                )
            }
            CertProblem::NotYetValid {
                subject,
                not_before,
            } => write!(
                f,
                "certificate {subject:?} is not valid before {} (is the node's clock right?)",
                timestamp(*not_before)
            ),
            CertProblem::Untrusted { subject, issuer } => write!(
                f,
                "certificate {subject:?} is issued by {issuer:?}, which no trusted CA vouches for"
            ),
            CertProblem::NameMismatch { asked, names } => {
                write!(f, "certificate names [{}], not {asked}", names.join(", "))
            }
        }
    }
}

fn ip_text(raw: &[u8]) -> Option<String> {
    match raw.len() {
        4 => Some(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(raw).ok()?).to_string()),
        16 => Some(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(raw).ok()?).to_string()),
        _ => None,
    }
}

fn timestamp(secs: i64) -> String {
    let time = std::time::UNIX_EPOCH
        + std::time::Duration::from_secs(u64::try_from(secs).unwrap_or_default());
    humantime::format_rfc3339_seconds(time).to_string()
}

/// The earliest notAfter of a chain, as Unix seconds.
pub fn earliest_expiry(chain: &[CertificateDer<'_>]) -> Option<i64> {
    chain
        .iter()
        .filter_map(|der| CertInfo::parse(der))
        .map(|info| info.not_after)
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    fn wrapped(e: rustls::Error) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }

    #[test]
    fn certificate_errors_are_typed() {
        let cert = |c| classify(&wrapped(rustls::Error::InvalidCertificate(c)));
        assert_eq!(cert(CertificateError::UnknownIssuer), Reason::TlsUntrusted);
        assert_eq!(cert(CertificateError::Expired), Reason::TlsExpired);
        assert_eq!(cert(CertificateError::NotValidYet), Reason::TlsExpired);
        assert_eq!(
            cert(CertificateError::NotValidForName),
            Reason::TlsNameMismatch
        );
        assert_eq!(cert(CertificateError::Revoked), Reason::TlsHandshake);
        assert_eq!(
            classify(&wrapped(rustls::Error::HandshakeNotComplete)),
            Reason::TlsHandshake
        );
        assert_eq!(
            classify(&io::Error::from_raw_os_error(libc::ECONNRESET)),
            Reason::Reset
        );
        assert_eq!(
            classify(&io::Error::from(io::ErrorKind::UnexpectedEof)),
            Reason::TlsHandshake
        );
    }

    fn cert(subject: &str, issuer: &str, valid: (i64, i64)) -> CertInfo {
        CertInfo {
            subject: subject.into(),
            issuer: issuer.into(),
            names: vec!["other.corp.example".into(), "198.19.10.1".into()],
            not_before: valid.0,
            not_after: valid.1,
        }
    }

    /// 2021-01-01T00:00:00Z and a year on.
    const Y2021: i64 = 1_609_459_200;
    const Y2022: i64 = 1_640_995_200;

    #[test]
    fn a_refused_certificate_names_what_is_wrong_with_it() {
        let problem = |reason, certs: &[CertInfo], now| {
            CertProblem::in_chain(reason, certs, "api.corp.example", now).map(|p| p.to_string())
        };
        let leaf = cert("CN=api", "CN=issuing CA", (Y2021, Y2022));
        let intermediate = cert("CN=issuing CA", "CN=root CA", (0, Y2021 + 86_400));
        let chain = [leaf.clone(), intermediate];
        assert_eq!(
            problem(Reason::TlsExpired, &chain[..1], Y2022 + 1).as_deref(),
            Some(r#"certificate "CN=api" expired 2022-01-01T00:00:00Z"#)
        );
        assert_eq!(
            problem(Reason::TlsExpired, &chain, Y2021 + 2 * 86_400).as_deref(),
            Some(r#"certificate "CN=issuing CA" expired 2021-01-02T00:00:00Z"#),
            "the intermediate that expired, not the leaf"
        );
        assert_eq!(
            problem(Reason::TlsExpired, &chain[..1], Y2021 - 1).as_deref(),
            Some(
                r#"certificate "CN=api" is not valid before 2021-01-01T00:00:00Z (is the node's clock right?)"#
            )
        );
        assert_eq!(
            problem(Reason::TlsUntrusted, &chain, Y2021).as_deref(),
            Some(
                r#"certificate "CN=issuing CA" is issued by "CN=root CA", which no trusted CA vouches for"#
            ),
            "the top of the chain names the unknown issuer"
        );
        assert_eq!(
            problem(Reason::TlsNameMismatch, &chain, Y2021).as_deref(),
            Some("certificate names [other.corp.example, 198.19.10.1], not api.corp.example")
        );
        assert_eq!(problem(Reason::TlsHandshake, &chain, Y2021), None);
        assert_eq!(problem(Reason::TlsExpired, &[], Y2021), None);
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let spec = TlsSpec {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..TlsSpec::default()
        };
        let err = client_config(&spec, b"dot").unwrap_err();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn configs_build_with_public_roots_or_none() {
        assert!(client_config(&TlsSpec::default(), b"http/1.1").is_ok());
        let skip = TlsSpec {
            insecure_skip_verify: true,
            public_roots: Some(false),
            ..TlsSpec::default()
        };
        assert!(client_config(&skip, b"dot").is_ok());
    }

    #[test]
    fn server_names() {
        let spec = TlsSpec::default();
        assert!(server_name(&spec, "api.corp.example").is_ok());
        assert!(server_name(&spec, "198.19.10.1").is_ok());
        let bad = TlsSpec {
            server_name: Some("bad name".into()),
            ..TlsSpec::default()
        };
        assert!(server_name(&bad, "x").is_err());
    }
}
