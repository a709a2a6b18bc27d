//! Latchkey's background workers, one per replica each: the mail worker claims outbox rows and
//! sends them (SMTP, or files in a folder), one per lane (interactive and bulk); the bulk-job
//! worker works chunks of running bulk jobs. Both are woken in-process when there is work and
//! poll for work another replica queued.

pub mod bulk;
pub mod events;
pub mod mail;
