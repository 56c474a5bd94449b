//! Telegram formatting (message entities) to WhatsApp markup.
