//! Errors of the HTTP API: each maps to a status code and a message a user can act on.

use crate::release::ReleaseError;
use crate::resolve::ResolveError;
use crate::store::StoreError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use slipway_proto::api::ErrorBody;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    /// The request was well-formed but names something unusable (invalid spec, missing image).
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    Conflict(String),
    /// A dependency (the registry) is down.
    #[error("{0}")]
    Upstream(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::SeqTaken { .. } | StoreError::TokenExists(_) => {
                ApiError::Conflict(e.to_string())
            }
            other => {
                tracing::error!(error = %other, "store failure");
                ApiError::Internal(format!("controller store: {other}"))
            }
        }
    }
}

impl From<ResolveError> for ApiError {
    fn from(e: ResolveError) -> Self {
        match e {
            ResolveError::Unreachable { .. }
            | ResolveError::Registry { .. }
            | ResolveError::Auth { .. }
            | ResolveError::Tls { .. } => ApiError::Upstream(e.to_string()),
            ResolveError::BadReference(_) => ApiError::BadRequest(e.to_string()),
            _ => ApiError::Unprocessable(e.to_string()),
        }
    }
}

impl From<ReleaseError> for ApiError {
    fn from(e: ReleaseError) -> Self {
        use ReleaseError as E;
        match e {
            E::Store(e) => e.into(),
            E::Resolve(e) => e.into(),
            E::UnknownApp { .. } | E::NoSuchRelease { .. } | E::NoRollout { .. } => {
                ApiError::NotFound(e.to_string())
            }
            E::NoReleaseYet { .. }
            | E::NoOtherImage { .. }
            | E::RolloutRefused { .. }
            | E::RolloutBusy { .. } => ApiError::Conflict(e.to_string()),
            E::Unsignable { .. } | E::SecretNotSet { .. } => ApiError::Unprocessable(e.to_string()),
            E::CorruptRelease { .. } | E::Vanished { .. } | E::Rollout(_) => {
                ApiError::Internal(e.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = axum::Json(ErrorBody {
            error: self.to_string(),
        });
        (status, body).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::ReleaseError as E;

    #[test]
    fn release_errors_map_to_the_status_a_user_can_act_on() {
        let app = || "web".to_string();
        let cases = [
            (E::UnknownApp { app: app() }, StatusCode::NOT_FOUND),
            (
                E::NoSuchRelease {
                    app: app(),
                    seq: 9,
                    latest: 3,
                },
                StatusCode::NOT_FOUND,
            ),
            (E::NoRollout { app: app() }, StatusCode::NOT_FOUND),
            (E::NoReleaseYet { app: app() }, StatusCode::CONFLICT),
            (
                E::NoOtherImage {
                    app: app(),
                    image: "r/web@sha256:ab".into(),
                },
                StatusCode::CONFLICT,
            ),
            (
                E::RolloutBusy {
                    app: app(),
                    action: "pause",
                },
                StatusCode::CONFLICT,
            ),
            (
                E::Store(StoreError::SeqTaken { app: app(), seq: 2 }),
                StatusCode::CONFLICT,
            ),
            (
                E::Unsignable {
                    app: app(),
                    seq: 2,
                    source: crate::signer::SignError::ZeroSeq,
                },
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                E::Resolve(ResolveError::BadReference("x".into())),
                StatusCode::BAD_REQUEST,
            ),
            (
                E::Vanished { app: app(), seq: 2 },
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ];
        for (e, status) in cases {
            let message = e.to_string();
            let api = ApiError::from(e);
            assert_eq!(api.status(), status, "{message}");
            assert_eq!(
                api.to_string(),
                message,
                "the message reaches the user as is"
            );
        }
    }
}
