#![doc = include_str!("../README.md")]

pub mod cloudflare;
pub mod fastly;
pub mod http;
pub mod seam;

/// reqwest 0.13 is a public dependency: its `Client`, `Body` and errors appear in this API.
pub use reqwest;
