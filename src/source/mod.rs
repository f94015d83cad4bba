//! The config repository as the leader sees it: a bare Git mirror fetched
//! with git2, specs read from commit trees, webhook verification and commit
//! statuses. This module does not decide what to apply; it turns commits
//! into validated desired states and reports back on them.

pub mod git;
pub mod status;
pub mod webhook;
