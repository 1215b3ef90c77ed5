//! Errors at the edges of the library (kernel, privileges, files).

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Privileges(String),
    #[error("{0}")]
    Tracefs(String),
    #[error("kernel BTF: {0}")]
    Btf(String),
    #[error("{0}")]
    Load(String),
    #[error("{0}")]
    Spawn(String),
}
