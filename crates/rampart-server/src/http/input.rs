//! JSON request bodies: the content type, size, depth and shape checks of
//! `rampart_protect::input::ApiJson`, re-exported for the routes.

pub use rampart_protect::input::ApiJson;
