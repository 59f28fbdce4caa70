//! The proxy's own answers: short plain-text pages that never name a container or address.

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use crate::http::ProxyBody;

/// A short plain-text answer.
pub(crate) fn local(status: StatusCode, msg: impl Into<Bytes>) -> Response<ProxyBody> {
    let mut r = Response::new(Either::Right(Full::new(msg.into())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// No app is routed for this host (and path) on a shared listener.
pub(crate) fn unknown_host() -> Response<ProxyBody> {
    local(
        StatusCode::NOT_FOUND,
        "404 Not Found: no site is served at this address\n",
    )
}

/// The upstream could not be reached or failed mid-answer.
pub(crate) fn bad_gateway() -> Response<ProxyBody> {
    local(
        StatusCode::BAD_GATEWAY,
        "502 Bad Gateway: the app did not answer\n",
    )
}

/// The upstream did not send its response headers in time.
pub(crate) fn gateway_timeout() -> Response<ProxyBody> {
    local(
        StatusCode::GATEWAY_TIMEOUT,
        "504 Gateway Timeout: the app took too long to answer\n",
    )
}

/// A permanent redirect (308 keeps the method and body) to `location`.
pub(crate) fn redirect(location: HeaderValue) -> Response<ProxyBody> {
    let mut r = local(StatusCode::PERMANENT_REDIRECT, "Moved to HTTPS\n");
    r.headers_mut().insert(header::LOCATION, location);
    r
}

/// The request body is larger than the configured maximum.
pub(crate) fn payload_too_large() -> Response<ProxyBody> {
    let mut r = local(
        StatusCode::PAYLOAD_TOO_LARGE,
        "413 Content Too Large: the request body is over this site's limit\n",
    );
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// The app is stopped for maintenance: the operator's page.
pub(crate) fn stopped(page: String) -> Response<ProxyBody> {
    let page = if page.is_empty() {
        "503 Service Unavailable: down for maintenance\n".to_owned()
    } else {
        page
    };
    local(StatusCode::SERVICE_UNAVAILABLE, page)
}

/// The app stayed paused longer than the request may wait.
pub(crate) fn paused_too_long() -> Response<ProxyBody> {
    local(
        StatusCode::SERVICE_UNAVAILABLE,
        "503 Service Unavailable: the app is paused; try again shortly\n",
    )
}
