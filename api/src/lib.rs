//! The k8or intake API (axum): the seed's static data, users and image UIDs, streamed job
//! submission into the temporary bucket and the validate queue, job status, dead letters,
//! health and metrics — every route in one OpenAPI document.

pub mod auth;
mod data_url;
mod docs;
mod envelope;
pub mod error;
mod extract;
mod intake;
mod post_author;
mod quota;
mod request_id;
pub mod routes;
pub mod secret;
pub mod startup;
mod state;
mod telemetry;
mod temp_image;
mod uid;
pub mod views;

pub use auth::{Claims, Role, TokenKeys};
pub use error::{ApiError, ErrorBody};
pub use startup::{Application, StartError};
