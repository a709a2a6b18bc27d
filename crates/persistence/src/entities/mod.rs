//! sea-orm entities. They never leave this crate: repositories convert them to domain types.

pub mod access_token;
pub mod customer;
