//! sea-orm entities. They never leave this crate: repositories convert them to domain types.

pub mod access_token;
pub mod admin_access_token;
pub mod admin_device_grant;
pub mod admin_factor;
pub mod admin_password_token;
pub mod admin_recovery_code;
pub mod admin_spent_challenge;
pub mod admin_user;
pub mod audit_log;
pub mod bulk_job;
pub mod bulk_job_item;
pub mod code_flow;
pub mod customer;
pub mod email_change;
pub mod email_outbox;
pub mod event_delivery;
pub mod event_subscription;
pub mod limit_event;
pub mod password_reset_token;
pub mod reset_request;
pub mod service_credential;
pub mod settings;
pub mod signing_key;
