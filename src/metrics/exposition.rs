//! A rendering of `/metrics`, shared by concurrent scrapes without a copy.

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;

/// A rendering of every series, shared without copying by the scrapes that asked for it. It
/// reads as a `str` and is an HTTP response body.
#[derive(Clone, Debug)]
pub struct Exposition(pub(super) Arc<String>);

impl std::ops::Deref for Exposition {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Exposition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Lends the shared text to a response body without copying it.
struct Shared(Arc<String>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl IntoResponse for Exposition {
    fn into_response(self) -> Response {
        Bytes::from_owner(Shared(self.0)).into_response()
    }
}
