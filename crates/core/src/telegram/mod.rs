//! Telegram Bot API: our own small serde types (teloxide-core does not build for wasm32),
//! the error type that carries the retry decision, and the conversion of Telegram
//! formatting (message entities) into WhatsApp markup.

pub mod api;
pub mod callback;
pub mod markup;
pub mod types;

pub use types::*;
