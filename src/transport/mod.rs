//! Transport pieces shared by both providers that hold the line against hostile input: the one
//! encoder of URL path segments (and the check that a request's path is its operation's
//! template), and bounded reads of answers.

pub(crate) mod capped;
pub(crate) mod segment;
