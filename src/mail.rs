//! Outgoing e-mail (the sign-up codes) behind a small [`Mailer`] trait: SMTP through lettre
//! when `smtp_host` is configured; otherwise each message goes to the log under an
//! unmistakable `DEV MAIL` marker, so a newcomer can finish a sign-up with no mail server.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use thiserror::Error;

use crate::config::Config;

/// An SMTP exchange that takes longer than this fails instead of holding the request.
const SMTP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum MailError {
    #[error("bad mail configuration: {0}")]
    Config(String),
    #[error("cannot build the message: {0}")]
    Message(String),
    #[error("smtp: {0}")]
    Smtp(String),
}

/// One plain-text message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
    /// The one-time code the message carries, for the development log line.
    pub code: Option<String>,
}

#[async_trait]
pub trait Mailer: Send + Sync + 'static {
    async fn send(&self, mail: &Mail) -> Result<(), MailError>;
}

/// The sign-up code e-mail.
pub fn verification_mail(to: &str, name: &str, code: &str) -> Mail {
    let minutes = crate::domain::accounts::OTP_TTL.as_secs() / 60;
    Mail {
        to: to.to_owned(),
        subject: format!("Your drawbridge code: {code}"),
        body: format!(
            "Hello {name},\n\nyour verification code is\n\n    {code}\n\nIt is valid for {minutes} \
             minutes. If you did not sign up for drawbridge, ignore this message.\n"
        ),
        code: Some(code.to_owned()),
    }
}

/// The password-reset code e-mail.
pub fn reset_mail(to: &str, name: &str, code: &str) -> Mail {
    let minutes = crate::domain::accounts::OTP_TTL.as_secs() / 60;
    Mail {
        to: to.to_owned(),
        subject: format!("Your drawbridge password reset code: {code}"),
        body: format!(
            "Hello {name},\n\nyour code to set a new password is\n\n    {code}\n\nIt is valid for \
             {minutes} minutes. If you did not ask for it, ignore this message: your password \
             stays as it is.\n"
        ),
        code: Some(code.to_owned()),
    }
}

/// The mailer the configuration asks for.
pub fn from_config(config: &Config) -> Result<Arc<dyn Mailer>, MailError> {
    if config.smtp_host.is_empty() {
        tracing::warn!(
            "no smtp_host configured: verification codes are written to this log (DEV MAIL), \
             not e-mailed. Set DRAWBRIDGE_SMTP_HOST for anything but local use."
        );
        return Ok(Arc::new(LogMailer));
    }
    Ok(Arc::new(SmtpMailer::new(config)?))
}

/// Sends through one SMTP relay, reusing connections (lettre's pool).
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpMailer {
    pub fn new(config: &Config) -> Result<Self, MailError> {
        let host = config.smtp_host.as_str();
        let builder = match config.smtp_tls.as_str() {
            "none" => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
            "starttls" => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
                .map_err(|e| MailError::Config(e.to_string()))?,
            "tls" => AsyncSmtpTransport::<Tokio1Executor>::relay(host)
                .map_err(|e| MailError::Config(e.to_string()))?,
            other => return Err(MailError::Config(format!("unknown smtp_tls {other:?}"))),
        };
        let mut builder = builder.port(config.smtp_port).timeout(Some(SMTP_TIMEOUT));
        if !config.smtp_user.is_empty() {
            builder = builder.credentials(Credentials::new(
                config.smtp_user.clone(),
                config.smtp_password.clone(),
            ));
        }
        let from = config
            .smtp_from
            .parse()
            .map_err(|e| MailError::Config(format!("smtp_from: {e}")))?;
        Ok(Self {
            transport: builder.build(),
            from,
        })
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        let to: Mailbox = mail
            .to
            .parse()
            .map_err(|e| MailError::Message(format!("recipient: {e}")))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(&mail.subject)
            .header(ContentType::TEXT_PLAIN)
            .body(mail.body.clone())
            .map_err(|e| MailError::Message(e.to_string()))?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| MailError::Smtp(e.to_string()))
    }
}

/// Development stand-in: writes what would have been sent to the log.
pub struct LogMailer;

#[async_trait]
impl Mailer for LogMailer {
    async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        match &mail.code {
            Some(code) => tracing::warn!(
                "DEV MAIL (no SMTP configured): verification code for {} is {code}",
                mail.to
            ),
            None => tracing::warn!(
                "DEV MAIL (no SMTP configured): to {}: {}",
                mail.to,
                mail.subject
            ),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_mail_names_the_code_and_its_lifetime() {
        let mail = verification_mail("a@b.io", "Ann", "012345");
        assert!(mail.subject.contains("012345"));
        assert!(mail.body.contains("012345") && mail.body.contains("10 minutes"));
        assert_eq!(mail.code.as_deref(), Some("012345"));
    }

    #[test]
    fn without_smtp_the_code_goes_to_the_log_under_a_marker() {
        #[derive(Clone, Default)]
        struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Captured {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().expect("lock").extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let mailer = from_config(&Config::default()).expect("mailer");
            futures::executor::block_on(mailer.send(&verification_mail("a@b.io", "A", "123456")))
                .expect("logged");
        });
        let log = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf8");
        assert!(
            log.contains("DEV MAIL (no SMTP configured): verification code for a@b.io is 123456"),
            "{log}"
        );
    }

    #[tokio::test]
    async fn every_tls_mode_builds() {
        for tls in ["none", "starttls", "tls"] {
            let config = Config {
                smtp_host: "mail.example.com".into(),
                smtp_tls: tls.into(),
                smtp_user: "u".into(),
                smtp_password: "p".into(),
                ..Config::default()
            };
            assert!(SmtpMailer::new(&config).is_ok(), "{tls}");
        }
    }
}
