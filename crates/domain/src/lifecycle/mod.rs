//! An account's life after registration: changing its address (with "this wasn't me", freezing
//! and releasing), and deleting it with the export of what is held about it.

pub mod email_change;
pub mod erasure;
pub mod report;
