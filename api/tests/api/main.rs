//! Integration tests of the intake API: the real application on port 0, on the embedded
//! backend in a fresh temporary data folder per test.

mod auth;
mod dlq;
mod health;
mod helpers;
mod openapi;
mod static_data;
mod status;
mod submit;
mod uids;
