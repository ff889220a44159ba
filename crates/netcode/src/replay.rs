//! The replay window (to come).
