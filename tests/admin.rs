//! The admin router.
