//! rvoy's HTTP/1 codec on top of `httparse`: message heads with Envoy's limits
//! and verdicts ([`parse`]), head encoding ([`encode`]) and body framing ([`body`]).

pub mod body;
pub mod encode;
pub mod parse;
