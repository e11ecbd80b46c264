#![doc = include_str!("../README.md")]

pub mod body;
mod builder;
mod bulk;
pub mod cloudflare;
#[cfg(feature = "emulator")]
pub mod emulator;
pub mod error;
pub mod fastly;
pub mod http;
mod keys;
mod paging;
pub mod policy;
pub mod transport;

pub use body::{Body, ValueStream};
pub use error::{Error, Provider};
pub use transport::Credential;

/// reqwest 0.13 is a public dependency: its `Client`, `Body` and errors appear in this API.
pub use reqwest;
