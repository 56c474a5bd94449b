//! Pure data and rules: ids, languages, the ledger's rows, group lists, secrets, billing,
//! pacing maths and the user's pace, schedules, time zones, the rules of a follow-up (edit or
//! delete a post everywhere). Nothing here does I/O or imports anything above this wing.

pub mod billing;
pub mod followup;
pub mod groups;
pub mod ids;
pub mod lang;
pub mod ledger;
pub mod pacing;
pub mod schedule;
pub mod secret;
pub mod zone;
