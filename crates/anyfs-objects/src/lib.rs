//! An AnyFS backend whose tree lives in PostgreSQL rows and whose content
//! lives in immutable, encrypted objects in an object store (S3 and
//! compatible servers, through OpenDAL). Several processes on several
//! machines can serve one workspace at once.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
