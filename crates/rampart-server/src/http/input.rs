//! Request input for the routes: JSON bodies (the content type, size, depth and shape checks of
//! `rampart_protect::input::ApiJson`, re-exported) and path parameters ([`PathParam`]).

pub use rampart_protect::input::ApiJson;

/// One path parameter as text. Like axum's `Path<String>`, but a segment that does not
/// decode to UTF-8 (`/api/keys/%ff`) is answered 400 `invalid_request` in the shared error
/// shape instead of the framework's plain-text rejection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathParam(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PathParam {
    type Rejection = crate::error::ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<String>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(_) => Err(crate::error::ApiError::invalid_request(
                "a path parameter is not valid UTF-8 text",
            )),
        }
    }
}
