//! Prometheus's common HTTP client settings, the part dbwatch applies, as both the routing file's receivers
//! (`http_config:`) and `remote_write:` (the same keys inline) write them: [`read`] reads them through
//! `dbwatch-yaml`, [`client`] builds a `reqwest` client from them and adds their authorization to a request.
//! Reading is pure; building reads the certificate and credential files.

pub mod client;
pub mod read;

pub use client::{authorize, build, ClientError};
pub use read::{read_http_config, read_inline, HttpSettings};
