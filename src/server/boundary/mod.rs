//! The trust boundary under test: whatever a client puts in
//! `SSH_ORIGINAL_COMMAND`, parsed by [`crate::protocol`], maps to an allowed
//! action of [`crate::lifecycle`] inside that client's area.

mod abuses;
mod argv;
mod props;
