//! cluster (being built).
