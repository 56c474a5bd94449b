//! Token encryption.
