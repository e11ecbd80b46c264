#![doc = include_str!("../README.md")]

/// Builder methods for the public fields of a `#[non_exhaustive]` options struct, which callers
/// outside the crate cannot build with struct-update syntax (E0639): one `field(value) -> Self`
/// method per field, documented like the field.
macro_rules! setters {
    ($type:ty { $( $(#[$doc:meta])* $field:ident : $value:ty ),* $(,)? }) => {
        impl $type {
            $(
                $(#[$doc])*
                pub fn $field(mut self, $field: $value) -> Self {
                    self.$field = $field;
                    self
                }
            )*
        }
    };
}

pub mod body;
mod builder;
mod bulk;
pub mod cloudflare;
#[cfg(feature = "emulator")]
pub mod emulator;
pub mod error;
pub mod fastly;
pub mod http;
#[cfg(any(feature = "emulator", feature = "transfer"))]
mod journal;
mod keys;
pub mod kv;
mod paging;
pub mod policy;
#[cfg(feature = "transfer")]
pub mod transfer;
pub mod transport;

pub use body::{Body, ValueStream};
pub use bulk::{BulkReport, FailedKey, Failure};
pub use error::{Error, Provider};
pub use transport::{Answer, Credential, WithAnswer, WithAnswerFuture};

/// reqwest 0.13 is a public dependency: its `Client`, `Body` and errors appear in this API.
pub use reqwest;
