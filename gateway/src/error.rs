//! The gateway's errors.

/// A medium the gateway cannot take or write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    /// The bytes end before the structure does.
    #[error("{0} is cut short")]
    Truncated(&'static str),
    /// The bytes are not what they claim to be.
    #[error("invalid media: {0}")]
    Invalid(String),
    /// A valid medium this gateway does not take (it does not re-encode).
    #[error("unsupported media: {0}")]
    Unsupported(String),
}

/// Why a push to the edge failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The edge refused the request (4xx): retrying will not help.
    #[error("the edge refused {file} with {status}: {reason}")]
    Refused {
        /// The file pushed.
        file: String,
        /// The HTTP status.
        status: u16,
        /// The edge's message.
        reason: String,
    },
    /// Every attempt failed with a 5xx or a network error.
    #[error("the edge did not take {file} after {attempts} attempts: {last}")]
    GaveUp {
        /// The file pushed.
        file: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listen address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address.
        address: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    /// A setting is wrong.
    #[error("invalid setting: {0}")]
    Config(String),
    /// The RTMPS certificate or key is missing, unreadable or unusable.
    #[error("RTMPS: {0}")]
    Tls(#[from] TlsError),
}

/// Why the RTMPS (TLS) listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file is not the PEM expected.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the certificate chain or key (malformed DER, a key of the wrong kind).
    #[error("the TLS certificate or key cannot be used: {0}")]
    Config(String),
}
