//! The sidecar's HTTP client trusts the system's CA store as rustls-native-certs
//! reads it, so `SSL_CERT_FILE` adds a private CA (a company TLS proxy, a
//! self-hosted endpoint); the webpki roots stay trusted besides.
//!
//! One test in this binary: it sets `SSL_CERT_FILE` for the whole process.

use std::sync::Arc;

use paastis_sidecar::scalingo::{
    RetryPolicy, ScalingoClient, ScalingoConfig, ScalingoError, ScalingoTuning, Url,
};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// A private CA and a certificate it signed for 127.0.0.1.
struct Pki {
    ca_pem: String,
    server_cert: CertificateDer<'static>,
    server_key: PrivateKeyDer<'static>,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "paastis test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca.self_signed(&ca_key).expect("CA certificate");
    let server_key = KeyPair::generate().expect("server key");
    let server = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("server params")
        .signed_by(&server_key, &ca, &ca_key)
        .expect("server certificate");
    Pki {
        ca_pem: ca.pem(),
        server_cert: server.der().clone(),
        server_key: PrivatePkcs8KeyDer::from(server_key.serialize_der()).into(),
    }
}

/// An HTTPS server on 127.0.0.1 answering the token exchange and an empty
/// region list, one request per connection. Returns its base URL.
async fn serve(pki: &Pki) -> Url {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![pki.server_cert.clone()], pki.server_key.clone_key())
        .expect("server TLS config");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // An untrusting client aborts the handshake: nothing to answer.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&request);
                let body = if head.starts_with("POST /v1/tokens/exchange") {
                    r#"{"token":"jwt"}"#
                } else {
                    r#"{"regions":[]}"#
                };
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    Url::parse(&format!("https://{addr}")).expect("server URL")
}

fn client(auth_url: &Url) -> ScalingoClient {
    let mut config = ScalingoConfig::new("tk-us-tls");
    config.auth_url = auth_url.clone();
    // A refused certificate fails the connection, which is retried: briefly here.
    let tuning = ScalingoTuning {
        retry: RetryPolicy {
            attempts: 2,
            base_delay: std::time::Duration::from_millis(10),
            max_delay: std::time::Duration::from_millis(10),
        },
        ..ScalingoTuning::default()
    };
    ScalingoClient::with_tuning(config, tuning).expect("client")
}

#[tokio::test]
async fn ssl_cert_file_adds_a_trusted_ca() {
    let pki = pki();
    let url = serve(&pki).await;

    // The private CA is not trusted by default.
    std::env::remove_var("SSL_CERT_FILE");
    match client(&url).regions().await {
        Err(ScalingoError::Transport(message)) => {
            assert!(message.to_lowercase().contains("certificate"), "{message}")
        }
        other => panic!("expected a TLS failure, got {other:?}"),
    }

    let dir = tempfile::tempdir().expect("temporary directory");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).expect("write the CA");
    std::env::set_var("SSL_CERT_FILE", &ca_file);
    assert_eq!(client(&url).regions().await, Ok(vec![]));
}
