//! The packets (to come).
