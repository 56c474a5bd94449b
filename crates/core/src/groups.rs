//! Group list parsing.
