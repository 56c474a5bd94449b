//! Payments (being wired to the Robokassa protocol module).

use crate::ports::Invoice;
use crate::texts::Lang;

/// The configured shop.
#[derive(Debug, Clone)]
pub struct Payments {
    pub receipt: bool,
}

pub fn payment_link(_p: &Payments, _invoice: &Invoice, _l: Lang) -> String {
    String::new()
}
