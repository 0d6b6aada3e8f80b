//! k8or upload pipeline core: the seed's payloads, PIDs, the job model, settings and the
//! storage ports with their adapters. The API and the workers build on this crate.

pub mod audit;
pub mod bootstrap;
pub mod config;
pub mod context;
pub mod digest;
pub mod job;
pub mod jobs;
pub mod model;
pub mod pid;
pub mod store;
pub mod time;

pub use config::{Backend, Settings};
pub use context::Context;
pub use job::{JobEnvelope, JobRecord, JobStatus, Stage};
pub use pid::Pid;
