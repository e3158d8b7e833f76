//! How a site's Kafka clients encrypt and authenticate: TLS (with the brokers' CA, and this
//! site's certificate for mutual TLS) and SASL over it, passed to librdkafka (built with
//! OpenSSL). Every producer, reader, watermark reader and admin client of a site uses the same.
//!
//! ```toml
//! [log.security]
//! protocol = "ssl"                 # or "sasl_ssl"; "plaintext" needs allow_plaintext
//! ca_file = "tls/kafka-ca.pem"     # the brokers' CA (default: the system's)
//! cert_file = "tls/cloud-b-kafka.pem"   # mutual TLS: this site's certificate...
//! key_file = "tls/cloud-b-kafka.key"    # ...and key
//! # sasl_mechanism = "SCRAM-SHA-512"; sasl_username = "cloud-b"
//! # sasl_password_file = "secrets/kafka-password"
//! ```

use std::path::{Path, PathBuf};

use rdkafka::config::ClientConfig;
use serde::{Deserialize, Serialize};

/// librdkafka's `security.protocol`, as far as this product uses it: SASL only over TLS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KafkaProtocol {
    /// No encryption: development, or a cluster inside one trusted network only.
    #[default]
    Plaintext,
    /// TLS; mutual TLS with `cert_file` and `key_file`.
    Ssl,
    /// SASL over TLS.
    SaslSsl,
}

/// A site's Kafka security settings (relative paths are the node config's).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSecurity {
    pub protocol: KafkaProtocol,
    /// The CA certificates (PEM) the brokers' certificates are checked against; the
    /// system's when absent. Brokers' host names are checked too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// This site's client certificate (PEM), for mutual TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// Its private key (PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// `SCRAM-SHA-512`, `SCRAM-SHA-256` or `PLAIN` (with `sasl_ssl`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sasl_mechanism: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sasl_username: Option<String>,
    /// A file holding the SASL password (read when a client is made; never in the config).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sasl_password_file: Option<PathBuf>,
}

impl KafkaSecurity {
    /// Whether the connections are encrypted.
    pub fn encrypted(&self) -> bool {
        self.protocol != KafkaProtocol::Plaintext
    }

    /// Why these settings cannot work, checked before any client is made: a file that
    /// cannot be read, a certificate without its key, SASL without TLS or without its
    /// mechanism, user and password.
    pub fn check(&self) -> Result<(), String> {
        let files = [&self.ca_file, &self.cert_file, &self.key_file];
        for path in files
            .into_iter()
            .chain([&self.sasl_password_file])
            .flatten()
        {
            std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err("cert_file and key_file go together (mutual TLS)".into());
        }
        let sasl = [
            self.sasl_mechanism.is_some(),
            self.sasl_username.is_some(),
            self.sasl_password_file.is_some(),
        ];
        match self.protocol {
            KafkaProtocol::SaslSsl if sasl.contains(&false) => {
                Err("sasl_ssl needs sasl_mechanism, sasl_username and sasl_password_file".into())
            }
            KafkaProtocol::Plaintext | KafkaProtocol::Ssl if sasl.contains(&true) => {
                Err("SASL settings need protocol = \"sasl_ssl\"".into())
            }
            _ => Ok(()),
        }
    }

    /// Sets these on a librdkafka client's configuration.
    pub fn apply(&self, config: &mut ClientConfig) {
        let protocol = match self.protocol {
            KafkaProtocol::Plaintext => return,
            KafkaProtocol::Ssl => "ssl",
            KafkaProtocol::SaslSsl => "sasl_ssl",
        };
        config.set("security.protocol", protocol);
        let path = |p: &Path| p.display().to_string();
        let settings = [
            ("ssl.ca.location", self.ca_file.as_deref().map(path)),
            (
                "ssl.certificate.location",
                self.cert_file.as_deref().map(path),
            ),
            ("ssl.key.location", self.key_file.as_deref().map(path)),
            ("sasl.mechanism", self.sasl_mechanism.clone()),
            ("sasl.username", self.sasl_username.clone()),
        ];
        for (name, value) in settings {
            if let Some(value) = value {
                config.set(name, value);
            }
        }
        if let Some(file) = &self.sasl_password_file {
            match std::fs::read_to_string(file) {
                Ok(password) => {
                    config.set("sasl.password", password.trim());
                }
                Err(err) => eprintln!("kafka: the SASL password file {}: {err}", file.display()),
            }
        }
    }

    /// The files these settings name, for a caller to resolve.
    pub fn paths_mut(&mut self) -> impl Iterator<Item = &mut PathBuf> {
        [
            &mut self.ca_file,
            &mut self.cert_file,
            &mut self.key_file,
            &mut self.sasl_password_file,
        ]
        .into_iter()
        .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_cannot_work_are_named_before_a_client_is_made() {
        assert_eq!(KafkaSecurity::default().check(), Ok(()));
        let half = KafkaSecurity {
            protocol: KafkaProtocol::Ssl,
            cert_file: Some("/etc/hostname".into()),
            ..KafkaSecurity::default()
        };
        assert!(half.check().unwrap_err().contains("go together"));
        let sasl = KafkaSecurity {
            protocol: KafkaProtocol::SaslSsl,
            sasl_mechanism: Some("SCRAM-SHA-512".into()),
            ..KafkaSecurity::default()
        };
        assert!(sasl.check().unwrap_err().contains("sasl_username"));
        let missing = KafkaSecurity {
            protocol: KafkaProtocol::Ssl,
            ca_file: Some("/no/such/ca.pem".into()),
            ..KafkaSecurity::default()
        };
        assert!(missing.check().unwrap_err().starts_with("/no/such/ca.pem"));
    }
}
