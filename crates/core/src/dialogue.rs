//! dialogue
