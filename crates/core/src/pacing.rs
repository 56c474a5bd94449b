//! Pacing maths.
