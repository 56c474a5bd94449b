//! The mailing engine: what a driver (a tokio task on the server, a Durable Object alarm on
//! the Worker) calls to move a mailing forward.

pub mod engine;

#[cfg(test)]
mod tests;
