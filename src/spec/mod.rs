//! spec (being built).
