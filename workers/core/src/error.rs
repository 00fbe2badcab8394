//! The error model: [`StoreError`] for everything a storage port can report, [`ApiError`] for
//! everything a request can end with. Only [`ApiError`] knows about HTTP status codes; it is
//! rendered as `{"error":{"code","message"}}` at the edge of the router.

use http::StatusCode;
use serde_json::json;

/// An error reported by a storage port (KV, SQL, blobs, live rooms, jobs). Host errors are
/// converted into it by the host adapters.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    /// The addressed item does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The item exists already and the operation required it not to.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// A precondition of the operation (a version, a state) did not hold.
    #[error("precondition failed: {0}")]
    Precondition(String),
    /// The backend failed; `backend` names it (`kv`, `d1`, `r2`, ...).
    #[error("{backend} failed: {message}")]
    Backend {
        /// Which backend failed.
        backend: &'static str,
        /// What it said.
        message: String,
    },
}

impl StoreError {
    /// A [`StoreError::Backend`] for `backend` with the display text of `err`.
    pub fn backend(backend: &'static str, err: impl std::fmt::Display) -> Self {
        StoreError::Backend {
            backend,
            message: err.to_string(),
        }
    }
}

/// Why a mail was not handed to the mail server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MailError {
    /// No mail server is configured (`SMTP_URL`).
    #[error("no mail server is configured")]
    NotConfigured,
    /// The server could not be reached or the connection broke.
    #[error("mail server connection: {0}")]
    Connection(String),
    /// The server answered a step with an error reply.
    #[error("mail server refused {step}: {code} {message}")]
    Refused {
        /// The step (`MAIL FROM`, `RCPT TO`, ...).
        step: &'static str,
        /// The reply code.
        code: u16,
        /// The reply text.
        message: String,
    },
    /// The server's replies did not follow the protocol.
    #[error("mail server protocol: {0}")]
    Protocol(String),
}

/// The outcome of a failed request, mapped to a status code and a stable snake_case code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// 400: the input is malformed; `code` says which rule it broke.
    #[error("{message}")]
    BadRequest {
        /// Stable machine-readable code.
        code: &'static str,
        /// Human-readable explanation.
        message: String,
    },
    /// 401: no credentials, or credentials that do not verify.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: valid credentials without the right to do this.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such route or resource.
    #[error("{0}")]
    NotFound(String),
    /// 405: the path exists but not with this method; carries the allowed methods.
    #[error("method not allowed")]
    MethodNotAllowed(Vec<http::Method>),
    /// 409: the request conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// 413: the body is larger than allowed.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 415: a body of a type the route does not take (JSON routes take JSON only).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: well-formed but invalid content (for example media that is not MPEG-TS).
    #[error("{message}")]
    Unprocessable {
        /// Stable machine-readable code.
        code: &'static str,
        /// Human-readable explanation.
        message: String,
    },
    /// 416: the requested byte range is outside the object; carries the object's size.
    #[error("range not satisfiable")]
    RangeNotSatisfiable(u64),
    /// 429: a rate limit was hit.
    #[error("{0}")]
    TooManyRequests(String),
    /// 403 with its own code: valid credentials of an account that may not do this yet (for
    /// example `email_unverified`).
    #[error("{message}")]
    Refused {
        /// Stable machine-readable code.
        code: &'static str,
        /// Human-readable explanation.
        message: String,
    },
    /// 503: the deployment is misconfigured (missing binding, unsafe secret).
    #[error("{0}")]
    Misconfigured(String),
    /// 503 with its own code: a service the request needs (the mail server) did not answer;
    /// the request can be repeated.
    #[error("{message}")]
    Unavailable {
        /// Stable machine-readable code.
        code: &'static str,
        /// Human-readable explanation.
        message: String,
        /// What the service said, for the operator's log (not the client).
        detail: String,
    },
    /// 500: a real fault in a backend or in our code.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// A 400 with the given code and message.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::Refused { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RangeNotSatisfiable(_) => StatusCode::RANGE_NOT_SATISFIABLE,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Misconfigured(_) | ApiError::Unavailable { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable snake_case code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. }
            | ApiError::Unprocessable { code, .. }
            | ApiError::Refused { code, .. }
            | ApiError::Unavailable { code, .. } => code,
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::RangeNotSatisfiable(_) => "range_not_satisfiable",
            ApiError::TooManyRequests(_) => "rate_limited",
            ApiError::Misconfigured(_) => "misconfigured",
            ApiError::Internal(_) => "internal",
        }
    }

    /// The JSON body `{"error":{"code","message"}}` of this error. A 500's message is
    /// generic: backend text (SQL errors, bindings, upstream answers) is for the operator's
    /// log ([`crate::api::InternalError`]), not for clients.
    pub fn body(&self) -> serde_json::Value {
        let message = match self {
            ApiError::Internal(_) => INTERNAL_MESSAGE.to_owned(),
            other => other.to_string(),
        };
        json!({ "error": { "code": self.code(), "message": message } })
    }
}

/// What a client is told of a 500.
pub const INTERNAL_MESSAGE: &str = "an internal error occurred; it has been logged";

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(what) => ApiError::NotFound(format!("not found: {what}")),
            StoreError::AlreadyExists(what) => {
                ApiError::Conflict(format!("already exists: {what}"))
            }
            StoreError::Precondition(what) => ApiError::Conflict(what),
            StoreError::Backend { .. } => ApiError::Internal(err.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_500_tells_the_client_nothing_of_the_backend() {
        let err = ApiError::from(StoreError::backend(
            "d1",
            "SQLITE_ERROR near users.password",
        ));
        assert_eq!(err.status().as_u16(), 500);
        let body = err.body().to_string();
        assert!(!body.contains("SQLITE") && !body.contains("d1"), "{body}");
        assert!(body.contains(INTERNAL_MESSAGE));
        assert!(
            err.to_string().contains("SQLITE_ERROR"),
            "the log keeps the detail"
        );
    }

    #[test]
    fn store_errors_map_to_fitting_statuses() {
        let cases = [
            (StoreError::NotFound("x".into()), 404),
            (StoreError::AlreadyExists("x".into()), 409),
            (StoreError::Precondition("x".into()), 409),
            (StoreError::backend("d1", "boom"), 500),
        ];
        for (store, status) in cases {
            assert_eq!(ApiError::from(store).status().as_u16(), status);
        }
    }

    #[test]
    fn body_has_code_and_message() {
        let err = ApiError::bad_request("invalid_json", "expected value at line 1");
        assert_eq!(
            err.body(),
            json!({"error": {"code": "invalid_json", "message": "expected value at line 1"}})
        );
    }
}
